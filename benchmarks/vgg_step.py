"""VGG-9 S-TLLR training step (issue #19, the conv path): this tree vs a base tree.

The DVS Gesture setting: VGG-9 at 2×32×32, full widths, batch 16, T = 20, learning window
5, Bernoulli input frames (``--density``, default 5 %), SGD with lr = 0 so that every call
does the same work (``--quick``: T = 4, window 2, batch 2). Measured in one run:

``step``    one ``train_batch`` call of this tree (``event_inputs = --mode``, default auto)
            against a ``--base`` tree (default: this tree with ``event_inputs = dense``),
            each imported in its own subprocess (``benchmarks/_step_worker.py --model
            vgg``) and called in turn (interleaved); medians of wall and CPU seconds,
            base / new (target ≥ 2.5) and the load average before and after.
``convs``   the dense convolutions the dense step performs (T forward steps of every
            layer; ``window`` steps of the input gradients of layers 2–8 and of the
            two-term weight gradients, operands stacked over 2B), alone, timed in the
            parent interleaved with the steps: the dense bound.
``peak``    this machine's float32 ``torch.mm`` rate (sgemm, best of a few 1024² products)
            and the best rate of one dense convolution (VGG-9 conv4, 256→256 at 16²,
            batch 16; PyTorch runs it with oneDNN), both timed interleaved too.

``gflops`` gives the step's dense-equivalent rate: the matrix FLOPs of the dense step
(multiply + add = 2, convolutions as their matrix products; elementwise work not counted)
over the medians, against both peaks. ``densities`` gives, per conv layer, the mean input
density and the fraction of samples with a non-zero input over the T steps (this tree,
one no-graph pass): the sample skipping has nothing to skip where every sample spikes.
``--gain`` sets every conv's weight-standardisation gain (default 1, as initialised; a
larger gain makes the deeper layers spike). Prints one JSON document (``--out FILE`` too).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import emit, environment, load_average, set_threads, summary, target
from event_driven import Worker, cpu_wall
from torch.nn.grad import conv2d_input, conv2d_weight

from stllr.models.vgg import VGG9_CHANNELS, VGG9_POOL_AFTER, VGGSTLLR

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 2.5


def sizes(quick: bool) -> dict:
    if quick:
        return {"T": 4, "batch": 2, "window": 2}
    return {"T": 20, "batch": 16, "window": 5}


def conv_shapes(size: int = 32) -> list[tuple[int, int, int]]:
    """``(C_in, C_out, H)`` of VGG-9's convolutions (3×3, padding 1) at ``size``²."""
    shapes, c_in = [], 2
    for i, c_out in enumerate(VGG9_CHANNELS):
        shapes.append((c_in, c_out, size))
        if i in VGG9_POOL_AFTER:
            size //= 2
        c_in = c_out
    return shapes


def dense_flops(sz: dict) -> float:
    """Matrix FLOPs of one dense step: forward T·Σ, input grads window·Σ(layers ≥ 2),
    weight grads window·2·Σ (module doc); the 512→11 head is included."""
    macs = [ci * co * 9 * h * h * sz["batch"] for ci, co, h in conv_shapes()]
    head = 512 * 11 * sz["batch"]
    fwd = sz["T"] * (sum(macs) + head)
    bwd = sz["window"] * (sum(macs[1:]) + 2 * sum(macs) + 2 * head)
    return 2.0 * (fwd + bwd)


def dense_convs(sz: dict):
    """A callable running the dense convolutions of one dense step (module doc)."""
    g = torch.Generator().manual_seed(2)
    b, ops = sz["batch"], []
    for ci, co, h in conv_shapes():
        w = torch.randn(co, ci, 3, 3, generator=g)
        x = (torch.rand(b, ci, h, h, generator=g) < 0.05).float()
        a = torch.randn(b, co, h, h, generator=g)
        x2, a2 = torch.cat([x, x]), torch.cat([a, a])
        ops.append((w, torch.zeros(co), x, a, x2, a2, ci > 2))

    def run() -> None:
        for _ in range(sz["T"]):
            for w, bias, x, *_ in ops:
                F.conv2d(x, w, bias, padding=1)
        for _ in range(sz["window"]):
            for w, _, x, a, x2, a2, needs_input_grad in ops:
                if needs_input_grad:
                    conv2d_input(x.shape, w, a, padding=1)
                conv2d_weight(x2, w.shape, a2, padding=1)

    return run


def peaks():
    """Callables for the sgemm peak (1024² torch.mm) and the conv peak (conv4, batch 16);
    each returns its FLOP count."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    x, w = torch.randn(16, 256, 16, 16, generator=g), torch.randn(256, 256, 3, 3, generator=g)

    def sgemm() -> float:
        a.mm(b)
        return 2.0 * 1024**3

    def conv() -> float:
        F.conv2d(x, w, padding=1)
        return 2.0 * 16 * 256 * 256 * 9 * 16 * 16

    return {"sgemm": sgemm, "conv": conv}


def layer_densities(sz: dict, density: float, gain: float) -> list[dict]:
    """Per conv layer: mean input density and fraction of samples with input, over T."""
    torch.manual_seed(0)
    model = VGGSTLLR()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(sz["T"], sz["batch"], 2, 32, 32, generator=g) < density).float()
    seen: list[list[tuple[float, float]]] = [[] for _ in model.convs]

    def hook(i):
        def record(_module, inputs, _out):
            flat = inputs[0].reshape(inputs[0].shape[0], -1).ne(0)
            seen[i].append((float(flat.float().mean()), float(flat.any(1).float().mean())))

        return record

    with torch.no_grad():
        for conv in model.convs:
            conv.gain.fill_(gain)
        handles = [c.register_forward_hook(hook(i)) for i, c in enumerate(model.convs)]
        model.reset_state()
        for t in range(sz["T"]):
            model(x[t])
        for h in handles:
            h.remove()
    return [
        {
            "layer": i + 1,
            "input_density": statistics.fmean(d for d, _ in rows),
            "samples_with_input": statistics.fmean(a for _, a in rows),
        }
        for i, rows in enumerate(seen)
    ]


def measure(args, sz: dict) -> dict:
    base_tree = Path(args.base).resolve() if args.base else ROOT
    extra = ("--model", "vgg", "--gain", str(args.gain))
    workers = {
        "base": Worker(base_tree, args.base_mode, sz, args.density, args.threads, *extra),
        "new": Worker(ROOT, args.mode, sz, args.density, args.threads, *extra),
    }
    convs = dense_convs(sz)
    convs()
    peak_fns = peaks()
    load_before = load_average()
    times = {name: {"wall": [], "cpu": []} for name in (*workers, "convs")}
    rates = {name: [] for name in peak_fns}
    try:
        for _ in range(args.repeats):
            for name, worker in workers.items():
                r = worker.run()
                times[name]["wall"].append(r["wall_s"])
                times[name]["cpu"].append(r["cpu_s"])
            wall, cpu = cpu_wall(convs)
            times["convs"]["wall"].append(wall)
            times["convs"]["cpu"].append(cpu)
            for name, fn in peak_fns.items():
                for _ in range(3):
                    t0 = time.perf_counter()
                    flops = fn()
                    rates[name].append(flops / (time.perf_counter() - t0) / 1e9)
    finally:
        for worker in workers.values():
            worker.close()
    load_after = load_average()
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    flops = dense_flops(sz)
    peak = {name: max(r) for name, r in rates.items()}
    gflops = {
        name: flops / med[name]["wall"] / 1e9 for name in ("base", "new", "convs")
    }  # fmt: skip
    return {
        "base": {"tree": str(base_tree), **workers["base"].info, **_stats(times["base"])},
        "new": {"tree": str(ROOT), **workers["new"].info, **_stats(times["new"])},
        "dense_convs_alone": _stats(times["convs"]),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "speedup_wall": target(
            med["base"]["wall"] / med["new"]["wall"], ">=", TARGET, applicable=not args.quick
        ),
        "speedup_cpu": med["base"]["cpu"] / med["new"]["cpu"],
        "new_over_dense_convs_wall": med["new"]["wall"] / med["convs"]["wall"],
        "base_over_dense_convs_wall": med["base"]["wall"] / med["convs"]["wall"],
        "gflops": {
            "dense_step_gflop": flops / 1e9,
            "dense_equivalent_gflops_wall_median": gflops,
            "peak_sgemm_gflops": peak["sgemm"],
            "peak_conv_gflops": peak["conv"],
            "fraction_of_sgemm_peak": {k: v / peak["sgemm"] for k, v in gflops.items()},
            "fraction_of_conv_peak": {k: v / peak["conv"] for k, v in gflops.items()},
        },
    }


def _stats(t: dict) -> dict:
    return {"wall": summary(t["wall"]), "cpu": summary(t["cpu"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--base", default=None, help="source tree to compare with (default: this)")
    ap.add_argument("--mode", default="auto", choices=("dense", "sparse", "auto"))
    ap.add_argument("--base-mode", default="dense", help="the base tree's switch, if it has one")
    ap.add_argument("--density", type=float, default=0.05, help="input frame density")
    ap.add_argument("--gain", type=float, default=1.0, help="the convs' WS gain")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timed calls")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (workers too)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
    set_threads(args.threads, args.quick)
    sz = sizes(args.quick)
    result = {
        "benchmark": "vgg_step",
        "quick": args.quick,
        "environment": environment(torch.device("cpu")),
        "config": {
            **sz,
            "input": [2, 32, 32],
            "density": args.density,
            "gain": args.gain,
            "mode": args.mode,
            "base_mode": args.base_mode,
            "repeats": args.repeats,
        },  # fmt: skip
        "densities": layer_densities(sz, args.density, args.gain),
    }
    result["step"] = measure(args, sz)
    result["environment"]["load_average_at_end"] = load_average()
    emit(result, args.out)


if __name__ == "__main__":
    main()
