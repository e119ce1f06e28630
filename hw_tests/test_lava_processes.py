"""A Lava run leaves nothing behind when the Python process that started it is killed.

Each test starts a small, long Lava run (``run_lava`` on a one-layer network, 200 000
steps) in a child Python process, waits until Lava's processes are up, kills the child
and checks, by reading ``/proc``, that every process the child had started (Lava's
process models, its shared-memory manager, multiprocessing's resource tracker) is gone
within a few seconds, and so are the shared-memory segments they had mapped. The run's
record folder goes with a SIGTERM at once, and with ``kill -9`` at the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lava_models.runner import record_dir, remove_orphaned_record_dirs

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import numpy as np, torch
from lava_models.runner import run_lava
from quantization.network import QNetwork, SpikingLayer
w = torch.tensor([[3, -2, 1], [0, 5, -7]])
qnet = QNetwork((SpikingLayer("fc0", ("input",), "dense", w, -4, 300, 6, "soft"),), (3,), 2)
x = (np.random.default_rng(0).random((200_000, 3)) < 0.5).astype(np.int64)
run_lava(qnet, x, timeout_s=300)
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), fields[0]


def _descendants(root: int) -> set[int]:
    """Living processes below ``root`` (zombies count as dead)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _ppid_and_state(int(entry))
            if info is not None and info[1] != "Z":
                parent[int(entry)] = info[0]
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if (info := _ppid_and_state(p)) is not None and info[1] != "Z"}


def _shm_segments(pids: set[int]) -> set[str]:
    """The /dev/shm files that processes ``pids`` have mapped."""
    out = set()
    for p in pids:
        try:
            maps = Path(f"/proc/{p}/maps").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        out |= {line.split()[-1] for line in maps.splitlines() if "/dev/shm/" in line}
    return out


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


@pytest.fixture
def lava_child():
    """A child running a long Lava run; yields ``(process, its Lava processes)``. Whatever
    the test does, every process it started is killed afterwards (by pid)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    started: set[int] = set()
    try:
        # the source, the layer, Lava's shared-memory manager and the resource tracker
        up = _wait(lambda: len(_descendants(proc.pid)) >= 4 or proc.poll() is not None, 90)
        assert up and proc.poll() is None, proc.stdout.read().decode()[-2000:]
        time.sleep(1.0)  # let the run get going
        started = _descendants(proc.pid)
        yield proc, started
    finally:
        _kill_all(started | {proc.pid})
        proc.wait(10)


def _kill_all(pids: set[int]) -> None:
    """SIGKILL ``pids``, the resource tracker last: once the others are gone it unlinks the
    shared memory they leaked."""
    tracker = {p for p in pids if b"resource_tracker" in _cmdline(p)}
    for p in _alive(pids - tracker):
        os.kill(p, signal.SIGKILL)
    _wait(lambda: not _alive(tracker), 5.0)
    for p in _alive(tracker):
        os.kill(p, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_killed_parent_takes_lava_processes_and_shared_memory_along(lava_child, sig):
    proc, started = lava_child
    segments = _shm_segments(started)
    assert segments, "Lava's processes map shared memory"
    (folder,) = Path(tempfile.gettempdir()).glob(f"stllr_lava_pid{proc.pid}_*")
    os.kill(proc.pid, sig)
    code = proc.wait(10)
    assert _wait(lambda: not _alive(started), 5.0), f"left running: {sorted(_alive(started))}"
    assert _wait(lambda: not any(map(os.path.exists, segments)), 5.0), "shared memory left"
    if sig == signal.SIGTERM:  # the run cleaned up and exited as SIGTERM would have
        assert code == 128 + signal.SIGTERM, proc.stdout.read().decode()[-2000:]
        assert not folder.exists()
    else:  # nothing could run in the child: the next run removes its folder
        assert code == -signal.SIGKILL and folder.is_dir()
        assert folder in remove_orphaned_record_dirs()
        assert not folder.exists()


def test_record_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    """Only folders named for a process that no longer exists go; live owners' stay."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = [
        tmp_path / f"stllr_lava_pid{ended.pid}_abc",
        tmp_path / f"stllr_online_pid{ended.pid}_x",
    ]
    alive = tmp_path / f"stllr_lava_pid{os.getppid()}_abc"  # pytest's parent lives on
    other = [  # an older run's random name that happens to start with digits, and others
        tmp_path / f"stllr_lava_{ended.pid}_x",
        tmp_path / "stllr_lava_abc",
        tmp_path / f"unrelated_pid{ended.pid}_x",
    ]
    for d in [*dead, alive, *other]:
        d.mkdir()
    (dead[0] / "0.npz").write_bytes(b"x")
    with record_dir("lava") as path:  # a run removes the dead ones first
        assert Path(path).parent == tmp_path and Path(path).name.startswith(
            f"stllr_lava_pid{os.getpid()}_"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in [alive, *other, Path(path)]
        )
    assert not Path(path).exists()  # and its own folder when it ends
