"""The accuracy-vs-bits figure of ``stllr compare`` and the pipeline report (matplotlib
Agg); it only reads the result dicts."""

from __future__ import annotations

import io
from pathlib import Path

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
