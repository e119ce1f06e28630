"""One S-TLLR layer step: the project's batched (matmul) form vs the per-sample form.

Recurrent dense layer (SHD, batch 128, 700→450, Ψ (a), SHD factors): one time
step, forward then backward with a random δ = ∂L/∂s, timed for

* ``fast``: :class:`stllr.functional.stllr_step.STLLRRecurrentStep` (both weight
  terms as one ``[out, 2B]·[2B, in+out]`` matmul);
* ``persample``: the official ``STLLRLinearRecGrad`` (``--official PATH`` to an
  extracted checkout of github.com/mapolinario94/S-TLLR; imported at run time,
  never copied), which materialises ``[B, out, in]`` eligibility tensors; without
  ``--official``, an in-file per-sample implementation of the same equations::

      ∂L/∂W = α_pre Σ_b (Ψ⊙δ)_b ⊗ P_b + α_post Σ_b (δ⊙Q[t−1])_b ⊗ x_b   ([B,out,in] summed)

Both run on the SAME inputs. Reported: forward / backward / total milliseconds
(median and min over interleaved repeats), speed-up = per-sample / fast total
(median), and the gradient agreement (max |Δ| per gradient) in float64 (tight
tolerance) and float32 (the timed dtype).

Conv layer (VGG-9 conv4, 256→256 at 16×16, batch 16, Ψ (b), gesture factors):
the official ``STLLRConv2dGrad`` already computes the weight gradient with two
``conv2d_weight`` calls (no per-sample tensors), so the comparison there is two
correlations vs the project's one correlation over the batch-stacked operands.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import time
from pathlib import Path

import torch
from _common import emit, environment, pick_device, set_threads, sync, target

from stllr.factors import STLLRFactors, trace_step
from stllr.functional.stllr_step import STLLRRecurrentStep, STLLRSpec, STLLRStep
from stllr.models.shd import SHD_FACTORS
from stllr.models.vgg import GESTURE_FACTORS
from stllr.neuron import LIFParams, lif_step
from stllr.surrogates import psi_a, psi_b
from stllr.synapse_ops import Conv2dOps, DenseOps

SHD_LIF = LIFParams(leak=5.0, threshold=0.6)
VGG_LIF = LIFParams(leak=0.0, threshold=0.6)


# -- in-file per-sample reference (used when --official is not given) ----------------------
class PerSampleRecurrentStep(torch.autograd.Function):
    """Recurrent S-TLLR step whose weight gradients materialise ``[B, out, in]``."""

    @staticmethod
    def forward(ctx, x, s_prev, w, w_rec, b, u_prev, p_prev, r, q_prev, lif, f: STLLRFactors):
        p = trace_step(p_prev, x, f.lambda_pre)
        current = x.mm(w.t()) + b + s_prev.mm(w_rec.t())
        s, v, u = lif_step(current, u_prev, lif)
        psi = psi_a(v)
        q = trace_step(q_prev, psi, f.lambda_post)
        r_next = trace_step(r, s, f.lambda_pre)
        ctx.save_for_backward(x, s_prev, w, p, r, q_prev, psi)
        ctx.f = f
        return s, u, p, r_next, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        x, s_prev, w, p, r, q_prev, psi = ctx.saved_tensors
        f = ctx.f
        g = psi * delta
        grad_x = g.mm(w)
        # Per-sample eligibilities e[b, i, j], then Σ_b δ[b, i]·e[b, i, j].
        e_ff = f.alpha_pre * psi.unsqueeze(2) * p.unsqueeze(1)
        e_ff = e_ff + f.alpha_post * q_prev.unsqueeze(2) * x.unsqueeze(1)
        grad_w = (delta.unsqueeze(2) * e_ff).sum(0)
        e_rec = f.alpha_pre * psi.unsqueeze(2) * r.unsqueeze(1)
        e_rec = e_rec + f.alpha_post * q_prev.unsqueeze(2) * s_prev.unsqueeze(1)
        grad_w_rec = (delta.unsqueeze(2) * e_rec).sum(0)
        return grad_x, None, grad_w, grad_w_rec, g.sum(0), None, None, None, None, None, None


class TwoCorrelationConvStep(torch.autograd.Function):
    """Conv S-TLLR step with the two weight terms as two ``conv2d_weight`` calls."""

    @staticmethod
    def forward(ctx, x, w, b, u_prev, p_prev, q_prev, ops: Conv2dOps, lif, f: STLLRFactors):
        p = trace_step(p_prev, x, f.lambda_pre)
        s, v, u = lif_step(ops.current(x, w, b), u_prev, lif)
        psi = psi_b(v)
        q = trace_step(q_prev, psi, f.lambda_post)
        ctx.save_for_backward(x, w, p, q_prev, psi)
        ctx.ops, ctx.f = ops, f
        return s, u, p, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        x, w, p, q_prev, psi = ctx.saved_tensors
        ops, f = ctx.ops, ctx.f
        g = psi * delta
        grad_x = ops.input_grad(g, w, x.shape)
        grad_w = f.alpha_pre * ops.weight_grad(g, p, w.shape)
        grad_w = grad_w + f.alpha_post * ops.weight_grad(delta * q_prev, x, w.shape)
        return grad_x, grad_w, ops.bias_grad(g), None, None, None, None, None, None


def load_official(path: str):
    """Import ``models/layers/STLLR_layers.py`` from an extracted official checkout."""
    file = Path(path) / "models" / "layers" / "STLLR_layers.py"
    if not file.is_file():
        raise SystemExit(f"--official {path}: {file} not found (extract the repository there)")
    spec = importlib.util.spec_from_file_location("stllr_official_layers", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- problem set-up ---------------------------------------------------------------------------
def linear_inputs(batch: int, n_in: int, n_out: int, seed: int) -> dict:
    """Realistic float64 operands of one recurrent step (spikes, traces, membranes)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.float64

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=d)

    def uni(*shape):
        return torch.rand(*shape, generator=g, dtype=d)

    return {
        "x": (uni(batch, n_in) < 0.05).to(d),
        "s_prev": (uni(batch, n_out) < 0.1).to(d),
        "w": rnd(n_out, n_in) / math.sqrt(n_in) * 3.0,
        "w_rec": rnd(n_out, n_out) / math.sqrt(n_out),
        "b": 0.1 * rnd(n_out),
        "u_prev": 0.6 + 0.3 * rnd(batch, n_out),
        "p_prev": 2.0 * uni(batch, n_in),
        "r": 2.0 * uni(batch, n_out),
        "q_prev": uni(batch, n_out),
        "delta": rnd(batch, n_out).float(),  # float32-exact, so both dtypes share it
    }


def conv_inputs(batch: int, c_in: int, c_out: int, size: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    d = torch.float64

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=d)

    def uni(*shape):
        return torch.rand(*shape, generator=g, dtype=d)

    return {
        "x": (uni(batch, c_in, size, size) < 0.1).to(d),
        "w": rnd(c_out, c_in, 3, 3) / math.sqrt(c_in * 9) * 3.0,
        "b": 0.1 * rnd(c_out),
        "u_prev": 0.6 + 0.3 * rnd(batch, c_out, size, size),
        "p_prev": 2.0 * uni(batch, c_in, size, size),
        "q_prev": uni(batch, c_out, size, size),
        "delta": rnd(batch, c_out, size, size).float(),
    }


def leaves(inputs: dict, dtype, device, grad_names: tuple[str, ...]) -> dict:
    out = {}
    for k, v in inputs.items():
        t = v.detach().to(device=device, dtype=dtype, copy=True)
        out[k] = t.requires_grad_(k in grad_names)
    return out


# -- step functions: each returns (spikes, next traces..., {name: grad}) ---------------------
def fast_linear(t: dict):
    spec = STLLRSpec(DenseOps(), SHD_LIF, SHD_FACTORS, psi_a)
    s, u, p, r, q = STLLRRecurrentStep.apply(
        t["x"], t["s_prev"], t["w"], t["w_rec"], t["b"],
        t["u_prev"], t["p_prev"], t["r"], t["q_prev"], spec,
    )  # fmt: skip
    return s, {"u": u, "p": p, "r": r, "q": q}


def persample_linear(t: dict, official):
    if official is None:
        s, u, p, r, q = PerSampleRecurrentStep.apply(
            t["x"], t["s_prev"], t["w"], t["w_rec"], t["b"],
            t["u_prev"], t["p_prev"], t["r"], t["q_prev"], SHD_LIF, SHD_FACTORS,
        )  # fmt: skip
        return s, {"u": u, "p": p, "r": r, "q": q}
    like = t["w"]
    leak = torch.tensor(SHD_LIF.leak, dtype=like.dtype, device=like.device)
    thr = torch.tensor(SHD_LIF.threshold, dtype=like.dtype, device=like.device)
    fac = torch.tensor(SHD_FACTORS.as_list(), dtype=like.dtype, device=like.device)
    s, mem, p, r, q = official.STLLRLinearRecGrad.apply(
        t["x"], t["s_prev"], t["w"], t["w_rec"], t["b"],
        t["p_prev"], t["r"], t["q_prev"], t["u_prev"], leak, thr, fac,
    )  # fmt: skip
    # The official Function returns the membrane before the reset; the layer resets outside.
    u = mem - thr.clamp(min=0.5) * s.detach().to(mem.dtype)
    return s, {"u": u, "p": p, "r": r, "q": q}


def fast_conv(t: dict):
    spec = STLLRSpec(Conv2dOps((1, 1), (1, 1)), VGG_LIF, GESTURE_FACTORS, psi_b)
    s, u, p, q = STLLRStep.apply(
        t["x"], t["w"], t["b"], t["u_prev"], t["p_prev"], t["q_prev"], spec
    )
    return s, {"u": u, "p": p, "q": q}


def reference_conv(t: dict, official):
    if official is None:
        ops = Conv2dOps((1, 1), (1, 1))
        s, u, p, q = TwoCorrelationConvStep.apply(
            t["x"], t["w"], t["b"], t["u_prev"], t["p_prev"], t["q_prev"],
            ops, VGG_LIF, GESTURE_FACTORS,
        )  # fmt: skip
        return s, {"u": u, "p": p, "q": q}
    like = t["w"]
    leak = torch.tensor(VGG_LIF.leak, dtype=like.dtype, device=like.device)
    thr = torch.tensor(VGG_LIF.threshold, dtype=like.dtype, device=like.device)
    fac = torch.tensor(GESTURE_FACTORS.as_list(), dtype=like.dtype, device=like.device)
    s, mem, p, q = official.STLLRConv2dGrad.apply(
        t["x"], t["w"], t["b"], (1, 1), (1, 1), (1, 1), 1,
        t["p_prev"], t["q_prev"], t["u_prev"], leak, thr, fac,
    )  # fmt: skip
    u = mem - thr.clamp(min=0.5) * s.detach().to(mem.dtype)
    return s, {"u": u, "p": p, "q": q}


def run_step(step, t: dict, grad_names):
    """Forward + backward of one step; returns outputs, grads and the two durations."""
    for k in grad_names:
        t[k].grad = None
    sync(t["w"].device)
    t0 = time.perf_counter()
    s, states = step(t)
    sync(t["w"].device)
    t1 = time.perf_counter()
    s.backward(t["delta"].to(s.dtype))
    sync(t["w"].device)
    t2 = time.perf_counter()
    grads = {k: t[k].grad for k in grad_names}
    return s, states, grads, t1 - t0, t2 - t1


def compare(ref_step, fast_step, inputs, grad_names, dtype, device, rtol, atol) -> dict:
    """Run both on the same inputs (``dtype``) and report max |Δ| of outputs and grads."""
    a = leaves(inputs, dtype, device, grad_names)
    b = leaves(inputs, dtype, device, grad_names)
    s_ref, st_ref, g_ref, _, _ = run_step(ref_step, a, grad_names)
    s_fast, st_fast, g_fast, _, _ = run_step(fast_step, b, grad_names)
    out = {"dtype": str(dtype).replace("torch.", ""), "rtol": rtol, "atol": atol}
    out["spike_mismatches"] = int((s_ref.detach().to(s_fast.dtype) != s_fast.detach()).sum())
    out["state_max_abs_diff"] = {
        k: float((st_ref[k].detach().to(st_fast[k].dtype) - st_fast[k]).abs().max())
        for k in st_fast
    }
    diffs, scales, ok = {}, {}, True
    for k in grad_names:
        gr, gf = g_ref[k].to(g_fast[k].dtype), g_fast[k]
        diffs[k] = float((gr - gf).abs().max())
        scales[k] = float(gr.abs().max())
        ok = ok and bool(torch.allclose(gf, gr, rtol=rtol, atol=atol * max(scales[k], 1e-30)))
    out["grad_max_abs_diff"] = diffs
    out["grad_max_abs_reference"] = scales
    out["grad_max_rel_diff"] = {k: diffs[k] / scales[k] if scales[k] else 0.0 for k in diffs}
    out["allclose"] = ok
    out["atol_note"] = "atol is relative to max |reference gradient|"
    return out


def time_pair(ref_step, fast_step, inputs, grad_names, device, rounds, fast_per_round) -> dict:
    """Interleaved timing in float32: each round one reference step, then k fast steps."""
    a = leaves(inputs, torch.float32, device, grad_names)
    b = leaves(inputs, torch.float32, device, grad_names)
    run_step(ref_step, a, grad_names)  # warm-up
    run_step(fast_step, b, grad_names)
    rec = {"reference": {"fwd": [], "bwd": []}, "fast": {"fwd": [], "bwd": []}}
    for _ in range(rounds):
        *_, f, bw = run_step(ref_step, a, grad_names)
        rec["reference"]["fwd"].append(f)
        rec["reference"]["bwd"].append(bw)
        for _ in range(fast_per_round):
            *_, f, bw = run_step(fast_step, b, grad_names)
            rec["fast"]["fwd"].append(f)
            rec["fast"]["bwd"].append(bw)
    out = {}
    for name, r in rec.items():
        total = [f + bw for f, bw in zip(r["fwd"], r["bwd"], strict=True)]
        out[name] = {
            "forward_ms_median": 1e3 * statistics.median(r["fwd"]),
            "backward_ms_median": 1e3 * statistics.median(r["bwd"]),
            "total_ms_median": 1e3 * statistics.median(total),
            "total_ms_min": 1e3 * min(total),
            "n": len(total),
        }
    out["speedup_total_median"] = (
        out["reference"]["total_ms_median"] / out["fast"]["total_ms_median"]
    )
    out["speedup_total_min"] = out["reference"]["total_ms_min"] / out["fast"]["total_ms_min"]
    out["speedup_backward_median"] = (
        out["reference"]["backward_ms_median"] / out["fast"]["backward_ms_median"]
    )
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--official", help="path of an extracted official S-TLLR checkout")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--n-in", type=int, default=700)
    p.add_argument("--n-out", type=int, default=450)
    p.add_argument("--conv", default="16,256,256,16", help="batch,C_in,C_out,size ('' = skip)")
    p.add_argument("--rounds", type=int, default=7, help="timing rounds (1 reference step each)")
    p.add_argument("--fast-per-round", type=int, default=5)
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick: 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.n_in, args.n_out = 8, 70, 45
        args.conv = "2,8,8,8" if args.conv == p.get_default("conv") else args.conv
        args.rounds, args.fast_per_round = 2, 2
    set_threads(args.threads, args.quick)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    official = load_official(args.official) if args.official else None
    start = time.perf_counter()
    result = {
        "benchmark": "fast_vs_persample",
        "quick": args.quick,
        "env": environment(device),
        "persample_impl": (
            f"official STLLRLinearRecGrad from {args.official}"
            if official
            else "in-file PerSampleRecurrentStep (no --official given)"
        ),
    }
    lin = linear_inputs(args.batch, args.n_in, args.n_out, args.seed)
    names = ("x", "w", "w_rec", "b")

    def ref(t):
        return persample_linear(t, official)

    timing = time_pair(ref, fast_linear, lin, names, device, args.rounds, args.fast_per_round)
    result["linear_recurrent"] = {
        "shape": {"batch": args.batch, "in": args.n_in, "out": args.n_out},
        "what": "one recurrent S-TLLR step: forward + backward (δ = ∂L/∂s given), float32",
        "persample_intermediate_bytes": 4 * args.batch * args.n_out * (args.n_in + args.n_out),
        "persample_intermediate_note": "float32 bytes of one [B,out,in] + one [B,out,out] tensor",
        "timing": timing,
        "speedup": target(timing["speedup_total_median"], ">=", 30.0, not args.quick),
        "grad_check_float64": compare(
            ref, fast_linear, lin, names, torch.float64, device, 1e-9, 1e-12
        ),
        "grad_check_float32": compare(
            ref, fast_linear, lin, names, torch.float32, device, 1e-4, 1e-5
        ),
    }
    if args.conv:
        batch, c_in, c_out, size = (int(v) for v in args.conv.split(","))
        conv = conv_inputs(batch, c_in, c_out, size, args.seed)
        cnames = ("x", "w", "b")

        def cref(t):
            return reference_conv(t, official)

        ctiming = time_pair(cref, fast_conv, conv, cnames, device, args.rounds, 1)
        result["conv"] = {
            "shape": {"batch": batch, "c_in": c_in, "c_out": c_out, "size": size, "kernel": 3},
            "reference_impl": (
                f"official STLLRConv2dGrad from {args.official}"
                if official
                else "in-file TwoCorrelationConvStep (no --official given)"
            ),
            "note": (
                "the official STLLRConv2dGrad already computes the weight gradient with two "
                "torch.nn.grad.conv2d_weight calls (no per-sample tensors); the project fuses "
                "them into one conv2d_weight over the batch-stacked operands, so no large "
                "speed-up is expected here"
            ),
            "timing": ctiming,
            "grad_check_float64": compare(
                cref, fast_conv, conv, cnames, torch.float64, device, 1e-9, 1e-12
            ),
            "grad_check_float32": compare(
                cref, fast_conv, conv, cnames, torch.float32, device, 1e-4, 1e-5
            ),
        }
    result["elapsed_s"] = time.perf_counter() - start
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
