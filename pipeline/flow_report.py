"""Stage ``report`` of the flow pipeline: the document of :mod:`pipeline.document`, rendered
as ``report/report.html`` (figures embedded) and ``report/report.md``, from what the
earlier stages wrote (their markers and JSON files; nothing is recomputed).

:func:`build` is the outline :func:`pipeline.report.run` renders.

Sections: the stages' one-line results; training (summed AEE per epoch); summed AEE of
float vs 8-bit emulator vs Lava (the whole test split, and the windows Lava ran) with the
bit sweep; the flow pictures (colour wheel, :func:`stllr.flow.metrics.flow_to_rgb`: hue =
direction, brightness = magnitude, the gt's largest magnitude as full value, masked to the
evaluation pixels); the adaptation (summed AEE and paired per-window change on the
shifted and the original condition, and Lava's replay).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipeline import artefacts as A
from pipeline.document import Figure, Table
from pipeline.figures import pyplot, save_figure
from pipeline.flow_deploy import FLOWS
from pipeline.runner import Context, read_marker

COLUMNS = (("float", "float"), ("int", "8-bit emulator"), ("lava", "Lava fixed_pt"), ("gt", "gt"))


def colour_wheel(n: int = 65) -> np.ndarray:
    """The key of the flow pictures ``[n, n, 3]`` uint8: at each point of the unit disc the
    colour of the flow (x, y) pointing there (y down, as in the images), full brightness
    at ‖f‖ = 1; black outside."""
    from stllr.flow.metrics import flow_to_rgb

    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    return flow_to_rgb(np.stack([x, y]) * (np.hypot(x, y) <= 1), 1.0)


def flow_pictures(flows: dict, path: Path) -> None:
    """One row per test sequence: float | 8-bit | Lava (when run) | gt on the colour wheel,
    and the wheel itself (the key) beside the first row."""
    from stllr.flow.metrics import flow_to_rgb

    names = sorted({k.split("__")[0] for k in flows})
    cols = [(k, t) for k, t in COLUMNS if any(f"{n}__{k}" in flows for n in names)]
    plt = pyplot()
    fig, axes = plt.subplots(len(names), len(cols) + 1,
                             figsize=(2.2 * (len(cols) + 1), 2.2 * len(names)),
                             squeeze=False)  # fmt: skip
    for r, name in enumerate(names):
        mask = flows[f"{name}__mask"]
        top = float(np.hypot(*flows[f"{name}__gt"]).max()) or 1.0
        for c, (key, title) in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            if f"{name}__{key}" in flows:
                ax.imshow(flow_to_rgb(flows[f"{name}__{key}"] * mask, top))
            ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=7)
        axes[r, -1].axis("off")
    axes[0, -1].imshow(colour_wheel())
    axes[0, -1].set_title("key: flow direction\n(+x right, +y down)", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def aee_curve(history: list[dict], sweep: dict, path: Path) -> None:
    """Left: summed AEE per training epoch; right: summed AEE vs weight bits (PTQ)."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot([h["epoch"] for h in history], [h["sum_aee"] for h in history], "o-")
    a.set(xlabel="epoch", ylabel="summed AEE (px)", title="float training")
    bits = [int(k) for k in sweep["sum_aee"]]
    b.plot(bits, list(sweep["sum_aee"].values()), "s-", label="integer emulator")
    b.axhline(sweep["float_sum_aee"], color="k", ls="--", label="float")
    b.set(xlabel="weight bits", ylabel="summed AEE (px)", title="PTQ bit sweep")
    b.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _read(run_dir: Path, rel: str):
    return json.loads((Path(run_dir) / rel).read_text())


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def build(ctx: Context, fig_dir: Path) -> tuple[str, list]:
    """The title and blocks of the flow report (module doc)."""
    run_dir = ctx.run_dir
    tr = read_marker(run_dir, "train")["summary"]
    quant, sweep = _read(run_dir, A.QUANT_JSON), _read(run_dir, A.SWEEP_JSON)
    lava, adapt = _read(run_dir, A.LAVA_JSON), _read(run_dir, A.ADAPT_JSON)
    bits = quant["weight_bits"]
    s = quant["sum_aee"]
    blocks: list = [("p", f"Run folder {run_dir} · written {time.strftime('%Y-%m-%d %H:%M')} · "
                          f"data: {tr['data']}")]  # fmt: skip
    rows = []
    for name in ("train", "quantize", "lava", "adaptation"):
        m = read_marker(run_dir, name)
        if m is not None:
            rows.append([name, m["line"], f"{m['seconds']:.0f} s"])
    blocks += [("h2", "Stages"), Table(["stage", "result", "time"], rows)]
    aee_curve(tr["history"], sweep, fig_dir / "aee.png")
    blocks += [("h2", "Summed AEE: float vs 8-bit vs Lava"),
               ("p", "AEE per test sequence (px, docs/flow.md §3) and their sum; lower is "
                     "better. Zero flow is the score of predicting no motion.")]  # fmt: skip
    seqs = list(quant["sequence_aee"]["float"])
    header = ["model", "windows", *seqs, "sum"]
    nwin = sum(len(v) for v in quant["window_aee"]["float"].values())
    rows = [[label, str(nwin), *[_f(quant["sequence_aee"][k][q]) for q in seqs], _f(s[k])]
            for k, label in (("float", "float"), (f"int{bits}", f"{bits}-bit emulator"),
                             ("zero", "zero flow"))]  # fmt: skip
    if lava.get("enabled"):
        from pipeline.flow_deploy import summed

        for k, label in (("float", "float"), ("int", f"{bits}-bit emulator"),
                         ("lava", "Lava fixed_pt")):  # fmt: skip
            seq = summed(lava["window_aee"][k])[1]
            rows.append([f"{label}, Lava's windows", str(lava["windows"]),
                         *[_f(seq[q]) for q in seqs], _f(lava["sum_aee"][k])])  # fmt: skip
    blocks.append(Table(header, rows))
    if lava.get("enabled"):
        blocks.append(("p", f"Lava fixed_pt ran the first {lava['windows_per_sequence']} "
                            f"windows of each sequence; {lava['fixed_differing_flows']} flow "
                            "values differ from the emulator's (bit-exact when 0). Lava "
                            "floating_pt (the float graph) vs torch, float64: max |Δ flow| "
                            f"{lava['float_max_abs_dflow']:.1e} px."))  # fmt: skip
    blocks.append(Figure("aee.png", "Summed AEE per training epoch, and vs PTQ weight bits."))
    flows = dict(np.load(Path(run_dir) / FLOWS))
    flow_pictures(flows, fig_dir / "flows.png")
    blocks += [("h2", "Flow pictures"),
               Figure("flows.png", "Last-step finest flow of one test window per sequence "
                      "(the last one Lava ran), colour wheel: hue = direction, brightness = "
                      "magnitude (full at the gt's largest), evaluation pixels only.")]  # fmt: skip
    blocks += _adaptation_blocks(adapt)
    return f"stllr pipeline report — {tr['task']} (FSFN)", blocks


def _adaptation_blocks(adapt: dict) -> list:
    setting = ", ".join(f"{k} {v:g}" for k, v in adapt["shift_setting"].items())
    blocks: list = [
        ("h2", "On-device adaptation of the flow head"),
        ("p", f"Shifted condition: {adapt['shift']} ({setting}), same scenes and motion. The "
              f"finest flow head learned on device from the 8-bit flow error at the last step "
              f"of {adapt['windows']} shifted training windows × {adapt['epochs']} "
              f"(lr {adapt['lr']:g}); {adapt['weights_moved']} of {adapt['of']} weights "
              "moved. Δ: mean over test windows of AEE after − before (px), ± its paired "
              "standard error; better/worse: windows whose AEE fell/rose."),
    ]  # fmt: skip
    rows = []
    for c, d in adapt["conditions"].items():
        p = d["paired"]
        change = f"{p['delta']:+.3f} ± {p['se']:.3f}"
        rows.append([c, _f(d["sum_aee_before"]), _f(d["sum_aee_after"]), str(p["n"]), change,
                     f"{p['better']}/{p['worse']}"])  # fmt: skip
    blocks.append(Table(["condition", "summed AEE before", "after", "windows", "Δ window AEE (px)",
                         "better/worse"], rows))  # fmt: skip
    rep = adapt.get("lava_replay")
    if rep is not None:
        blocks.append(("p", f"Lava fixed_pt replayed the first {rep['windows']} windows' learning "
                            f"with the same integer signals: {rep['differing_weights']} of "
                            f"{rep['of']} learned weights differ from the emulator's "
                            f"({rep['weights_moved']} moved)."))  # fmt: skip
    return blocks
