"""Event-driven S-TLLR (issue #19): the SHD training step with sparse inputs vs dense.

Four measurements, all on the SHD RSNN (700 → 450 recurrent → 20, batch 128, window 10,
T = 100, Bernoulli input spikes; ``--quick``: 64 → 32, batch 8, T = 12):

``step``       one ``train_batch`` call of this tree (``event_inputs = --mode``, default
               auto) against a ``--base`` tree (default: this tree with
               ``event_inputs = dense``), each imported in its own subprocess
               (``benchmarks/_step_worker.py`` with its own PYTHONPATH) and called one by
               one in turn (interleaved); medians of wall and CPU seconds, their ratio
               (target base / new ≥ 1.7) and the load average before and after.
``matmuls``    the dense matrix products the dense step performs (T forward steps of
               ``x·Ŵᵀ``, ``s·Ŵ_recᵀ``, ``h·W_oᵀ``; ``window`` backward steps of the
               stacked weight gradients and the readout's products), alone, timed
               interleaved with the steps in the parent process.
``density``    the step of this tree at input densities 1 %–50 %, ``dense``, ``sparse``
               and ``auto`` interleaved (medians of process CPU and wall seconds; with one
               thread the CPU time is the least disturbed by other processes); with the
               hidden spike density reached, the fraction of steps on which ``auto`` took
               the event-driven path per operand, and ``auto`` / min(dense, sparse).
``operand_curve`` one input projection ``[B, inputs] → [B, hidden]`` per density, dense
               vs event-driven (conversion included), and what ``auto`` picks for it.
``projection`` the input projection of a whole batch: T per-step products vs one product
               of the ``[T·B, 700]`` block, dense and event-driven (docs/decisions.md).

Also ``finite_check``: the seconds ``stllr.validation.check_finite`` takes on the batch.
Prints one JSON document (``--out FILE`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import emit, environment, load_average, set_threads, summary, target

from stllr.models.shd import SHDNetSTLLR
from stllr.spike_events import (
    SPARSE_MAX_DENSITY,
    events_current,
    row_events,
    set_event_inputs,
    transposed,
    use_events,
)
from stllr.training import train_batch
from stllr.validation import check_finite

HERE = Path(__file__).resolve().parent
PARTS = ("step", "projection", "operand", "density")
ROOT = HERE.parent


def sizes(quick: bool) -> dict:
    if quick:
        return {"T": 12, "batch": 8, "inputs": 64, "hidden": 32, "window": 4}
    return {"T": 100, "batch": 128, "inputs": 700, "hidden": 450, "window": 10}


def batch(sz: dict, density: float, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(sz["T"], sz["batch"], sz["inputs"], generator=g) < density).float()
    return x, torch.randint(0, 20, (sz["batch"],), generator=g)


def cpu_wall(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


class Worker:
    """A ``_step_worker.py`` subprocess importing ``stllr`` from ``tree``."""

    def __init__(self, tree: Path, mode: str, sz: dict, density: float, threads: int, *extra):
        """``sz``: the worker's size options (``T``, ``batch``, ``window``, ...) by name;
        ``extra``: further command-line words (``--model vgg``)."""
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, str(HERE / "_step_worker.py"), "--mode", mode, *extra]
        cmd += ["--density", str(density), "--threads", str(threads)]
        for key, value in sz.items():
            cmd += [f"--{key}", str(value)]
        self.proc = subprocess.Popen(
            cmd, env=env, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"step worker exited with {self.proc.wait()}")
        return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def dense_matmuls(sz: dict):
    """A callable running the dense products of one dense training step (module doc)."""
    g = torch.Generator().manual_seed(2)
    b, n, h, k = sz["batch"], sz["inputs"], sz["hidden"], 20
    w, w_rec, w_o = (torch.randn(o, i, generator=g) for o, i in ((h, n), (h, h), (k, h)))
    bias, bias_o = torch.randn(h, generator=g), torch.randn(k, generator=g)
    x = (torch.rand(b, n, generator=g) < 0.03).float()
    s = (torch.rand(b, h, generator=g) < 0.05).float()
    post, pre, pre_rec = torch.randn(2 * b, h), torch.randn(2 * b, n), torch.randn(2 * b, h)
    delta, p_o = torch.randn(b, k), torch.randn(b, h)

    def run() -> None:
        for _ in range(sz["T"]):
            F.linear(x, w, bias)
            F.linear(s, w_rec)
            F.linear(s, w_o, bias_o)
        for _ in range(sz["window"]):
            post.t().mm(pre)
            post.t().mm(pre_rec)
            delta.mm(w_o)
            delta.t().mm(p_o)

    return run


def measure_step(args, sz: dict) -> dict:
    base_tree = Path(args.base).resolve() if args.base else ROOT
    base_mode = args.base_mode
    workers = {
        "base": Worker(base_tree, base_mode, sz, args.density, args.threads),
        "new": Worker(ROOT, args.mode, sz, args.density, args.threads),
    }
    matmuls = dense_matmuls(sz)
    matmuls()
    load_before = load_average()
    times = {name: {"wall": [], "cpu": []} for name in (*workers, "matmuls")}
    try:
        for _ in range(args.repeats):
            for name, worker in workers.items():
                r = worker.run()
                times[name]["wall"].append(r["wall_s"])
                times[name]["cpu"].append(r["cpu_s"])
            wall, cpu = cpu_wall(matmuls)
            times["matmuls"]["wall"].append(wall)
            times["matmuls"]["cpu"].append(cpu)
    finally:
        for worker in workers.values():
            worker.close()
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    speedup = med["base"]["wall"] / med["new"]["wall"]
    return {
        "base": {
            "tree": str(base_tree),
            **workers["base"].info,
            "wall": summary(times["base"]["wall"]),
            "cpu": summary(times["base"]["cpu"]),
        },  # noqa: E501
        "new": {
            "tree": str(ROOT),
            **workers["new"].info,
            "wall": summary(times["new"]["wall"]),
            "cpu": summary(times["new"]["cpu"]),
        },  # noqa: E501
        "dense_matmuls_alone": {
            "wall": summary(times["matmuls"]["wall"]),
            "cpu": summary(times["matmuls"]["cpu"]),
        },  # noqa: E501
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "speedup_wall": target(speedup, ">=", 1.7, applicable=not args.quick),
        "speedup_cpu": med["base"]["cpu"] / med["new"]["cpu"],
        "base_over_matmuls_wall": med["base"]["wall"] / med["matmuls"]["wall"],
        "new_over_matmuls_wall": med["new"]["wall"] / med["matmuls"]["wall"],
    }


def switch_choices(model: SHDNetSTLLR, x: torch.Tensor) -> dict:
    """Hidden spike density and the fraction of steps ``auto`` sends down the event path."""
    x_sparse, s_sparse, s_density = [], [], []
    sz_hidden = model.rec.out_features
    model.reset_state()
    with torch.no_grad():
        for t in range(x.shape[0]):
            s_prev = model.rec.state.s if model.rec.state is not None else torch.zeros(1)
            if t > 0:
                s_sparse.append(use_events("auto", s_prev, sz_hidden, binary=True))
                s_density.append(float(s_prev.mean()))
            x_sparse.append(use_events("auto", x[t], sz_hidden))
            model.rec(x[t])
    mean = statistics.fmean
    return {
        "hidden_density": mean(s_density) if s_density else 0.0,
        "auto_sparse_fraction_x": mean(x_sparse),
        "auto_sparse_fraction_s": mean(s_sparse) if s_sparse else 0.0,
    }


def measure_density(args, sz: dict) -> list[dict]:
    rows = []
    for d in args.densities:
        x, y = batch(sz, d)
        models = {}
        for mode in ("dense", "sparse", "auto"):
            torch.manual_seed(0)
            m = SHDNetSTLLR(num_inputs=sz["inputs"], hidden=sz["hidden"], num_classes=20)
            set_event_inputs(m, mode)
            opt = torch.optim.Adam(m.parameters(), lr=0.0)
            train_batch(m, x, y, opt, window=sz["window"])
            models[mode] = (m, opt)
        walls = {mode: [] for mode in models}
        cpus = {mode: [] for mode in models}
        for _ in range(args.density_repeats):
            for mode, (m, opt) in models.items():
                wall, cpu = cpu_wall(
                    lambda m=m, o=opt, x=x, y=y: train_batch(m, x, y, o, window=sz["window"])
                )
                walls[mode].append(wall)
                cpus[mode].append(cpu)
        wall_med = {mode: statistics.median(v) for mode, v in walls.items()}
        med = {mode: statistics.median(v) for mode, v in cpus.items()}
        best = min(med["dense"], med["sparse"])
        rows.append(
            {
                "input_density": d,
                **{f"{mode}_cpu_median_s": v for mode, v in med.items()},
                **{f"{mode}_wall_median_s": v for mode, v in wall_med.items()},
                "faster_cpu": "sparse" if med["sparse"] < med["dense"] else "dense",
                "auto_over_best_cpu": med["auto"] / best,
                **switch_choices(models["auto"][0], x),
            }
        )
    return rows


def measure_projection(args, sz: dict) -> dict:
    x, _ = batch(sz, args.density)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(sz["hidden"], sz["inputs"], generator=g)
    b = torch.randn(sz["hidden"], generator=g)
    w_t = transposed(w)
    flat = x.reshape(-1, sz["inputs"])
    cases = {
        "dense_per_step": lambda: [F.linear(x[t], w, b) for t in range(x.shape[0])],
        "dense_one_gemm": lambda: F.linear(flat, w, b),
        "events_per_step": lambda: [
            events_current(row_events(x[t]), w_t, b) for t in range(x.shape[0])
        ],
        "events_one_call": lambda: events_current(row_events(flat), w_t, b),
    }
    walls = {name: [] for name in cases}
    cpus = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(2 * args.repeats):
        for name, fn in cases.items():
            wall, cpu = cpu_wall(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    out = {name: {"wall": summary(walls[name]), "cpu": summary(cpus[name])} for name in cases}
    med = {name: statistics.median(v) for name, v in cpus.items()}
    out["dense_one_gemm_over_per_step_cpu"] = med["dense_one_gemm"] / med["dense_per_step"]
    out["events_one_call_over_per_step_cpu"] = med["events_one_call"] / med["events_per_step"]
    return out


def measure_operand_curve(args, sz: dict) -> list[dict]:
    """One product ``x·Ŵᵀ + b`` ``[B, n] → [B, hidden]`` per density: dense vs event-driven
    (its conversion included), medians of CPU seconds over interleaved blocks of calls."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(sz["hidden"], sz["inputs"], generator=g)
    b = torch.randn(sz["hidden"], generator=g)
    w_t = transposed(w)
    rows = []
    for d in args.densities:
        x = (torch.rand(sz["batch"], sz["inputs"], generator=g) < d).float()
        cases = {
            "dense": lambda x=x: F.linear(x, w, b),
            "events": lambda x=x: events_current(row_events(x), w_t, b),
        }
        cpus = {name: [] for name in cases}
        for _ in range(args.density_repeats * 4):
            for name, fn in cases.items():
                _, cpu = cpu_wall(lambda fn=fn: [fn() for _ in range(10)])
                cpus[name].append(cpu / 10)
        med = {name: statistics.median(v) for name, v in cpus.items()}
        rows.append(
            {
                "density": d,
                "dense_cpu_ms": 1e3 * med["dense"],
                "events_cpu_ms": 1e3 * med["events"],
                "faster": "events" if med["events"] < med["dense"] else "dense",
                "auto_picks_events": use_events("auto", x, sz["hidden"]),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--base", default=None, help="source tree to compare with (default: this)")
    ap.add_argument("--mode", default="auto", choices=("dense", "sparse", "auto"))
    ap.add_argument("--base-mode", default="dense", help="the base tree's switch, if it has one")
    ap.add_argument("--density", type=float, default=0.03, help="input spike density")
    ap.add_argument("--window", type=int, default=None, help="learning window (default 10)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timed calls")
    ap.add_argument("--densities", type=float, nargs="+", default=None)
    ap.add_argument("--density-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (workers too)")
    ap.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="what to measure")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.density_repeats = 1
    if args.densities is None:
        args.densities = (
            [0.05, 0.5]
            if args.quick
            else [0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]
        )
    set_threads(args.threads, args.quick)
    sz = sizes(args.quick)
    if args.window is not None:
        sz["window"] = args.window
    result = {
        "benchmark": "event_driven",
        "quick": args.quick,
        "environment": environment(torch.device("cpu")),
        "config": {
            **sz,
            "density": args.density,
            "mode": args.mode,
            "repeats": args.repeats,
            "sparse_max_density": SPARSE_MAX_DENSITY,
        },  # fmt: skip
    }
    if "step" in args.parts:
        result["step"] = measure_step(args, sz)
        x, _ = batch(sz, args.density)
        checks = [cpu_wall(lambda: check_finite("x", x))[0] for _ in range(5)]
        result["finite_check_s"] = summary(checks)
    if "projection" in args.parts:
        result["projection"] = measure_projection(args, sz)
    if "operand" in args.parts:
        result["operand_curve"] = measure_operand_curve(args, sz)
    if "density" in args.parts:
        result["density"] = measure_density(args, sz)
    result["environment"]["load_average_at_end"] = load_average()
    emit(result, args.out)


if __name__ == "__main__":
    main()
