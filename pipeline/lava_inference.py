"""Stage ``lava``: the deployed network in Lava (``fixed_pt``) against the integer emulator.

The first ``lava.samples`` test samples, zero-padded to one length ``T`` (Lava runs them
back to back and resets every state each ``T`` steps), are run three ways on the same
frames: the float model, the integer emulator (``delay = 0``, batched) and Lava
(:func:`lava_models.runner.run_lava`, the toolkit's fused processes). Recorded: the
accuracy of each, how many Lava predictions equal the emulator's, and whether every
node's output at every step is bit-identical (the count of differing values per node).

Writes ``lava/lava.json`` and ``lava/sample.npz`` (the report's spike raster: input
events, hidden spikes and logits of one sample, as Lava computed them). With
``lava.enabled = false`` (``--skip-lava``) the stage records that it was skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline import artefacts as A
from pipeline.runner import Context, StageOutput
from stllr.run import atomic_json, atomic_write_bytes
from stllr.trainer import pad_time


def padded_subset(dataset, indices, shift=None, split: str = "test"):
    """Frames ``[T, N, ...]`` (zero-padded to the longest), labels ``[N]``, lengths ``[N]``."""
    xs, ys = [], []
    for i in indices:
        x, y = dataset[i]
        xs.append(shift(x, split, i) if shift is not None else x)
        ys.append(int(y))
    lengths = torch.tensor([x.shape[0] for x in xs])
    return pad_time(xs), torch.tensor(ys), lengths


def emulate(qnet, x_int: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every node's output at every step, ``[T, N, ...]``, batched (static weights)."""
    from quantization.emulator import IntegerEmulator

    emu = IntegerEmulator(qnet, delay=0)
    outs: dict[str, list] = {n.name: [] for n in qnet.nodes}
    for t in range(x_int.shape[0]):
        o = emu.forward(x_int[t])
        for n in qnet.nodes:
            outs[n.name].append(o[n.name])
    return {k: torch.stack(v) for k, v in outs.items()}


def lava_outputs(res, qnet, n: int, steps: int) -> dict[str, np.ndarray]:
    """``run_lava`` outputs ``[N·T, ...]`` → ``[T, N, ...]`` (the emulator's layout)."""
    out = {}
    for node in qnet.nodes:
        a = np.asarray(res.outputs[node.name])
        out[node.name] = np.swapaxes(a.reshape(n, steps, *a.shape[1:]), 0, 1)
    return out


def compare_outputs(qnet, emu: dict, lava: dict) -> dict[str, int]:
    """Per node: how many output values differ between the emulator and Lava."""
    return {n.name: int((emu[n.name].numpy() != lava[n.name]).sum()) for n in qnet.nodes}


def run_in_lava(qnet, x_int: torch.Tensor, signals=None, timeout_s: float = 900.0):
    """``run_lava`` on ``[T, N, ...]`` integer frames (and signals ``{node: [T, N, ...]}``)."""
    from lava_models.runner import run_lava
    from lava_models.runtime import import_lava

    import_lava()
    frames = x_int.transpose(0, 1).numpy()
    sig = None
    if signals:
        sig = {k: v.transpose(0, 1).numpy() for k, v in signals.items()}
    return run_lava(qnet, frames, sig, timeout_s=timeout_s)


def run(ctx: Context) -> StageOutput:
    lava = ctx.cfg.lava
    if not lava.enabled:
        summary = {"skipped": True}
        atomic_json(summary, ctx.stage_dir("lava") / "lava.json")
        return StageOutput(summary, "skipped (--skip-lava): no Lava run", (A.LAVA_JSON,))
    from quantization.ptq import quantize_input
    from stllr.training import evaluate_batch

    qnet = A.load_qnet(ctx.run_dir)
    data = ctx.data
    n = min(lava.samples, len(data.test))
    x, y, lengths = padded_subset(data.test, range(n))
    steps = int(x.shape[0])
    x_int = quantize_input(x, qnet.input_format)
    ref = emulate(qnet, x_int)
    out_name = qnet.nodes[-1].name
    emu_pred = ref[out_name].sum(0).argmax(1)
    ctx.log(f"  Lava fixed_pt: {n} test samples × {steps} steps (one runtime, reset per sample)")
    res = run_in_lava(qnet, x_int, timeout_s=lava.timeout_s)
    got = lava_outputs(res, qnet, n, steps)
    lava_pred = torch.as_tensor(got[out_name].sum(0)).argmax(1)
    mismatches = compare_outputs(qnet, ref, got)
    model, _ = A.load_float_model(ctx.run_dir, ctx.cfg.train, data)
    float_pred = evaluate_batch(model, x).logits.argmax(1)

    def acc(pred) -> float:
        return 100.0 * float((pred == y).double().mean())

    agree = int((lava_pred == emu_pred).sum())
    bit_exact = all(v == 0 for v in mismatches.values())
    result = {
        "samples": n,
        "steps": steps,
        "labels": y.tolist(),
        "predictions": {
            "float": float_pred.tolist(),
            "emulator": emu_pred.tolist(),
            "lava": lava_pred.tolist(),
        },
        "accuracy": {"float": acc(float_pred), "emulator": acc(emu_pred), "lava": acc(lava_pred)},
        "lava_vs_emulator_agreement": agree / n,
        "float_vs_emulator_agreement": float((float_pred == emu_pred).double().mean()),
        "bit_exact": bit_exact,
        "mismatched_values": mismatches,
        "timing_s": res.timing,
    }
    out = ctx.stage_dir("lava")
    atomic_json(result, out / "lava.json")
    k = min(ctx.cfg.report.raster_sample, n - 1)
    sample = {
        "input": x_int[:, k].numpy(),
        "label": np.int64(y[k]),
        "length": np.int64(lengths[k]),
        "index": np.int64(k),
    }
    from quantization.network import SpikingLayer

    for node in qnet.nodes:
        if isinstance(node, SpikingLayer) or node.name == out_name:
            sample[f"out_{node.name}"] = got[node.name][:, k]
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **sample)
    atomic_write_bytes(out / "sample.npz", buf.getvalue())
    summary = {
        k2: result[k2]
        for k2 in ("samples", "steps", "accuracy", "bit_exact", "lava_vs_emulator_agreement")
    }
    summary["skipped"] = False
    summary["seconds_lava_run"] = res.timing.get("run")
    a = result["accuracy"]
    line = (
        f"{n} test samples in Lava fixed_pt: accuracy {a['lava']:.1f}% (emulator "
        f"{a['emulator']:.1f}%, float {a['float']:.1f}%); Lava = emulator predictions "
        f"{agree}/{n}, every output {'bit-exact' if bit_exact else 'NOT bit-exact'}"
    )
    if not bit_exact:
        ctx.log(f"  WARNING: Lava differs from the emulator: {mismatches}")
    return StageOutput(summary, line, (A.LAVA_JSON, A.LAVA_SAMPLE))
