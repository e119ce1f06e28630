"""Stage ``quantize``: post-training quantization (optionally after QAT) and the bit sweep.

Calibrates the input format on a few shuffled training batches, quantizes the trained
network to ``quantize.bits`` signed weight bits (one power-of-two exponent per layer,
:mod:`quantization.ptq`) and scores it with the integer emulator on the test split, as
``stllr quantize`` does; the same for every width of ``quantize.sweep_bits`` (the report's
accuracy-vs-bits figure). With ``quantize.qat_epochs > 0`` a copy of the model is first
fine-tuned with quantization-aware training and the deployed network is its PTQ; a
second copy is fine-tuned as long without the quantizer (the float control,
:func:`quantization.report.float_control`) so the report can tell QAT's cost from the
extra training.

Writes ``quantize/quantized.pt`` (the deployed :class:`~quantization.network.QNetwork`),
``quantize/quantization.json`` (per-layer exponents and errors, input format,
saturation, float / PTQ / QAT accuracy) and ``quantize/sweep.json`` (accuracy per width,
in the format of :func:`quantization.report.plot_accuracy_vs_bits`). Both record the
float and integer latency of a readout network (:mod:`pipeline.latency`).

A first-spike-coded network (``train.readout = "first_spike"``) is scored by its first
output spike, float and integer alike (:mod:`pipeline.first_spike`): its accuracies are FS
accuracies, and ``first_spike`` holds both networks' FS metrics (accuracy, spike count,
first-spike latency, decision steps) in place of ``latency``.
"""

from __future__ import annotations

from pipeline import artefacts as A
from pipeline.deployable import is_first_spike
from pipeline.first_spike import float_readout, integer_readout
from pipeline.first_spike import text as fs_text
from pipeline.runner import Context, StageOutput
from stllr.errors import UserError
from stllr.progress import bar as progress_bar
from stllr.run import atomic_json
from stllr.trainer import batches


def _latency(model, qnet, test, batch_size: int) -> dict | None:
    """Float and integer latency of the readout's input layer (:mod:`pipeline.latency`)."""
    from pipeline.latency import float_latency, integer_latency, latency_node

    node = latency_node(qnet)
    if node is None:
        return None
    return {
        "node": node,
        "float": float_latency(model, node, test, batch_size),
        "integer": integer_latency(qnet, node, test, batch_size),
    }


def paired_gap(model, qnet, test, batch_size: int, float_pred=None) -> dict:
    """The deployed network against the float model on every test sample
    (:func:`quantization.comparison.paired_delta`: the accuracy difference in points, its
    paired standard error and the samples only one of them gets right). Predictions: the
    summed logits of each sample over its own steps, float model and emulator (a
    first-spike network: ``float_pred``, the float FS predictions, and the emulator's FS ones)."""
    import torch

    from pipeline.adapt_device import emulator_predictions
    from quantization.comparison import paired_delta
    from stllr.trainer import batches
    from stllr.training import evaluate_batch

    ys, ref, new = [], [], []
    for x, y, lengths in batches(test, batch_size):
        if float_pred is None:
            ref.append(evaluate_batch(model, x, lengths=lengths).logits.argmax(1).cpu())
        new.append(emulator_predictions(qnet, x, lengths, batch_size))
        ys.append(y)
    model.reset_state()
    ref = float_pred if float_pred is not None else torch.cat(ref)
    return paired_delta(torch.cat(ys), ref, torch.cat(new))


def run(ctx: Context) -> StageOutput:
    from quantization import report

    q, train = ctx.cfg.quantize, ctx.cfg.train
    data = ctx.data
    if q.qat_epochs > 0:
        report.qat_module()  # a clear error before any work when QAT is missing
    model, mode = A.load_float_model(ctx.run_dir, train, data)
    calib = report.calibration_batches(data.train, q.calib_batches, train.batch_size, train.seed)
    fs_float = f_pred = None
    if is_first_spike(train):
        fs_float, f_pred = float_readout(model, train, batches(data.test, train.val_batch_size))
        f_acc = fs_float.fs_acc
    else:
        f_acc = report.float_accuracy(model, data.test, train.val_batch_size, ctx.progress)
    widths = sorted(set(q.sweep_bits) | {q.bits})
    results = {}
    for b in progress_bar(widths, show=ctx.progress, desc="bit sweep (PTQ)", unit="width"):
        results[b] = report.quantize_and_evaluate(
            model, calib, data.test, train.val_batch_size, b, q.percentile, "ptq", ctx.progress
        )
    ptq = results[q.bits]
    if ptq.error is not None:
        raise UserError(f"{q.bits}-bit PTQ failed: {ptq.error}")
    qat = control = None
    if q.qat_epochs > 0:
        qat = report.qat_and_evaluate(
            model,
            mode,
            data,
            train,
            calib,
            q.bits,
            q.percentile,
            q.qat_epochs,
            ctx.progress,
            ctx.log,
        )
        if qat.error is not None:
            raise UserError(f"{q.bits}-bit QAT failed: {qat.error}")
        control = report.float_control(
            model, mode, data, train, q.qat_epochs, ctx.progress, ctx.log
        )
    deployed = qat if qat is not None else ptq
    latency = _latency(model, deployed.qnet, data.test, train.val_batch_size)
    gap = paired_gap(model, deployed.qnet, data.test, train.val_batch_size, f_pred)
    first_spike = None
    if fs_float is not None:
        fs_int, _ = integer_readout(deployed.qnet, batches(data.test, train.val_batch_size))
        first_spike = {"node": deployed.qnet.nodes[-1].name, "float": fs_float.as_dict(),
                       "integer": fs_int.as_dict()}  # fmt: skip
    out = ctx.stage_dir("quantize")
    deployed.qnet.save(out / "quantized.pt")
    atomic_json(
        {
            "weight_bits": q.bits,
            "percentile": q.percentile,
            "calib_batches": len(calib),
            "qat_epochs": q.qat_epochs,
            "emulator_delay": 0,
            "test_samples": len(data.test),
            "input_format": ptq.input_format,
            "float_accuracy": f_acc,
            **report.method_results(f_acc, ptq, qat, control),
            "deployed": deployed.method,
            "deployed_vs_float": gap,
            "latency": latency,
            "first_spike": first_spike,
        },
        out / "quantization.json",
    )
    entry = {
        "label": train.task,
        "float_accuracy": f_acc,
        "test_samples": len(data.test),
        "ptq": [results[b].as_dict() for b in widths],
        "qat": [] if qat is None else [qat.as_dict()],
        "float_control": None if qat is None else control,
    }
    atomic_json(
        {"bits": widths, "percentile": q.percentile, "entries": [entry]}, out / "sweep.json"
    )
    sweep = {b: results[b].accuracy for b in widths}
    summary = {
        "bits": q.bits,
        "float_accuracy": f_acc,
        "ptq_accuracy": ptq.accuracy,
        "qat_accuracy": None if qat is None else qat.accuracy,
        "float_control_accuracy": None if qat is None else control["accuracy"],
        "deployed": deployed.method,
        "deployed_accuracy": deployed.accuracy,
        "sweep": {str(b): a for b, a in sweep.items()},
        "saturation_max_fraction": deployed.saturation.get("max_fraction", 0.0),
        "test_samples": len(data.test),
        "deployed_vs_float": gap,
        "latency": latency,
        "first_spike": first_spike,
    }
    cells = ", ".join(f"{b}b {'fail' if a is None else f'{a:.1f}'}" for b, a in sweep.items())
    line = (
        f"{q.bits}-bit {deployed.method.upper()} (integer emulator) {deployed.accuracy:.1f}% vs "
        f"float {f_acc:.1f}% ({gap['delta']:+.1f} ± {gap['standard_error']:.1f} pts, paired "
        f"SE; {gap['new_only']} samples gained, {gap['ref_only']} lost of {len(data.test)}"
        + ("" if qat is None else f"; float control {control['accuracy']:.1f}%")
        + f"); sweep: {cells}"
    )
    if latency is not None:
        f, i = latency["float"], latency["integer"]
        line += (
            f"; first spike of {latency['node']} at step {f['first_spike_latency']:.1f} float, "
            f"{i['first_spike_latency']:.1f} fixed point; decision step "
            f"{f['decision_step']:.1f} / {i['decision_step']:.1f}"
        )
    if first_spike is not None:
        line += (
            f"; first-spike read-out: float {fs_text(first_spike['float'])}; "
            f"{q.bits}-bit {fs_text(first_spike['integer'])}"
        )
    return StageOutput(summary, line, (A.QNET, A.QUANT_JSON, A.SWEEP_JSON))
