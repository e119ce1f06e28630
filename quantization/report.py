"""Accuracy of a float checkpoint after quantization: PTQ per bit width, optional QAT.

What ``stllr quantize`` and ``stllr compare`` compute and write. Accuracies are in
percent of the test split (as ``stllr eval``'s ``test_acc``); ``delta_vs_float`` is in
percentage points. The float model is scored by :func:`stllr.trainer.run_epoch`, the
quantized one by the integer emulator (:func:`quantization.emulator.evaluate`, float-model
timing ``delay = 0``), both on the same padded test batches of ``val_batch_size``, each
sample over its own steps (the padding masked: the accuracies do not depend on the batch
size).

Per bit width ``b`` (PTQ): calibrate the input format on a few shuffled training
batches, quantize the weights with ``PTQConfig(weight_bits=b, percentile=p)`` (QAT:
``scale="pow2"``, the format it was fine-tuned through), run the
emulator on the test split. A width at which a layer cannot be represented
(:class:`~quantization.ptq.QuantizationError`) is recorded with its message, not raised.

QAT (``qat_epochs > 0``, :mod:`quantization.qat`, imported only then): a copy of the
float model is fine-tuned through the fake quantizer at ``b`` bits, then quantized and
emulated like PTQ; the fake-quantized float accuracy is recorded beside it. QAT trains
for ``qat_epochs`` more epochs than the float model saw, so a second copy is fine-tuned
for the same epochs *without* the quantizer (:func:`float_control`: same optimiser,
rate, batches and seeds): ``delta_vs_control`` = QAT − that control is the cost of
quantization with the extra training counted on both sides; ``delta_vs_float`` (QAT −
the checkpoint) mixes the two.

Per layer (``layer_rows``): weight exponent ``e``, calibrated range, clipped fraction
(weights beyond the range; only with ``percentile < 100``), and the RMS quantization
error relative to the RMS weight, ``rms(m·2^e − W) / rms(W)``.

Plotting (:func:`plot_accuracy_vs_bits`, matplotlib Agg) only reads the result dicts; it
lives in :mod:`quantization.accuracy_plot`, the comparison rows, the paired difference and
the text tables in :mod:`quantization.comparison`; both are re-exported here.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from quantization.accuracy_plot import PLOT_DPI, PLOT_SIZE_INCHES, plot_accuracy_vs_bits
from quantization.comparison import (
    comparison_rows,
    format_comparison,
    format_layer_table,
    format_saturation,
    paired_delta,
)
from quantization.emulator import evaluate
from quantization.network import QNetwork
from quantization.ptq import PTQConfig, QuantizationError, quantize_model
from stllr.errors import UserError
from stllr.progress import bar as progress_bar
from stllr.trainer import batches, run_epoch

__all__ = [
    "MAX_BITS", "MIN_BITS", "PLOT_DPI", "PLOT_SIZE_INCHES", "Log", "QuantResult",
    "calibration_batches", "compare_checkpoint", "comparison_rows", "emulator_accuracy",
    "float_accuracy", "float_control", "format_comparison", "format_layer_table",
    "format_saturation", "input_format_dict", "layer_rows", "method_results",
    "paired_delta", "plot_accuracy_vs_bits", "qat_and_evaluate", "qat_module",
    "quantize_and_evaluate", "quantize_model", "saturation_summary",
]  # fmt: skip

#: Weight widths the CLI accepts: Loihi's synapses hold ≤ 8 bits; up to 16 for studies
#: (beyond ~12 bits the 24-bit membrane starts to saturate, which the report shows).
MIN_BITS, MAX_BITS = 2, 16

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class QuantResult:
    """One quantized network on the test split (``qnet`` is not serialised)."""

    method: str  # "ptq" | "qat"
    bits: int
    percentile: float
    accuracy: float | None = None  # % (integer emulator); None when quantization failed
    layers: list[dict] = field(default_factory=list)
    saturation: dict = field(default_factory=dict)
    input_format: dict | None = None
    error: str | None = None
    qat: dict | None = None  # QAT only: epochs, history, fake_quant_accuracy
    qnet: QNetwork | None = None

    def as_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k not in ("qnet", "qat")}
        if self.method == "qat":
            d["qat"] = self.qat
        return d


# --- data --------------------------------------------------------------------------------


def calibration_batches(train, n_batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The frames ``[T, B, ...]`` of the first ``n_batches`` shuffled training batches."""
    if n_batches < 1:
        raise UserError(f"calibration needs at least 1 batch, got {n_batches}")
    gen = torch.Generator().manual_seed(seed)
    return [x for x, _, _ in itertools.islice(batches(train, batch_size, gen), n_batches)]


def float_accuracy(model, test, batch_size: int, progress: bool = False) -> float:
    """Test accuracy (%) of the float model (summed logits, as ``stllr eval``)."""
    _, acc = run_epoch(model, test, batch_size, progress=progress, desc="float")
    return acc


def emulator_accuracy(
    qnet: QNetwork,
    test,
    batch_size: int,
    progress: bool = False,
    desc: str = "emulator",
    device: str | torch.device = "cpu",
) -> tuple[float, dict]:
    """Test accuracy (%) of the integer emulator on ``device`` and its saturation counts
    (``as_dict``); the emulator gives the same integers on every device."""
    n = -(-len(test) // batch_size)
    with progress_bar(show=progress, total=n, desc=desc, leave=False, unit="batch") as bar:
        acc, counter = evaluate(qnet, batches(test, batch_size), device, progress=bar.update)
    return 100.0 * acc, counter.as_dict()


# --- per-layer and saturation statistics ---------------------------------------------------


def layer_rows(reports) -> list[dict]:
    """``LayerReport``s as dicts plus ``clipped_fraction`` and ``rel_rms_error``."""
    rows = []
    for r in reports:
        d = r.as_dict()
        d["clipped_fraction"] = d["clipped"] / d["total"] if d["total"] else 0.0
        d["rel_rms_error"] = d["rms_error"] / d["rms_weight"] if d["rms_weight"] > 0 else None
        rows.append(d)
    return rows


def saturation_summary(per_quantity: dict) -> dict:
    """Totals over the emulator's counters and the quantity that overflowed most often."""
    over = sum(int(v["overflowed"]) for v in per_quantity.values())
    total = sum(int(v["total"]) for v in per_quantity.values())
    worst = max(per_quantity, key=lambda k: per_quantity[k]["fraction"], default=None)
    max_fraction = per_quantity[worst]["fraction"] if worst is not None else 0.0
    return {
        "quantities": per_quantity,
        "overflowed": over,
        "total": total,
        "max_fraction": max_fraction,
        "worst": worst if max_fraction > 0 else None,
    }


# --- quantize and evaluate -----------------------------------------------------------------


def quantize_and_evaluate(
    model,
    calibration: list[torch.Tensor],
    test,
    batch_size: int,
    bits: int,
    percentile: float = 100.0,
    method: str = "ptq",
    progress: bool = False,
    log: Log = _quiet,
    scale: str | None = None,
    device: str | torch.device = "cpu",
) -> QuantResult:
    """PTQ of ``model`` at ``bits`` and its emulator accuracy; a QuantizationError is kept.

    ``scale``: :class:`PTQConfig`'s (default ``"pow2"``; QAT models always use ``"pow2"``,
    the format they train through). ``device``: where the emulator runs."""
    res = QuantResult(method, bits, percentile)
    scale = "pow2" if method == "qat" else (scale or "pow2")
    try:
        qnet, reports = quantize_model(
            model,
            calibration,
            PTQConfig(weight_bits=bits, percentile=percentile, scale=scale),
            log=log,
        )
    except QuantizationError as exc:
        res.error = str(exc)
        log(f"{method.upper()} {bits}-bit: not representable: {exc}")
        return res
    res.qnet = qnet
    res.input_format = input_format_dict(qnet)
    res.layers = layer_rows(reports)
    res.accuracy, sat = emulator_accuracy(
        qnet, test, batch_size, progress, f"{method.upper()} {bits}-bit emulator", device
    )
    res.saturation = saturation_summary(sat)
    return res


def input_format_dict(qnet: QNetwork) -> dict:
    f = qnet.input_format
    return {"exp": f.exp, "lo": f.lo, "hi": f.hi, "scale": f.scale()}


def qat_module():
    """:mod:`quantization.qat`, or a clear error when it is not installed."""
    try:
        from quantization import qat
    except ModuleNotFoundError as exc:
        if exc.name not in ("quantization.qat",):
            raise
        raise UserError(
            "QAT is not available (quantization/qat.py is missing); use --qat-epochs 0"
        ) from None
    return qat


def qat_and_evaluate(
    model,
    mode: str,
    data,
    cfg,
    calibration: list[torch.Tensor],
    bits: int,
    percentile: float,
    epochs: int,
    progress: bool = False,
    log: Log = _quiet,
    device: str | torch.device = "cpu",
) -> QuantResult:
    """Fine-tune a *copy* of ``model`` with QAT at ``bits``, then PTQ + emulator accuracy
    (the emulator on ``device``)."""
    qat = qat_module()
    tuned = copy.deepcopy(model)
    history = qat.qat_finetune(tuned, mode, data.train, cfg, epochs, bits, percentile, log=log)
    with qat.enable_qat(tuned, bits, percentile):
        fake = float_accuracy(tuned, data.test, cfg.val_batch_size, progress)
    res = quantize_and_evaluate(
        tuned,
        calibration,
        data.test,
        cfg.val_batch_size,
        bits,
        percentile,
        "qat",
        progress,
        log,
        device=device,
    )
    res.qat = {
        "epochs": epochs,
        "history": [dataclasses.asdict(h) for h in history],
        "fake_quant_accuracy": fake,
    }
    return res


def float_control(
    model, mode: str, data, cfg, epochs: int, progress: bool = False, log: Log = _quiet
) -> dict:
    """The like-for-like float reference of a QAT result: a *copy* of ``model`` fine-tuned
    ``epochs`` epochs by :func:`quantization.qat.float_finetune` (QAT's loop, no quantizer),
    scored on the test split like the float model.

    Returns ``{"epochs", "accuracy" (%), "history": [QATEpoch dicts]}``.
    """
    qat = qat_module()
    tuned = copy.deepcopy(model)
    history = qat.float_finetune(tuned, mode, data.train, cfg, epochs, log=log)
    return {
        "epochs": epochs,
        "accuracy": float_accuracy(tuned, data.test, cfg.val_batch_size, progress),
        "history": [dataclasses.asdict(h) for h in history],
    }


def method_results(
    float_acc: float, ptq: QuantResult, qat: QuantResult | None, control: dict | None
) -> dict:
    """The PTQ / QAT / float-control part of a quantization JSON: each result's dict with
    ``delta_vs_float`` and, for QAT, ``delta_vs_control``; ``qat`` and ``float_control``
    are ``None`` without QAT."""
    out = {
        "ptq": {**ptq.as_dict(), "delta_vs_float": ptq.accuracy - float_acc},
        "qat": None,
        "float_control": None,
    }
    if qat is not None:
        out["qat"] = {
            **qat.as_dict(),
            "delta_vs_float": qat.accuracy - float_acc,
            "delta_vs_control": qat.accuracy - control["accuracy"],
        }
        out["float_control"] = control
    return out


def compare_checkpoint(
    model,
    mode: str,
    data,
    cfg,
    bits: list[int],
    percentile: float = 100.0,
    calib_batches: int = 4,
    qat_epochs: int = 0,
    progress: bool = False,
    log: Log = _quiet,
    scale: str = "pow2",
    device: str | torch.device = "cpu",
) -> dict:
    """Float accuracy, PTQ per bit width and (``qat_epochs > 0``) QAT per bit width.

    ``scale`` is the PTQ rows' :class:`PTQConfig` scale (QAT rows always use ``"pow2"``).
    ``device``: where the integer emulator runs.

    Returns ``{"float_accuracy", "test_samples", "ptq": [QuantResult dicts], "qat": [...],
    "float_control"}`` (QAT list empty and ``float_control`` ``None`` without fine-tuning;
    else :func:`float_control`'s dict).
    """
    if qat_epochs > 0:
        qat_module()  # fail before any work when QAT is missing
    calib = calibration_batches(data.train, calib_batches, cfg.batch_size, cfg.seed)
    f_acc = float_accuracy(model, data.test, cfg.val_batch_size, progress)
    out = {
        "float_accuracy": f_acc,
        "test_samples": len(data.test),
        "ptq": [],
        "qat": [],
        "float_control": None,
    }
    for b in bits:
        r = quantize_and_evaluate(
            model,
            calib,
            data.test,
            cfg.val_batch_size,
            b,
            percentile,
            "ptq",
            progress,
            log,
            scale,
            device,
        )
        log(_result_line(r, f_acc))
        out["ptq"].append(r.as_dict())
    if qat_epochs > 0:
        out["float_control"] = control = float_control(
            model, mode, data, cfg, qat_epochs, progress, log
        )
        log(_control_line(control, f_acc))
    for b in bits if qat_epochs > 0 else ():
        r = qat_and_evaluate(
            model, mode, data, cfg, calib, b, percentile, qat_epochs, progress, log, device
        )
        log(_result_line(r, f_acc, control["accuracy"]))
        out["qat"].append(r.as_dict())
    return out


def _result_line(r: QuantResult, float_acc: float, control_acc: float | None = None) -> str:
    if r.error is not None:
        return f"  {r.method.upper()} {r.bits:2d}-bit: failed ({r.error})"
    vs_control = "" if control_acc is None else f", {r.accuracy - control_acc:+.2f} vs control"
    return (
        f"  {r.method.upper()} {r.bits:2d}-bit: {r.accuracy:6.2f}% "
        f"({r.accuracy - float_acc:+.2f} pts vs float{vs_control})"
    )


def _control_line(control: dict, float_acc: float) -> str:
    return (
        f"  float fine-tuned {control['epochs']} epoch(s) like QAT (control): "
        f"{control['accuracy']:6.2f}% ({control['accuracy'] - float_acc:+.2f} pts vs float)"
    )
