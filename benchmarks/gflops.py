"""Achieved GFLOP/s of one S-TLLR training step vs this machine's sgemm peak.

Timed (float32, wall-clock, forward + backward of one time step with a random
δ = ∂L/∂s):

* ``shd_function``: :class:`STLLRRecurrentStep` alone (700→450 recurrent, batch 128);
* ``shd_layer``: a :class:`RecurrentLinearSTLLR` call, i.e. the above plus the
  weight standardisation of W and W_rec in forward and backward;
* ``conv_function`` / ``conv_layer``: the same for VGG-9 conv4 (256→256, 3×3,
  16×16, batch 16) with :class:`STLLRStep` / :class:`Conv2dSTLLR`.

FLOPs are dense-equivalent matrix FLOPs (multiply + add = 2), elementwise work
and weight standardisation not counted. With ``M`` = B (dense) or B·H'·W'
(conv) and ``K`` = in (dense) or C_in·kH·kW (conv), per weight matrix::

    forward        2·M·K·out
    input grad     2·M·K·out     (feed-forward matrix only: no gradient to s[t−1])
    weight grad    2·(2M)·K·out  (both S-TLLR terms: α_pre and α_post operands stacked)

The peak is the best float32 ``torch.mm`` rate of square matrices (``--peak-n``)
measured in the same run, interleaved with the step timings so that both see
the same machine load. ``fraction_of_peak`` = best step rate / peak (target ≥ 0.6).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from _common import emit, environment, load_average, pick_device, set_threads, sync, target

from stllr.functional.stllr_step import STLLRRecurrentStep, STLLRSpec, STLLRStep
from stllr.layers.stllr_layers import Conv2dSTLLR, RecurrentLinearSTLLR
from stllr.models.shd import SHD_FACTORS
from stllr.models.vgg import GESTURE_FACTORS
from stllr.neuron import LIFParams
from stllr.surrogates import psi_a, psi_b
from stllr.synapse_ops import Conv2dOps, DenseOps

SHD_LIF = LIFParams(leak=5.0, threshold=0.6)
VGG_LIF = LIFParams(leak=0.0, threshold=0.6)


def dense_flops(batch: int, n_in: int, n_out: int) -> dict:
    fwd = 2 * batch * n_out * (n_in + n_out)
    igrad = 2 * batch * n_out * n_in
    wgrad = 2 * (2 * batch) * n_out * (n_in + n_out)
    return {"forward": fwd, "input_grad": igrad, "weight_grad": wgrad, "total": fwd + igrad + wgrad}


def conv_flops(batch: int, c_in: int, c_out: int, size: int, k: int = 3) -> dict:
    m, kk = batch * size * size, c_in * k * k
    fwd = 2 * m * kk * c_out
    igrad = 2 * m * kk * c_out
    wgrad = 2 * (2 * m) * kk * c_out
    return {"forward": fwd, "input_grad": igrad, "weight_grad": wgrad, "total": fwd + igrad + wgrad}


class Case:
    """A timed forward+backward closure, its FLOPs and its samples."""

    def __init__(self, name: str, flops: dict, step, description: str):
        self.name, self.flops, self.step, self.description = name, flops, step, description
        self.samples: list[float] = []

    def report(self, peak: float, quick: bool) -> dict:
        best, med = min(self.samples), statistics.median(self.samples)
        rate_best = self.flops["total"] / best / 1e9
        return {
            "what": self.description,
            "flops": self.flops,
            "time_ms_min": 1e3 * best,
            "time_ms_median": 1e3 * med,
            "n": len(self.samples),
            "gflops_best": rate_best,
            "gflops_median": self.flops["total"] / med / 1e9,
            "fraction_of_peak": target(rate_best / peak, ">=", 0.6, not quick),
        }


def make_shd(batch, n_in, n_out, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, n_in, generator=g) < 0.05).float().to(device)
    delta = torch.randn(batch, n_out, generator=g).to(device)
    spec = STLLRSpec(DenseOps(), SHD_LIF, SHD_FACTORS, psi_a)
    w = (torch.randn(n_out, n_in, generator=g) * 3 / math.sqrt(n_in)).to(device)
    w_rec = (torch.randn(n_out, n_out, generator=g) / math.sqrt(n_out)).to(device)
    b = torch.zeros(n_out, device=device)
    for t in (w, w_rec, b):
        t.requires_grad_(True)
    st = {
        "s_prev": (torch.rand(batch, n_out, generator=g) < 0.1).float().to(device),
        "u": (0.6 + 0.3 * torch.randn(batch, n_out, generator=g)).to(device),
        "p": (2 * torch.rand(batch, n_in, generator=g)).to(device),
        "r": torch.rand(batch, n_out, generator=g).to(device),
        "q": torch.rand(batch, n_out, generator=g).to(device),
    }

    def function_step():
        for t in (w, w_rec, b):
            t.grad = None
        s, *_ = STLLRRecurrentStep.apply(
            x, st["s_prev"], w, w_rec, b, st["u"], st["p"], st["r"], st["q"], spec
        )
        s.backward(delta)

    torch.manual_seed(seed)
    layer = RecurrentLinearSTLLR(n_in, n_out, lif=SHD_LIF, factors=SHD_FACTORS, psi="a").to(device)
    with torch.no_grad():
        for _ in range(5):  # realistic state (traces, membranes)
            layer(x)

    def layer_step():
        layer.zero_grad(set_to_none=True)
        layer(x).backward(delta)

    return function_step, layer_step


def make_conv(batch, c_in, c_out, size, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, c_in, size, size, generator=g) < 0.1).float().to(device)
    delta = torch.randn(batch, c_out, size, size, generator=g).to(device)
    spec = STLLRSpec(Conv2dOps((1, 1), (1, 1)), VGG_LIF, GESTURE_FACTORS, psi_b)
    w = (torch.randn(c_out, c_in, 3, 3, generator=g) * 3 / math.sqrt(9 * c_in)).to(device)
    b = torch.zeros(c_out, device=device)
    w.requires_grad_(True)
    b.requires_grad_(True)
    u = (0.6 + 0.3 * torch.randn(batch, c_out, size, size, generator=g)).to(device)
    p = (2 * torch.rand(batch, c_in, size, size, generator=g)).to(device)
    q = torch.rand(batch, c_out, size, size, generator=g).to(device)

    def function_step():
        w.grad = b.grad = None
        s, *_ = STLLRStep.apply(x, w, b, u, p, q, spec)
        s.backward(delta)

    torch.manual_seed(seed)
    layer = Conv2dSTLLR(
        c_in, c_out, 3, padding=1, lif=VGG_LIF, factors=GESTURE_FACTORS, psi="b"
    ).to(device)
    with torch.no_grad():
        for _ in range(3):
            layer(x)

    def layer_step():
        layer.zero_grad(set_to_none=True)
        layer(x).backward(delta)

    return function_step, layer_step


def sgemm_sampler(n: int, device):
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)

    def run():
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync(device)
        return 2 * n**3 / (time.perf_counter() - t0) / 1e9

    return run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--peak-n", type=int, nargs="+", default=[2048, 4096])
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    p.add_argument("--shd", default="128,700,450", help="batch,in,out")
    p.add_argument("--conv", default="16,256,256,16", help="batch,C_in,C_out,size")
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick: 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.peak_n, args.rounds, args.shd, args.conv = [256], 2, "8,70,45", "2,8,8,8"
    set_threads(args.threads, args.quick)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    start = time.perf_counter()
    env = environment(device)
    batch, n_in, n_out = (int(v) for v in args.shd.split(","))
    cb, ci, co, cs = (int(v) for v in args.conv.split(","))
    shd_fn, shd_layer = make_shd(batch, n_in, n_out, device, args.seed)
    conv_fn, conv_layer = make_conv(cb, ci, co, cs, device, args.seed)
    fd, fc = dense_flops(batch, n_in, n_out), conv_flops(cb, ci, co, cs)
    cases = [
        Case("shd_function", fd, shd_fn, f"STLLRRecurrentStep {n_in}→{n_out}, batch {batch}"),
        Case("shd_layer", fd, shd_layer, "RecurrentLinearSTLLR call (+ weight standardisation)"),
        Case("conv_function", fc, conv_fn, f"STLLRStep conv {ci}→{co} 3×3 @{cs}², batch {cb}"),
        Case("conv_layer", fc, conv_layer, "Conv2dSTLLR call (+ weight standardisation)"),
    ]
    # Repeats per round so that each case gets ~the same wall time as one peak sample.
    per_round = {"shd_function": 10, "shd_layer": 10, "conv_function": 2, "conv_layer": 2}
    samplers = {n: sgemm_sampler(n, device) for n in args.peak_n}
    peak_samples: dict[int, list[float]] = {n: [] for n in args.peak_n}
    for run in samplers.values():  # warm-up: thread pool, MKL and oneDNN caches
        run()
    for case in cases:
        case.step()
    for _ in range(args.rounds):
        for n, run in samplers.items():
            for _ in range(2 if n >= 4096 else 3):
                peak_samples[n].append(run())
        for case in cases:
            for _ in range(per_round[case.name]):
                sync(device)
                t0 = time.perf_counter()
                case.step()
                sync(device)
                case.samples.append(time.perf_counter() - t0)
    peak = max(max(v) for v in peak_samples.values())
    result = {
        "benchmark": "gflops",
        "quick": args.quick,
        "env": env,
        "torch_num_threads": torch.get_num_threads(),
        "flop_count": (
            "dense-equivalent matrix FLOPs (2 per multiply-add): forward 2·M·K·out per weight "
            "matrix; input grad 2·M·K·out (feed-forward matrix only); weight grad 2·(2M)·K·out "
            "(both S-TLLR terms); M = batch (dense) or batch·H'·W' (conv), K = fan-in"
        ),
        "peak": {
            "what": "best float32 torch.mm GFLOP/s of square n×n matrices, this run",
            "gflops": peak,
            "samples_gflops": {str(n): v for n, v in peak_samples.items()},
        },
        "cases": {c.name: c.report(peak, args.quick) for c in cases},
        "load_average_at_end": load_average(),
        "elapsed_s": time.perf_counter() - start,
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
