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

Plotting (:func:`plot_accuracy_vs_bits`, matplotlib Agg) only reads the result dicts.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quantization.emulator import evaluate
from quantization.network import QNetwork
from quantization.ptq import PTQConfig, QuantizationError, quantize_model
from stllr.errors import UserError
from stllr.progress import bar as progress_bar
from stllr.trainer import batches, run_epoch

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
    qnet: QNetwork, test, batch_size: int, progress: bool = False, desc: str = "emulator"
) -> tuple[float, dict]:
    """Test accuracy (%) of the integer emulator and its saturation counts (``as_dict``)."""
    n = -(-len(test) // batch_size)
    with progress_bar(show=progress, total=n, desc=desc, leave=False, unit="batch") as bar:
        acc, counter = evaluate(qnet, batches(test, batch_size), progress=bar.update)
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
) -> QuantResult:
    """PTQ of ``model`` at ``bits`` and its emulator accuracy; a QuantizationError is kept.

    ``scale``: :class:`PTQConfig`'s (default ``"pow2"``; QAT models always use ``"pow2"``,
    the format they train through)."""
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
        qnet, test, batch_size, progress, desc=f"{method.upper()} {bits}-bit emulator"
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
) -> QuantResult:
    """Fine-tune a *copy* of ``model`` with QAT at ``bits``, then PTQ + emulator accuracy."""
    qat = qat_module()
    tuned = copy.deepcopy(model)
    history = qat.qat_finetune(tuned, mode, data.train, cfg, epochs, bits, percentile, log=log)
    with qat.enable_qat(tuned, bits, percentile):
        fake = float_accuracy(tuned, data.test, cfg.val_batch_size, progress)
    res = quantize_and_evaluate(
        tuned, calibration, data.test, cfg.val_batch_size, bits, percentile, "qat", progress, log
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
) -> dict:
    """Float accuracy, PTQ per bit width and (``qat_epochs > 0``) QAT per bit width.

    ``scale`` is the PTQ rows' :class:`PTQConfig` scale (QAT rows always use ``"pow2"``).

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
            model, mode, data, cfg, calib, b, percentile, qat_epochs, progress, log
        )
        log(_result_line(r, f_acc, control["accuracy"]))
        out["qat"].append(r.as_dict())
    return out


def paired_delta(y, ref, new) -> dict:
    """Accuracy difference of two classifiers scored on the same samples.

    ``y``, ``ref``, ``new``: labels and the two models' predictions, shape ``[n]``. Per
    sample ``d = 1[new right] − 1[ref right]`` ∈ {−1, 0, 1}; returns

    * ``delta`` = 100·mean(d), percentage points (= accuracy(new) − accuracy(ref));
    * ``standard_error`` = 100·sd(d)/√n (sample sd, n − 1), the paired standard error:
      only the samples the two disagree on contribute, so it is far smaller than the
      error of two independent accuracies (NaN for n < 2);
    * ``ref_only`` / ``new_only``: samples only ``ref`` / only ``new`` gets right.
    """
    d = (new == y).double() - (ref == y).double()
    n = int(d.numel())
    se = 100.0 * float(d.std(unbiased=True)) / n**0.5 if n > 1 else float("nan")
    return {
        "delta": 100.0 * float(d.mean()),
        "standard_error": se,
        "ref_only": int((d < 0).sum()),
        "new_only": int((d > 0).sum()),
    }


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


def comparison_rows(entries: list[dict]) -> list[dict]:
    """Flat rows task × method × bits → accuracy and ``delta_vs_float`` (percentage points).

    ``entries``: one dict per checkpoint with ``label``, ``task``, ``checkpoint`` and the
    keys of :func:`compare_checkpoint`. With QAT, a ``float_control`` row (the float
    model fine-tuned as long as QAT, ``bits`` ``None``) and, on QAT rows,
    ``delta_vs_control`` (QAT − control); ``None`` elsewhere.
    """
    rows = []
    for e in entries:
        base = {"label": e["label"], "task": e["task"], "checkpoint": e["checkpoint"]}
        f = e["float_accuracy"]
        control = e.get("float_control")
        c = None if control is None else control["accuracy"]
        rows.append(
            {
                **base,
                "method": "float",
                "bits": None,
                "accuracy": f,
                "delta_vs_float": 0.0,
                "delta_vs_control": None,
                "error": None,
            }
        )
        if control is not None:
            rows.append(
                {
                    **base,
                    "method": "float_control",
                    "bits": None,
                    "accuracy": c,
                    "delta_vs_float": c - f,
                    "delta_vs_control": None,
                    "error": None,
                }
            )
        for method in ("ptq", "qat"):
            for r in e.get(method, []):
                acc = r["accuracy"]
                vs_c = None if acc is None or c is None or method != "qat" else acc - c
                rows.append(
                    {
                        **base,
                        "method": method,
                        "bits": r["bits"],
                        "accuracy": acc,
                        "delta_vs_float": None if acc is None else acc - f,
                        "delta_vs_control": vs_c,
                        "error": r["error"],
                    }
                )
    return rows


# --- text --------------------------------------------------------------------------------


def format_comparison(entries: list[dict], bits: list[int]) -> str:
    """Accuracy table: one line per task and method, one column per bit width."""
    width = max([len("task")] + [len(e["label"]) for e in entries])
    head = f"{'task':<{width}}  {'float':>6}  {'method':<6}" + "".join(
        f"{f'{b}-bit':>8}" for b in bits
    )
    lines = [head, "-" * len(head)]
    for e in entries:
        first = True
        for method in ("ptq", "qat"):
            results = {r["bits"]: r for r in e.get(method, [])}
            if not results:
                continue
            cells = ""
            for b in bits:
                r = results.get(b)
                cell = "—" if r is None else "fail" if r["error"] else f"{r['accuracy']:.2f}"
                cells += f"{cell:>8}"
            label = e["label"] if first else ""
            f_cell = f"{e['float_accuracy']:6.2f}" if first else " " * 6
            lines.append(f"{label:<{width}}  {f_cell}  {method.upper():<6}{cells}")
            first = False
        control = e.get("float_control")
        if control is not None:
            lines.append(
                f"{'':<{width}}  {control['accuracy']:6.2f}  float fine-tuned "
                f"{control['epochs']} epoch(s) like QAT (the control of the QAT row)"
            )
    return "\n".join(lines)


def format_layer_table(layers: list[dict]) -> str:
    """Per-layer table: exponent, range, clipped fraction, relative RMS error, vth, dv."""
    head = (
        f"{'layer':<12} {'exp':>4} {'range':>9} {'clipped':>16} {'rel RMS err':>12} "
        f"{'vth':>7} {'dv':>5}"
    )
    lines = [head]
    for d in layers:
        clipped = f"{d['clipped']}/{d['total']} ({100 * d['clipped_fraction']:.1f}%)"
        rel = "—" if d["rel_rms_error"] is None else f"{100 * d['rel_rms_error']:.2f}%"
        vth = "—" if d["vth"] is None else str(d["vth"])
        dv = "—" if d["dv"] is None else str(d["dv"])
        lines.append(
            f"{d['name']:<12} {d['weight_exp']:>4} {d['range_abs']:>9.4g} {clipped:>16} "
            f"{rel:>12} {vth:>7} {dv:>5}"
        )
    return "\n".join(lines)


def format_saturation(sat: dict) -> str:
    """One line per quantity that overflowed (or a line saying nothing did)."""
    if not sat or sat["overflowed"] == 0:
        return "saturation: none (no value reached its format's limit)"
    lines = ["saturation (values at their format's limit):"]
    for name, v in sorted(sat["quantities"].items()):
        if v["overflowed"]:
            lines.append(
                f"  {name:<24} {v['overflowed']}/{v['total']} ({100 * v['fraction']:.3f}%)"
            )
    return "\n".join(lines)


# --- plot --------------------------------------------------------------------------------

PLOT_SIZE_INCHES = (8.0, 4.0)
PLOT_DPI = 100  # → an 800 × 400 pixel PNG


def plot_accuracy_vs_bits(entries: list[dict], path: Path, title: str = "") -> None:
    """Accuracy vs weight bits, one colour per task: PTQ as a solid line with circles,
    QAT as a dotted line with squares (where present), the float accuracy as a dashed
    horizontal line and, with QAT, its float control (fine-tuned as long) dash-dotted.
    Widths that failed to quantize are left out of the lines. Legends (tasks; methods)
    sit right of the axes. Written atomically, ``PLOT_SIZE_INCHES`` at ``PLOT_DPI``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from stllr.run import atomic_write_bytes

    fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES, layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"float": dict(linestyle="--", marker=""), "ptq": dict(linestyle="-", marker="o"),
              "qat": dict(linestyle=":", marker="s"),
              "float_control": dict(linestyle="-.", marker="")}  # fmt: skip
    all_bits: set[int] = set()
    used = {"float"}
    task_handles = []
    for i, e in enumerate(entries):
        c = colors[i % len(colors)]
        ax.axhline(e["float_accuracy"], color=c, linewidth=1, **styles["float"])
        if e.get("float_control") is not None:
            ax.axhline(e["float_control"]["accuracy"], color=c, linewidth=1,
                       **styles["float_control"])  # fmt: skip
            used.add("float_control")
        for method in ("ptq", "qat"):
            pts = [(r["bits"], r["accuracy"]) for r in e.get(method, [])]
            all_bits.update(b for b, _ in pts)
            pts = [(b, a) for b, a in pts if a is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=c, **styles[method])
                used.add(method)
        task_handles.append(Line2D([], [], color=c, linewidth=3, label=e["label"]))
    if all_bits:
        ax.set_xticks(sorted(all_bits))
    ax.set_xlabel("weight bits")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy vs weight bits (integer emulator)")
    ax.grid(alpha=0.3)
    names = {"float": "float", "ptq": "PTQ", "qat": "QAT", "float_control": "float, fine-tuned"}
    method_handles = [
        Line2D([], [], color="0.3", label=names[m], **styles[m])
        for m in ("float", "float_control", "ptq", "qat")
        if m in used
    ]
    fig.legend(handles=task_handles, fontsize="small", loc="outside right upper")
    fig.legend(handles=method_handles, fontsize="small", loc="outside right lower")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
