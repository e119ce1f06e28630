"""Device check: training steps, the emulator and timings on a GPU, against the CPU.

On a CUDA host (``python benchmarks/gpu_check.py``, default ``--device cuda``) it

1. runs one S-TLLR and one BPTT training step per task model (SHD RSNN, VGG-9, ResNet-18)
   on the device and on the CPU from the same weights and batch, and compares the
   gradients: in float64 (TF32 off), ``max|g_dev − g_cpu| / max|g_cpu|`` ≤ ``GRAD_RTOL``
   for every parameter (float32 differs by reduction order and can flip a spike that sits
   on the threshold, so float64 is the pass/fail check; the float32 difference is printed);
2. measures bfloat16 autocast against float32 for the S-TLLR step on the device (the
   mixed-precision question: relative gradient difference, against ``AMP_RTOL``);
3. runs the integer emulator (:class:`quantization.emulator.IntegerEmulator`) on the
   device and on the CPU: logits, spike and saturation counts must be equal bit for bit;
4. times S-TLLR against BPTT steps and records the peak memory over T (SHD RSNN, VGG-9):
   on CUDA the allocator's peak, on the CPU the bytes autograd saves
   (:class:`stllr.memory.SavedTensorTracker`).

It prints one JSON document; ``"ok"`` is true when every check passed (exit status 1
otherwise). Without a GPU it says so and exits 0 with ``"status": "skipped"``;
``--device cpu --quick`` runs everything on the CPU as a smoke test (device = CPU, so the
comparisons are trivial there).
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from _common import emit, pick_device, set_threads, summary, timed

from stllr.config import ExperimentConfig
from stllr.memory import SavedTensorTracker
from stllr.models.factory import build_model
from stllr.training import train_batch

#: float64 gradients on the device vs the CPU: relative tolerance (max-abs normalised)
GRAD_RTOL = 1e-6
#: bfloat16 autocast vs float32 S-TLLR gradients: the tolerance a mixed-precision option
#: would have to meet (relative, max-abs normalised)
AMP_RTOL = 5e-2


def task_models(quick: bool) -> dict[str, tuple[dict, tuple[int, ...], int]]:
    """name → (config keys, input shape, classes): the paper's sizes, or tiny ones."""
    if quick:
        return {
            "shd_rsnn": ({"arch": "shd_rsnn", "hidden": 16}, (20,), 4),
            "vgg9": ({"arch": "vgg9", "channels": (4,) * 8}, (2, 8, 8), 4),
            "resnet18": ({"arch": "resnet18", "channels": (4, 4, 4, 4)}, (2, 8, 8), 4),
        }
    return {
        "shd_rsnn": ({"arch": "shd_rsnn", "hidden": 450}, (700,), 20),
        "vgg9": ({"arch": "vgg9"}, (2, 48, 48), 11),
        "resnet18": ({"arch": "resnet18"}, (2, 48, 48), 10),
    }


def make(name_kw: dict, shape, classes, method: str, dtype=torch.float32):
    """A task model for ``method`` (stllr or bptt), seeded, on the CPU."""
    cfg = ExperimentConfig(method=method, window=4, **name_kw)
    torch.manual_seed(0)
    model, mode = build_model(cfg, shape, classes)
    return model.to(dtype), mode


def batch(shape, classes, steps: int, size: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, size, *shape, generator=g) < 0.2).to(dtype)
    return x, torch.randint(0, classes, (size,), generator=g)


def gradients(model, mode, x, y, device, autocast: bool = False) -> dict[str, torch.Tensor]:
    """Gradients of one training step (SGD with lr 0 keeps the weights), on the CPU."""
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        train_batch(model, x.to(device), y.to(device), opt, mode=mode, window=4)
    return {
        n: p.grad.detach().double().cpu() for n, p in model.named_parameters() if p.grad is not None
    }


def rel_diff(a: dict, b: dict) -> float | None:
    """max over parameters of ``max|a − b| / max|b|``; None when a gradient is missing
    from one side."""
    if a.keys() != b.keys():
        return None
    worst = 0.0
    for k in b:
        scale = float(b[k].abs().max()) or 1.0
        worst = max(worst, float((a[k] - b[k]).abs().max()) / scale)
    return worst


def check_gradients(models, device, steps: int, size: int) -> dict:
    out = {}
    for name, (kw, shape, classes) in models.items():
        for method in ("stllr", "bptt"):
            row = {}
            for label, dtype in (("float64", torch.float64), ("float32", torch.float32)):
                model, mode = make(kw, shape, classes, method, dtype)
                x, y = batch(shape, classes, steps, size, dtype)
                row[f"{label}_rel_diff"] = rel_diff(
                    gradients(model, mode, x, y, device),
                    gradients(model, mode, x, y, torch.device("cpu")),
                )
            row["ok"] = row["float64_rel_diff"] is not None and row["float64_rel_diff"] <= GRAD_RTOL
            out[f"{name}/{method}"] = row
    return out


def check_amp(models, device, steps: int, size: int) -> dict:
    """bfloat16 autocast vs float32 S-TLLR gradients on ``device``."""
    out = {}
    for name, (kw, shape, classes) in models.items():
        model, mode = make(kw, shape, classes, "stllr")
        x, y = batch(shape, classes, steps, size)
        try:
            amp = gradients(model, mode, x, y, device, autocast=True)
        except RuntimeError as exc:  # an op without a bfloat16 kernel on this device
            out[name] = {"measured": False, "error": str(exc).splitlines()[0][:200]}
            continue
        ref = gradients(model, mode, x, y, device)
        missing = sorted(set(ref) ^ set(amp))
        diff = rel_diff({k: amp[k] for k in ref if k in amp}, {k: ref[k] for k in ref if k in amp})
        out[name] = {
            "measured": True,
            "rel_diff": diff,
            "gradients_missing_or_extra": missing,
            "within": not missing and diff <= AMP_RTOL,
        }
    return out


def check_emulator(models, device, steps: int, size: int) -> dict:
    """The integer emulator on ``device`` equals the CPU's bit for bit."""
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import PTQConfig, quantize_model

    out = {}
    for name in ("shd_rsnn", "vgg9"):
        kw, shape, classes = models[name]
        model, _ = make(kw, shape, classes, "stllr")
        x, _ = batch(shape, classes, steps, size)
        qnet, _ = quantize_model(model.eval(), [x], PTQConfig(weight_bits=8))
        lengths = torch.full((size,), steps)
        lengths[0] = max(steps // 2, 1)
        res = {
            d.type: IntegerEmulator(qnet, device=d).run(x, lengths=lengths)
            for d in (torch.device("cpu"), device)
        }
        cpu, dev = res["cpu"], res[device.type]
        same = torch.equal(cpu.logits_sum.cpu(), dev.logits_sum.cpu())
        same = same and cpu.spike_counts == dev.spike_counts
        out[name] = {"bit_identical": bool(same), "spikes": sum(cpu.spike_counts.values())}
    return out


def peak_and_time(model, mode, x, y, device, repeats: int) -> dict:
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    step = lambda: train_batch(model, x, y, opt, mode=mode, window=4)  # noqa: E731
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        times = [timed(step, device) for _ in range(repeats)]
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)), "time": summary(times)}
    with SavedTensorTracker() as tracker:
        times = [timed(step, device) for _ in range(repeats)]
    return {"peak_saved_bytes": tracker.peak, "time": summary(times)}


def timings(models, device, ts, size: int, repeats: int) -> dict:
    out = {}
    for name in ("shd_rsnn", "vgg9"):
        kw, shape, classes = models[name]
        points = []
        for steps in ts:
            x, y = batch(shape, classes, steps, size)
            row = {"T": steps}
            for method in ("stllr", "bptt"):
                model, mode = make(kw, shape, classes, method)
                row[method] = peak_and_time(model, mode, x, y, device, repeats)
            row["stllr_over_bptt_time"] = (
                row["stllr"]["time"]["median_s"] / row["bptt"]["time"]["median_s"]
            )
            points.append(row)
        out[name] = points
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--quick", action="store_true", help="tiny models and T (smoke test)")
    p.add_argument("--T", type=int, nargs="+", help="T of the timing points")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per point (median)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick: 1)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads, args.quick)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU on this host; nothing was checked (use --device cpu "
            "--quick for a CPU smoke test)",
            file=sys.stderr,
        )
        emit({"benchmark": "gpu_check", "status": "skipped", "reason": "no CUDA GPU"}, args.out)
        return 0
    device = pick_device(args.device)
    models = task_models(args.quick)
    steps, size = (6, 2) if args.quick else (20, 8)
    ts = args.T or ([4, 8] if args.quick else [25, 50, 100, 200])
    # with torch's default TF32 settings: the emulator must turn TF32 off itself
    emulator = check_emulator(models, device, steps, size)
    if device.type == "cuda":  # float32 comparisons without TF32's 10-bit mantissa
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    result = {
        "benchmark": "gpu_check",
        "status": "run",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "quick": args.quick,
        "tolerances": {"grad_rtol_float64": GRAD_RTOL, "amp_rtol_bfloat16": AMP_RTOL},
        "gradients": check_gradients(models, device, steps, size),
        "amp_bfloat16": check_amp(models, device, steps, size),
        "emulator": emulator,
        "timing": timings(models, device, ts, size, args.repeats),
    }
    result["ok"] = all(r["ok"] for r in result["gradients"].values()) and all(
        r["bit_identical"] for r in result["emulator"].values()
    )
    emit(result, args.out)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
