"""Stage ``lava``: the deployed network in Lava (``fixed_pt``) against the integer emulator,
and the float model in Lava (``floating_pt``) against torch.

The first ``lava.samples`` test samples, zero-padded to one length ``T`` (Lava runs them
back to back and resets every state each ``T`` steps), are run five ways on the same
frames: the float model (torch, float32 as trained), the integer emulator (``delay = 0``,
batched), Lava ``fixed_pt`` (:func:`lava_models.runner.run_lava` on the quantized network,
the toolkit's fused processes), the float model exported to Lava ``floating_pt``
(:func:`lava_models.float_exporter.float_network`, run by the same ``run_lava``) and, as that
one's exact reference, a float64 copy of the torch model. Every run scores sample b over
its own steps ``t < len_b`` only (:mod:`stllr.padding`): what the sample scores run alone,
as ``stllr eval`` and the quantize stage score it. Recorded: the accuracy of each
Lava run, the emulator and the float model; how many Lava ``fixed_pt`` predictions equal
the emulator's and whether every node's output at every step (padding included) is
bit-identical (the count of differing values per node); how many Lava ``floating_pt``
predictions equal the torch float64 and float32 ones, and the largest difference of its
logits (summed over each sample's steps) from the float64 model's (tolerance
:data:`FLOAT_LOGIT_TOL`, see there).

Writes ``lava/lava.json`` and ``lava/sample.npz`` (the report's spike raster: input
events, hidden spikes and logits of one sample, as Lava computed them). With
``lava.enabled = false`` (``--skip-lava``) the stage records that it was skipped.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from pipeline import artefacts as A
from pipeline.runner import Context, StageOutput
from stllr.padding import stack_samples, sum_over_lengths
from stllr.run import atomic_json, atomic_write_bytes


def padded_subset(dataset, indices, shift=None, split: str = "test"):
    """Frames ``[T, N, ...]`` (zero-padded to the longest), labels ``[N]``, lengths ``[N]``."""
    items = []
    for i in indices:
        x, y = dataset[i]
        items.append((shift(x, split, i) if shift is not None else x, y))
    return stack_samples(items)


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


#: Largest allowed |Lava floating_pt logit − torch float64 logit| (logits ``Σ_t o[t]``).
#: The exported float graph holds the float64 model's effective weights Ŵ and the Lava
#: ``floating_pt`` models call the same ``stllr`` step functions in float64, so the only
#: legitimate difference is float64 rounding from a different order of operations: about
#: eps · |logit| · T (≈ 2e-16 · 3.5e3 · 85 ≈ 7e-11 for the default SHD stand-in; measured
#: 0). A hidden spike that flips changes the logits by a readout weight (mean |w| ≈ 0.07
#: in the default run) carried through the readout's leaky sum: four orders of magnitude
#: above the bound, so the bound separates rounding from a real error. 1e-5 is the toolkit's
#: float parity bound (``hw_tests.parity`` ``TOL``, membranes and logits). The float32
#: model that was trained is *not* the exact reference: its own rounding (≈ 1e-3 on these
#: logits) can flip a spike near threshold, so only its predictions are compared.
FLOAT_LOGIT_TOL = 1e-5


def float64_model(model):
    """A float64 copy of the torch model in eval mode: what Lava ``floating_pt`` computes."""
    return copy.deepcopy(model).double().eval()


def run_float_in_lava(model_or_network, x: torch.Tensor, timeout_s: float = 900.0, lengths=None):
    """The float model (a float64 task model or its :class:`~lava_models.float_exporter.
    FloatNetwork`) in Lava ``floating_pt`` on ``[T, N, ...]`` frames: ``(logits [N, K]
    float64, LavaRunResult)``; logits are the last node's outputs summed over T (over
    each sample's ``lengths`` steps when given)."""
    from lava_models.float_exporter import float_network
    from lava_models.runner import run_lava
    from lava_models.runtime import import_lava

    import_lava()
    net = float_network(model_or_network)
    steps, n = int(x.shape[0]), int(x.shape[1])
    res = run_lava(net, x.double().transpose(0, 1).numpy(), timeout_s=timeout_s)
    out = lava_outputs(res, net, n, steps)[net.nodes[-1].name]
    return sum_over_lengths(out, lengths).numpy(), res


def _float_in_lava(ctx: Context, model, x, y, lengths, float_logits, timeout_s: float) -> dict:
    """Lava ``floating_pt`` vs the torch float64 (exact) and float32 (as trained) model,
    each sample scored over its ``lengths`` steps."""
    from lava_models.errors import UnsupportedNodeError
    from lava_models.float_exporter import float_network, float_output_shapes
    from stllr.training import evaluate_batch

    n = int(x.shape[1])
    model64 = float64_model(model)
    ref = evaluate_batch(model64, x.double(), lengths=lengths).logits.numpy()
    try:  # a model without a float export: TypeError (to_float_graph) or UnsupportedNodeError
        net = float_network(model64)
        float_output_shapes(net)
    except (UnsupportedNodeError, TypeError) as err:
        ctx.log(f"  WARNING: the float model does not export to Lava floating_pt: {err}")
        return {"error": str(err), "float64_predictions": ref.argmax(1).tolist()}
    ctx.log(f"  Lava floating_pt: the float model (float64) on the same {n} samples")
    logits, res = run_float_in_lava(net, x, timeout_s, lengths)
    pred = torch.as_tensor(logits.argmax(1))
    float_pred = float_logits.argmax(1)
    pred64 = torch.as_tensor(ref.argmax(1))
    diff = float(np.abs(logits - ref).max())
    return {
        "reference": "torch float64 copy of the trained model",
        "predictions": pred.tolist(),
        "float64_predictions": pred64.tolist(),
        "accuracy": 100.0 * float((pred == y).double().mean()),
        "vs_float64_agreement": float((pred == pred64).double().mean()),
        "vs_float_agreement": float((pred == float_pred).double().mean()),
        "max_abs_logit_diff": diff,
        "max_abs_logit_diff_vs_float32": float(
            np.abs(logits - float_logits.double().numpy()).max()
        ),
        "max_abs_logit": float(np.abs(ref).max()),
        "tolerance": FLOAT_LOGIT_TOL,
        "within_tolerance": diff <= FLOAT_LOGIT_TOL,
        "logits": logits.tolist(),
        "timing_s": res.timing,
    }


def run(ctx: Context) -> StageOutput:
    lava = ctx.cfg.lava
    if not lava.enabled:
        summary = {"skipped": True}
        atomic_json(summary, ctx.stage_dir("lava") / "lava.json")
        return StageOutput(summary, "skipped (--skip-lava): no Lava run", (A.LAVA_JSON,))
    from pipeline.adapt_device import emulator_predictions
    from pipeline.deployable import is_first_spike
    from pipeline.first_spike import FS_NO_FLOAT_LAVA, float_readout, spike_decision
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
    fs = is_first_spike(ctx.cfg.train)
    emu_pred = sum_over_lengths(ref[out_name], lengths).argmax(1)
    ctx.log(f"  Lava fixed_pt: {n} test samples × {steps} steps (one runtime, reset per sample)")
    res = run_in_lava(qnet, x_int, timeout_s=lava.timeout_s)
    got = lava_outputs(res, qnet, n, steps)
    lava_pred = sum_over_lengths(got[out_name], lengths).argmax(1)
    mismatches = compare_outputs(qnet, ref, got)
    model, _ = A.load_float_model(ctx.run_dir, ctx.cfg.train, data)
    if fs:  # read by the first output spike (pipeline.first_spike)
        emu_pred = emulator_predictions(qnet, x, lengths)
        lava_pred = spike_decision(torch.as_tensor(got[out_name]), lengths)
        float_pred = float_readout(model, ctx.cfg.train, [(x, y, lengths)])[1]
        flt = {"error": FS_NO_FLOAT_LAVA}
        ctx.log(f"  Lava floating_pt: {FS_NO_FLOAT_LAVA}")
    else:
        float_logits = evaluate_batch(model, x, lengths=lengths).logits
        float_pred = float_logits.argmax(1)
        flt = _float_in_lava(ctx, model, x, y, lengths, float_logits, lava.timeout_s)
    flt_pred = flt.get("predictions")

    def acc(pred) -> float:
        return 100.0 * float((pred == y).double().mean())

    agree = int((lava_pred == emu_pred).sum())
    bit_exact = all(v == 0 for v in mismatches.values())
    silent = int((lava_pred < 0).sum()) if fs else None
    result = {
        "samples": n,
        "steps": steps,
        "labels": y.tolist(),
        "predictions": {
            "float": float_pred.tolist(),
            "emulator": emu_pred.tolist(),
            "lava": lava_pred.tolist(),
            "lava_float": flt_pred,
        },
        "accuracy": {
            "float": acc(float_pred),
            "emulator": acc(emu_pred),
            "lava": acc(lava_pred),
            "lava_float": flt.get("accuracy"),
        },
        "lava_vs_emulator_agreement": agree / n,
        "float_vs_emulator_agreement": float((float_pred == emu_pred).double().mean()),
        "bit_exact": bit_exact,
        "mismatched_values": mismatches,
        "timing_s": res.timing,
        "lava_float": flt,
        "lava_silent_samples": silent,
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
    from quantization.network import SPIKING_NODES

    for node in qnet.nodes:
        if isinstance(node, SPIKING_NODES) or node.name == out_name:
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
    for k2 in ("vs_float64_agreement", "max_abs_logit_diff", "within_tolerance"):
        summary[f"lava_float_{k2}"] = flt.get(k2)
    summary["seconds_lava_float_run"] = flt.get("timing_s", {}).get("run")
    a = result["accuracy"]
    line = (
        f"{n} test samples in Lava fixed_pt: accuracy {a['lava']:.1f}% (emulator "
        f"{a['emulator']:.1f}%, float {a['float']:.1f}%); Lava = emulator predictions "
        f"{agree}/{n}, every output {'bit-exact' if bit_exact else 'NOT bit-exact'}"
    )
    if fs:
        summary["lava_silent_samples"] = silent
        line += (
            f"; read by the first output spike ({silent} sample(s) without one: undecided in "
            f"Lava, whose membranes are not read); Lava floating_pt: {FS_NO_FLOAT_LAVA}"
        )
    elif flt_pred is None:
        line += "; Lava floating_pt: not exported"
    else:
        same = round(flt["vs_float64_agreement"] * n)
        line += (
            f"; Lava floating_pt {a['lava_float']:.1f}% (= torch float64 predictions "
            f"{same}/{n}, max |Δlogit| {flt['max_abs_logit_diff']:.1g}"
            f"{'' if flt['within_tolerance'] else ' > tolerance ' + format(FLOAT_LOGIT_TOL, 'g')})"
        )
        if not flt["within_tolerance"] or same != n:
            ctx.log(
                f"  WARNING: Lava floating_pt differs from the torch float64 model: max "
                f"|Δlogit| {flt['max_abs_logit_diff']:.3g}, predictions equal {same}/{n}"
            )
    if not bit_exact:
        ctx.log(f"  WARNING: Lava differs from the emulator: {mismatches}")
    return StageOutput(summary, line, (A.LAVA_JSON, A.LAVA_SAMPLE))
