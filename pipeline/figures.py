"""The report's figures (matplotlib, Agg). Each function only reads results and writes one
PNG atomically, ``FIG_DPI`` dots per inch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from stllr.run import atomic_write_bytes

FIG_DPI = 100


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (the report's figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` as a PNG at ``FIG_DPI`` to ``path`` (atomically) and close it."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def accuracy_overview(groups: list[tuple[str, dict[str, float | None]]], path: Path) -> None:
    """Grouped bars: one group per condition, one bar per implementation (float,
    fixed-point emulator, Lava fixed_pt, Lava floating_pt); missing values are left out.
    Values in %."""
    plt = pyplot()
    labels = {
        "float": "float (torch)",
        "emulator": "fixed point (emulator)",
        "lava": "Lava fixed_pt",
        "lava_float": "Lava floating_pt",
    }
    colors = {"float": "#4c72b0", "emulator": "#dd8452", "lava": "#55a868", "lava_float": "#8172b2"}
    # only the implementations some group has a value for get a slot
    impls = [k for k in labels if any(vals.get(k) is not None for _, vals in groups)]
    fig, ax = plt.subplots(figsize=(9.0, 4.0), layout="constrained")
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, (_, vals) in enumerate(groups):
            v = vals.get(impl)
            if v is not None:
                xs.append(i + (j - (len(impls) - 1) / 2) * width)
                ys.append(v)
        bars = ax.bar(xs, ys, width, label=labels[impl], color=colors[impl])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title("float vs fixed point vs Lava")
    save_figure(fig, path)


def memory_vs_t(points: list[dict], source: str, path: Path) -> None:
    """Training memory (MiB held for backward) vs T, S-TLLR vs BPTT, per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.0), layout="constrained")
    models = sorted({p["model"] for p in points})
    styles = {"stllr": ("o-", "S-TLLR"), "bptt": ("s--", "BPTT")}
    for m, color in zip(models, ["#4c72b0", "#c44e52", "#55a868", "#8172b2"], strict=False):
        for mode, (style, name) in styles.items():
            pts = sorted(
                (p["T"], p["mib"]) for p in points if p["model"] == m and p["mode"] == mode
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, color=color, label=f"{m}: {name}")
    steps = sorted({p["T"] for p in points})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.minorticks_off()
    ax.set_xlabel("time steps T")
    ax.set_ylabel("memory held for backward (MiB)")
    ax.set_title(f"training memory vs T ({source})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(fontsize="x-small", loc="outside right upper")
    save_figure(fig, path)


def spike_raster(sample: dict, spiking: list[str], out_name: str, path: Path) -> None:
    """Input events, hidden spikes (as Lava computed them) and the logits of one sample."""
    plt = pyplot()
    rows = 2 + len(spiking)
    fig, axes = plt.subplots(
        rows, 1, figsize=(8.0, 2.0 + 1.8 * rows), sharex=True, layout="constrained"
    )
    x = np.asarray(sample["input"])
    t, c = np.nonzero(x.reshape(x.shape[0], -1))
    axes[0].scatter(t, c, s=1, c="k", marker="|", linewidths=0.5)
    axes[0].set_ylabel("input channel")
    axes[0].set_title(
        f"test sample {int(sample['index'])} (label {int(sample['label'])}, "
        f"{int(sample['length'])} steps): input events",
        fontsize=9,
    )
    for ax, name in zip(axes[1:-1], spiking, strict=True):
        s = np.asarray(sample[f"out_{name}"])
        t, c = np.nonzero(s.reshape(s.shape[0], -1))
        ax.scatter(t, c, s=1, c="#c44e52", marker="|", linewidths=0.5)
        ax.set_ylabel(f"{name} neuron")
        ax.set_title(f"{name}: {int(s.sum())} spikes (Lava fixed_pt)", fontsize=9)
    logits = np.asarray(sample[f"out_{out_name}"], dtype=np.float64)
    axes[-1].plot(logits, linewidth=0.8)
    axes[-1].plot(logits[:, int(sample["label"])], color="k", linewidth=2, label="true class")
    axes[-1].set_ylabel("logit (integer)")
    axes[-1].set_xlabel("time step")
    axes[-1].legend(fontsize="small", loc="upper left")
    save_figure(fig, path)


def weight_histograms(weights: dict, path: Path) -> None:
    """Per plastic weight matrix: float Ŵ vs fixed point vs after on-device learning
    (left), and the on-device change in weight LSBs (right)."""
    plt = pyplot()
    keys = [(layer, k) for layer, d in weights["fixed_before"].items() for k in d]
    fig, axes = plt.subplots(
        len(keys), 2, figsize=(9.0, 2.8 * len(keys)), squeeze=False, layout="constrained"
    )
    for (layer, k), (ax, ax_d) in zip(keys, axes, strict=True):
        f = weights["float_before"][layer][k].flatten().numpy()
        q = weights["fixed_before"][layer][k].flatten().numpy()
        d = weights["device_after"][layer][k].flatten().numpy()
        lo, hi = float(min(f.min(), q.min(), d.min())), float(max(f.max(), q.max(), d.max()))
        bins = np.linspace(lo, hi, 80)
        ax.hist(f, bins, histtype="step", linewidth=1.5, label="float Ŵ (trained)")
        ax.hist(q, bins, histtype="step", linewidth=1.5, label="fixed point (deployed)")
        ax.hist(
            d,
            bins,
            histtype="step",
            linewidth=1.5,
            linestyle="--",
            label="after on-device learning",
        )
        ax.set_yscale("log")
        ax.set_title(f"{layer}.{k}: {f.size} weights", fontsize=9)
        ax.set_xlabel("weight (float units)")
        ax.legend(fontsize="x-small")
        nz = q[q != 0]
        lsb = float(np.min(np.abs(nz))) if nz.size else 1.0
        lsb = 2.0 ** np.floor(np.log2(lsb))
        delta = np.round((d - q) / lsb).astype(np.int64)
        lim = max(int(np.abs(delta).max()), 1)
        ax_d.hist(delta, np.arange(-lim - 0.5, lim + 1.5), color="#55a868")
        ax_d.set_yscale("log")
        ax_d.set_title(
            f"on-device change: {int((delta != 0).sum())} of {delta.size} weights moved", fontsize=9
        )
        ax_d.set_xlabel("change (weight LSBs)")
    save_figure(fig, path)


def adaptation_curves(result: dict, path: Path) -> None:
    """Accuracy on the shifted held-out samples (solid) and on the original condition
    (dashed) vs adaptation samples, emulator and float."""
    plt = pyplot()
    c = result["curves"]
    acc = result["accuracy"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    lines = [("emulator", "fixed point on-device (emulator)", "#dd8452", "s")]
    if c.get("float") is not None:
        lines.insert(0, ("float", "float S-TLLR", "#4c72b0", "o"))
    for key, label, color, marker in lines:
        ax.plot(c["samples"], c[key], marker + "-", color=color, label=f"{label}, shifted")
        orig = c.get(f"{key}_original")
        if orig is not None:
            ax.plot(
                c["samples"], orig, marker + "--", color=color, alpha=0.7,
                markerfacecolor="none", label=f"{label}, original condition",
            )  # fmt: skip
        else:  # results written before the original-condition curve existed
            ax.axhline(acc[key]["clean_before"], color=color, linestyle="--", linewidth=1)
    seeds = result.get("seeds") or {}
    if len(seeds.get("seeds", [])) > 1:  # the emulator's spread over seeds (min–max band)
        x = c["samples"]
        for key, style in (("curves_shifted", "-"), ("curves_original", "--")):
            curves = np.asarray(seeds[key], dtype=float)
            ax.fill_between(x, curves.min(0), curves.max(0), color="#dd8452", alpha=0.15)
            ax.plot(x, curves.mean(0), style, color="#8c3b0c", linewidth=1.2)
        ax.plot([], [], "-", color="#8c3b0c", label=f"emulator, mean (band: min–max) of "
                f"{len(seeds['seeds'])} seeds")  # fmt: skip
    if acc.get("lava"):
        lv = result["lava"]
        ax.plot(
            [0, c["samples"][-1]],
            [acc["lava"]["before"], acc["lava"]["after"]],
            "D:",
            color="#55a868",
            markersize=8,
            label=f"Lava fixed_pt, shifted ({lv['eval_samples']} samples)",
        )
    ax.set_xlabel("labelled adaptation samples seen (one at a time)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(result["description"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    save_figure(fig, path)


def cost_per_layer(cost: dict, path: Path) -> None:
    """Effective vs dense synaptic operations per sample, per connection (log scale)."""
    plt = pyplot()
    rows = cost["connections"]
    fig, ax = plt.subplots(figsize=(7.0, 3.5), layout="constrained")
    names = [f"{r['source']} → {r['layer']}" for r in rows]
    y = np.arange(len(rows))
    ax.barh(y + 0.2, [r["dense_per_sample"] for r in rows], 0.4, label="dense", color="0.7")
    ax.barh(
        y - 0.2,
        [r["effective_per_sample"] for r in rows],
        0.4,
        label="effective (ACs / MACs)",
        color="#4c72b0",
    )
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("synaptic operations per sample")
    ax.legend(fontsize="small")
    ax.grid(axis="x", alpha=0.3, which="both")
    save_figure(fig, path)


def load_json(path: Path):
    return json.loads(Path(path).read_text())
