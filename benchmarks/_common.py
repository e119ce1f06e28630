"""Helpers shared by the benchmark scripts: timing, environment record, JSON output.

Every benchmark prints one JSON document to stdout (and to ``--out FILE`` when
given). Times are wall-clock seconds from :func:`time.perf_counter` (with a CUDA
synchronise around the timed region when the work runs on a GPU); memory is in
bytes unless a key says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from operator import ge, gt, le, lt
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # Lets ``python benchmarks/<script>.py`` import ``stllr`` from a plain checkout.
    sys.path.insert(0, str(REPO_ROOT))

MIB = 1024**2
GIB = 1024**3


def pick_device(name: str | None) -> torch.device:
    """``name`` if given, else CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int | None, quick: bool) -> None:
    """Set torch's intra-op threads: ``threads`` if given, 1 in quick mode, else leave it.

    Quick (smoke-test) sizes are too small to gain from a second thread, and on a
    shared, loaded machine OpenMP barriers make tiny multi-threaded ops many times slower.
    """
    if threads is None and quick:
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU) so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, cpu: bool = False):
    """Wall-clock seconds of one call of ``fn`` (and process CPU seconds if ``cpu``).

    Process CPU time sums all of this process's threads; with one thread it is
    the compute time, insensitive to the time slices other processes take.
    """
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    wall, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    return (wall, cpu_s) if cpu else wall


def summary(samples: list[float]) -> dict:
    """Median / min / max / count of a list of seconds."""
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "n": len(samples),
    }


def mem_available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (other processes share the CPU cores)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_digest() -> dict:
    """Short SHA-256 of the ``stllr`` sources (the tree may change between runs)."""
    digest = hashlib.sha256()
    files = sorted((REPO_ROOT / "stllr").rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    head = None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"stllr_sources_sha256": digest.hexdigest()[:16], "files": len(files), "git_head": head}


def environment(device: torch.device) -> dict:
    """What the numbers depend on: versions, threads, CPU, load, memory."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "torch_num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average_at_start": load_average(),
        "mem_available_bytes_at_start": mem_available_bytes(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source_digest(),
    }
    if device.type == "cuda":
        env["cuda_device_name"] = torch.cuda.get_device_name(device)
    return env


def target(value: float | None, op: str, bound: float, applicable: bool = True) -> dict:
    """A target check: ``value op bound`` (``op`` one of ``<=``, ``<``, ``>=``, ``>``);
    ``met`` is ``None`` when not evaluated."""
    compare = {"<=": le, "<": lt, ">=": ge, ">": gt}
    if op not in compare:
        raise ValueError(f"target operator {op!r}: expected one of {', '.join(compare)}")
    met = None
    if applicable and value is not None:
        met = bool(compare[op](value, bound))
    return {"value": value, "target": f"{op} {bound}", "met": met}


def emit(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON on stdout and, if ``out`` is set, write it there."""
    text = json.dumps(result, indent=2, sort_keys=False)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    print(text)
