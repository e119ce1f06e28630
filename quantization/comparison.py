"""Quantized against float results: the paired accuracy difference of two classifiers,
the flat rows of ``stllr compare`` and the text tables ``stllr quantize`` / ``stllr
compare`` print (accuracy per bit width, layers, saturation). Accuracies in percent,
differences in percentage points.
"""

from __future__ import annotations


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
