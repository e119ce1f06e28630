"""Stage ``report``: one HTML file (figures embedded) and its markdown twin.

Reads only what the earlier stages wrote (their summaries and JSON files), draws the
figures (:mod:`pipeline.figures`) into ``report/figures/`` and renders one document
model — headings, paragraphs, tables, figures — twice: ``report/report.html``
(self-contained: the PNGs are embedded as data URIs) and ``report/report.md`` (linking
``figures/*.png``).
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import artefacts as A
from pipeline import figures
from pipeline.config import PipelineConfig, resolve_repo_path
from pipeline.runner import Context, StageOutput, read_marker
from stllr.run import atomic_write_bytes

NEUROBENCH = (
    "Yik et al., “NeuroBench: a framework for benchmarking neuromorphic computing algorithms "
    "and systems”, Nature Communications 16, 1545 (2025); definitions at "
    "neurobench.readthedocs.io (metrics)"
)


@dataclass(frozen=True)
class Figure:
    file: str  # in report/figures/
    caption: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


Block = tuple  # ("h2", text) | ("p", text) | Table | Figure


def _pct(v) -> str:
    return "—" if v is None else f"{v:.1f} %"


def _num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def _read(run_dir: Path, rel: str):
    p = run_dir / rel
    return json.loads(p.read_text()) if p.is_file() else None


def _lava_float_parity(lava: dict) -> list[str]:
    """The parity row of Lava floating_pt vs the torch float64 model ("—" when the run
    folder predates it)."""
    name = "Lava floating_pt vs torch float64: inference, clean test"
    lf = lava.get("lava_float")
    if lf is None:
        return [name, "—", "—", "not run (run folder made before this comparison)"]
    if lf.get("error"):
        return [name, "—", "not exported", lf["error"]]
    n = lava["samples"]
    same = round(lf["vs_float64_agreement"] * n)
    f32 = round(lf["vs_float_agreement"] * n)
    within = "within" if lf["within_tolerance"] else "BEYOND"
    return [
        name,
        f"{n} samples × {lava['steps']} steps",
        f"{same}/{n} predictions equal ({f32}/{n} with the float32 model)",
        f"max |Δ logit| {lf['max_abs_logit_diff']:.2g} ({within} {lf['tolerance']:g}; "
        f"logits up to {lf['max_abs_logit']:.3g}; float32 model: "
        f"{lf['max_abs_logit_diff_vs_float32']:.2g})",
    ]


@dataclass(frozen=True)
class _Artefacts:
    """What the earlier stages wrote, read once for all sections."""

    run_dir: Path
    cfg: PipelineConfig
    tr: dict  # the train stage's summary
    quant: dict
    sweep: dict
    cost: dict
    lava: dict | None
    adapt: dict | None
    lava_ran: bool  # the lava stage ran (not absent, not --skip-lava)


def _read_artefacts(ctx: Context) -> _Artefacts:
    """The summaries and JSON files of the earlier stages."""
    run_dir = ctx.run_dir
    tr = ctx.summary("train")
    quant = _read(run_dir, A.QUANT_JSON)
    sweep = _read(run_dir, A.SWEEP_JSON)
    cost = _read(run_dir, A.COST_JSON)
    lava = _read(run_dir, A.LAVA_JSON)
    adapt = _read(run_dir, A.ADAPT_JSON)
    lava_ran = lava is not None and not lava.get("skipped")
    return _Artefacts(run_dir, ctx.cfg, tr, quant, sweep, cost, lava, adapt, lava_ran)


def _header_section(art: _Artefacts) -> list:
    """The run folder, the time of writing and the data used."""
    return [
        (
            "p",
            f"Run folder {art.run_dir} · written {time.strftime('%Y-%m-%d %H:%M')} · "
            f"data: {art.tr['data']}",
        )
    ]


def _stages_section(art: _Artefacts) -> list:
    """The one-line result and the time of each stage."""
    rows = []
    for name in ("train", "quantize", "cost", "lava", "adaptation"):
        m = read_marker(art.run_dir, name)
        if m is not None:
            rows.append([name, m["line"], f"{m['seconds']:.0f} s"])
    return [("h2", "Stages"), Table(["stage", "result", "time"], rows)]


def _accuracy_section(art: _Artefacts, fig_dir: Path) -> list:
    """Accuracy of float, fixed point and Lava on every condition, as table and figure."""
    quant, lava, adapt, lava_ran = art.quant, art.lava, art.adapt, art.lava_ran
    blocks: list = []
    blocks.append(("h2", "Accuracy: float vs fixed point vs Lava"))
    acc_rows = [
        [
            f"test split ({quant['test_samples']} samples)",
            _pct(quant["float_accuracy"]),
            _pct(quant["ptq"]["accuracy"]) + f" ({quant['weight_bits']}-bit PTQ)",
            "—",
            "—",
        ],
    ]
    if quant.get("qat"):
        acc_rows.append(
            [
                f"test split, after {quant['qat_epochs']} QAT epoch(s)",
                _pct(quant["qat"]["qat"]["fake_quant_accuracy"]) + " (fake-quant)",
                _pct(quant["qat"]["accuracy"]),
                "—",
                "—",
            ]
        )
    if quant.get("float_control"):  # absent in run folders made before it existed
        acc_rows.append(
            [
                f"test split, float fine-tuned {quant['qat_epochs']} epoch(s) like QAT",
                _pct(quant["float_control"]["accuracy"]) + " (QAT's control)",
                "—",
                "—",
                "—",
            ]
        )
    groups = [
        (
            f"test split\n(n={quant['test_samples']})",
            {
                "float": quant["float_accuracy"],
                "emulator": (quant["qat"] or quant["ptq"])["accuracy"],
            },
        )
    ]
    if lava_ran:
        a = lava["accuracy"]  # "lava_float" is absent in run folders made before it existed
        acc_rows.append(
            [
                f"first {lava['samples']} test samples (Lava run)",
                _pct(a["float"]),
                _pct(a["emulator"]),
                _pct(a["lava"]),
                _pct(a.get("lava_float")),
            ]
        )
        groups.append((f"Lava subset\n(n={lava['samples']})", dict(a)))
    if adapt is not None:
        aa = adapt["accuracy"]
        n_eval = adapt["settings"]["eval_samples"]
        for when in ("before", "after"):
            lv = aa["lava"][when] if aa.get("lava") else None
            lava_n = f"; Lava n={adapt['lava']['eval_samples']}" if lv is not None else ""
            acc_rows.append(
                [
                    f"shifted condition, {when} adaptation (n={n_eval}{lava_n})",
                    _pct(aa["float"][when]),
                    _pct(aa["emulator"][when]),
                    _pct(lv),
                    "—",
                ]
            )
            groups.append(
                (
                    f"shifted, {when}\n(n={n_eval}{lava_n})",
                    {"float": aa["float"][when], "emulator": aa["emulator"][when], "lava": lv},
                )
            )
    blocks.append(
        Table(
            [
                "condition",
                "float (torch)",
                "fixed point (emulator)",
                "Lava fixed_pt",
                "Lava floating_pt",
            ],
            acc_rows,
        )
    )
    figures.accuracy_overview(groups, fig_dir / "accuracy_overview.png")
    blocks.append(
        Figure(
            "accuracy_overview.png",
            "Accuracy of the float model (torch), the deployed "
            "fixed-point network (integer emulator), that network in Lava fixed_pt and "
            "the float model in Lava floating_pt (Lava subset only), on the original test "
            "split and on the shifted condition before and after on-device "
            "adaptation.",
        )
    )
    return blocks


def _bits_section(art: _Artefacts, fig_dir: Path) -> list:
    """Accuracy vs weight width (PTQ sweep) and the deployed network per layer."""
    quant, sweep = art.quant, art.sweep
    blocks: list = []
    blocks.append(("h2", "Accuracy vs weight bits"))
    entry = sweep["entries"][0]
    blocks.append(
        Table(
            ["weight bits", *[str(b) for b in sweep["bits"]]],
            [["PTQ (emulator)", *[_pct(r["accuracy"]) for r in entry["ptq"]]]],
        )
    )
    from quantization.report import plot_accuracy_vs_bits

    plot_accuracy_vs_bits(sweep["entries"], fig_dir / "accuracy_vs_bits.png")
    blocks.append(
        Figure(
            "accuracy_vs_bits.png",
            f"Post-training quantization at each weight "
            f"width (one power-of-two exponent per layer), integer emulator, "
            f"{quant['test_samples']} test samples; dashed: float "
            f"({quant['float_accuracy']:.1f} %)" + _qat_caption(quant) + ".",
        )
    )
    layer_rows = [
        [
            d["name"],
            str(d["weight_exp"]),
            f"{d['range_abs']:.3g}",
            "—" if d["rel_rms_error"] is None else f"{100 * d['rel_rms_error']:.2f} %",
            "—" if d["vth"] is None else str(d["vth"]),
            "—" if d["dv"] is None else str(d["dv"]),
        ]
        for d in (quant["qat"] or quant["ptq"])["layers"]
    ]
    blocks.append(("p", f"Deployed {quant['weight_bits']}-bit network, per layer:"))
    blocks.append(
        Table(["layer", "exponent e", "range |W|", "RMS error / RMS W", "vth", "dv"], layer_rows)
    )
    return blocks


def _qat_caption(quant: dict) -> str:
    """The QAT point and its float control in the bits figure, when QAT ran."""
    if not quant.get("qat"):
        return ""
    text = f"; square: {quant['weight_bits']}-bit QAT ({quant['qat']['accuracy']:.1f} %)"
    if quant.get("float_control"):  # absent in run folders made before it existed
        c = quant["float_control"]
        text += f"; dash-dotted: float fine-tuned as long ({c['accuracy']:.1f} %)"
    return text


def _parity_section(art: _Artefacts) -> list:
    """How closely Lava, the emulator and the float model agree."""
    quant, lava, adapt, lava_ran = art.quant, art.lava, art.adapt, art.lava_ran
    blocks: list = []
    blocks.append(("h2", "Parity"))
    prow = []
    if lava_ran:
        n = lava["samples"]
        agree = round(lava["lava_vs_emulator_agreement"] * n)
        total_vals = "every node, every step"
        prow.append(
            [
                "Lava vs emulator: inference, clean test",
                f"{n} samples × {lava['steps']} steps",
                f"{agree}/{n} predictions equal",
                "bit-exact" if lava["bit_exact"] else f"differs: {lava['mismatched_values']}",
            ]
        )
        if adapt is not None and adapt.get("lava"):
            lv = adapt["lava"]
            s = adapt["settings"]
            prow.append(
                [
                    "Lava vs emulator: on-device learning (stream)",
                    f"{s['stream_samples']} samples × {s.get('stream_steps', s['steps'])} steps, "
                    "layers "
                    f"{', '.join(s['layers'])}",
                    "learned weights equal"
                    if lv["weights_equal"]
                    else f"weights differ: {lv['weights_mismatched']}",
                    f"outputs bit-exact ({total_vals})"
                    if lv["outputs_bit_exact"]
                    else f"outputs differ: {lv['outputs_mismatched']}",
                ]
            )
            for when in ("before", "after"):
                ag = lv["agreement"][when]
                prow.append(
                    [
                        f"Lava vs emulator: shifted test, {when} adaptation",
                        f"{lv['eval_samples']} samples",
                        f"{round(ag * lv['eval_samples'])}/{lv['eval_samples']} predictions equal",
                        "Lava-learned weights" if when == "after" else "deployed weights",
                    ]
                )
        prow.append(_lava_float_parity(lava))
        fa = lava["float_vs_emulator_agreement"]
        prow.append(
            [
                "float vs emulator: inference, clean test",
                f"{n} samples",
                f"{round(fa * n)}/{n} predictions equal",
                f"{quant['weight_bits']}-bit weights (not expected to be exact)",
            ]
        )
    else:
        prow.append(["Lava", "—", "skipped (--skip-lava)", "—"])
    blocks.append(Table(["comparison", "data", "result", "detail"], prow))
    return blocks


def _adaptation_section(art: _Artefacts, fig_dir: Path) -> list:
    """The on-device adaptation scenario, its accuracies, learning curves and weights."""
    run_dir, adapt = art.run_dir, art.adapt
    if adapt is None:
        return []
    blocks: list = []
    s = adapt["settings"]
    aa = adapt["accuracy"]
    blocks.append(("h2", "On-device adaptation to a shifted condition"))
    signal = s.get("signal", "host")
    if signal == "host":
        fed_back = ""
        if len(s["layers"]) > 1:
            fed_back = " and that error fed back through the readout weights to " + ", ".join(
                s["layers"][:-1]
            )
        how = f"the host sends softmax(logits) − onehot(label) to the readout{fed_back}"
    else:
        dfa = "DFA" if signal == "dfa" else "sign-DFA"
        hidden = ", ".join(s["layers"][:-1]) or "no hidden layer"
        how = (
            "the device makes its own signal: an error unit compares the readout's "
            "membrane with the label (clip(o/A, 0, 1) − onehot, in integers) and "
            f"{dfa} sends it through fixed random int8 matrices to {hidden}; the host "
            "only streams inputs and labels"
        )
    eval_set = s.get("eval_set", "shifted test samples")
    text = (
        f"Scenario — {adapt['description']}. {s['stream_samples']} labelled samples of the "
        "shifted condition arrive one at a time and the network learns with nothing but "
        f"its third-factor port: during the last {s['window']} of "
        f"{s.get('stream_steps', s['steps'])} steps of each sample {how} (learning rate "
        f"η = {s['lr']:g}; plastic: {', '.join(s['layers'])}). Accuracy is measured on "
        f"{s['eval_samples']} {eval_set}, which the stream never contains; the "
        f"'original condition' columns use {s.get('clean_set', 'clean test samples')}."
    )
    blocks.append(("p", text))
    rows = []
    for impl in ("float", "emulator"):
        d = aa[impl]
        rows.append(
            [
                impl if impl == "float" else "fixed point (emulator)",
                _pct(d["before"]),
                _pct(d["after"]),
                f"{d['after'] - d['before']:+.1f}",
                _pct(d["clean_before"]),
                _pct(d["clean_after"]),
            ]
        )
    if aa.get("lava"):
        d = aa["lava"]
        rows.append(
            [
                f"Lava fixed_pt ({adapt['lava']['eval_samples']} samples)",
                _pct(d["before"]),
                _pct(d["after"]),
                f"{d['after'] - d['before']:+.1f}",
                "—",
                "—",
            ]
        )
    blocks.append(
        Table(
            [
                "",
                "shifted, before",
                "shifted, after",
                "Δ (points)",
                "original, before",
                "original, after",
            ],
            rows,
        )
    )
    figures.adaptation_curves(adapt, fig_dir / "adaptation_curves.png")
    blocks.append(
        Figure(
            "adaptation_curves.png",
            "Learning curves: accuracy on the "
            "shifted held-out samples as labelled samples stream in. Lava "
            "learned the same stream (its weights equal the emulator's) and "
            "was scored before and after.",
        )
    )
    from stllr.checkpoints import load_pt

    weights = load_pt(run_dir / A.ADAPT_WEIGHTS, what="adaptation weights file")
    figures.weight_histograms(weights, fig_dir / "weight_histograms.png")
    moved = ", ".join(f"{k}: {v}" for k, v in adapt["weights_changed"].items())
    blocks.append(
        Figure(
            "weight_histograms.png",
            "Weights of the plastic layers: float "
            "(trained Ŵ), fixed point as deployed, and after on-device "
            f"learning (left); the on-device change in weight LSBs (right). "
            f"Weights changed: {moved}.",
        )
    )
    return blocks


def _cost_section(art: _Artefacts, fig_dir: Path) -> list:
    """Synaptic operations, footprint and sparsity per layer (NeuroBench definitions)."""
    cost = art.cost
    blocks: list = []
    blocks.append(("h2", "Neuromorphic cost per layer (NeuroBench definitions)"))
    text = (
        "Synaptic operations per sample: for every connection and time step, the nonzero "
        "input activations times their nonzero fan-out weights (effective operations; "
        "accumulates, ACs, when the input is binary spikes, multiply-accumulates, MACs, "
        "when it is graded, such as event counts per bin); dense operations count every "
        "activation and connection. Activation sparsity: 1 − spikes / (neurons × time "
        "steps). Footprint: parameters at their deployed widths (weights, 13-bit biases, "
        "threshold and decay); neuron state is listed beside it. Connection sparsity: "
        "fraction of zero weights. Measured with the integer emulator on "
        f"{cost['samples']} test samples, real time steps only. Definitions: {NEUROBENCH}."
    )
    blocks.append(("p", text))
    rows = [
        [
            f"{r['source']} → {r['layer']}",
            r["kind"],
            _num(r["effective_per_sample"]),
            _num(r["dense_per_sample"]),
            f"{100 * r['effective_per_sample'] / max(r['dense_per_sample'], 1):.1f} %",
        ]
        for r in cost["connections"]
    ]
    eff = sum(r["effective_per_sample"] for r in cost["connections"])
    dense = sum(r["dense_per_sample"] for r in cost["connections"])
    rows.append(["total", "", _num(eff), _num(dense), f"{100 * eff / max(dense, 1):.1f} %"])
    blocks.append(
        Table(
            [
                "connection",
                "kind",
                "effective ops / sample",
                "dense ops / sample",
                "effective / dense",
            ],
            rows,
        )
    )
    sp = cost["activation_sparsity"]
    fp_rows = []
    for r in cost["footprint"]:
        fp_rows.append(
            [
                r["layer"],
                f"{r['weights']} × {r['weight_bits']} bit",
                f"{r['param_bytes'] / 1024:.1f} KiB",
                f"{r['float32_param_bytes'] / 1024:.1f} KiB",
                f"{r['state_bytes'] / 1024:.2f} KiB",
                f"{r['connection_sparsity']:.3f}",
                "—" if r["layer"] not in sp else f"{sp[r['layer']]:.3f}",
            ]
        )
    blocks.append(
        Table(
            [
                "layer",
                "weights",
                "parameter footprint",
                "float32 footprint",
                "neuron state",
                "connection sparsity",
                "activation sparsity",
            ],
            fp_rows,
        )
    )
    blocks.append(
        (
            "p",
            f"Network activation sparsity {cost['activation_sparsity_network']:.3f}; "
            f"input sparsity {cost['input_sparsity']:.3f}.",
        )
    )
    figures.cost_per_layer(cost, fig_dir / "synaptic_operations.png")
    blocks.append(
        Figure(
            "synaptic_operations.png",
            "Effective vs dense synaptic operations per sample, per connection.",
        )
    )
    return blocks


def _memory_section(art: _Artefacts, fig_dir: Path) -> list:
    """Training memory of S-TLLR vs BPTT as the sequence grows."""
    from pipeline.memory import memory_points

    blocks: list = []
    points, source = memory_points(resolve_repo_path(art.cfg.report.memory_results))
    blocks.append(("h2", "Training memory vs sequence length"))
    figures.memory_vs_t(points, source, fig_dir / "memory_vs_T.png")
    blocks.append(
        Figure(
            "memory_vs_T.png",
            "Memory autograd holds for backward during one "
            "training batch (stllr.memory.SavedTensorTracker): S-TLLR stays flat "
            f"in T, BPTT grows linearly. Source: {source}.",
        )
    )
    return blocks


def _raster_section(art: _Artefacts, fig_dir: Path) -> list:
    """Spikes of one test sample in Lava (only when Lava ran)."""
    if not art.lava_ran:
        return []
    import numpy as np

    from quantization.network import SpikingLayer

    run_dir = art.run_dir
    blocks: list = []
    qnet = A.load_qnet(run_dir)
    with np.load(run_dir / A.LAVA_SAMPLE) as z:
        sample = {k: z[k] for k in z.files}
    spiking = [n.name for n in qnet.nodes if isinstance(n, SpikingLayer)]
    figures.spike_raster(sample, spiking, qnet.nodes[-1].name, fig_dir / "spike_raster.png")
    blocks.append(("h2", "Spike raster of a sample"))
    blocks.append(
        Figure(
            "spike_raster.png",
            "One test sample in Lava fixed_pt: input "
            "events, hidden spikes and the integer logits per step.",
        )
    )
    return blocks


def _training_section(art: _Artefacts, fig_dir: Path) -> list:
    """The float training run and its learning curves."""
    from stllr.run import plot_learning_curves
    from stllr.trainer import EpochMetrics

    cfg, tr = art.cfg, art.tr
    blocks: list = []
    plot_learning_curves([EpochMetrics(**m) for m in tr["history"]], fig_dir / "training.png")
    blocks.append(("h2", "Float training"))
    blocks.append(
        (
            "p",
            f"{cfg.train.arch}, hidden {tr['hidden']}, {tr['method']} "
            f"({tr['feedback']}), {tr['epochs']} epochs: best test accuracy "
            f"{tr['best_test_acc']:.1f} % at epoch {tr['best_epoch']} "
            f"(deployed).",
        )
    )
    blocks.append(Figure("training.png", "Float S-TLLR training: accuracy and loss per epoch."))
    return blocks


def build(ctx: Context, fig_dir: Path) -> tuple[str, list]:
    """(title, blocks); draws every figure into ``fig_dir``."""
    art = _read_artefacts(ctx)
    title = f"stllr pipeline report — {art.cfg.train.task}"
    blocks: list = _header_section(art)
    blocks += _stages_section(art)
    blocks += _accuracy_section(art, fig_dir)
    blocks += _bits_section(art, fig_dir)
    blocks += _parity_section(art)
    blocks += _adaptation_section(art, fig_dir)
    blocks += _cost_section(art, fig_dir)
    blocks += _memory_section(art, fig_dir)
    blocks += _raster_section(art, fig_dir)
    blocks += _training_section(art, fig_dir)
    return title, blocks


# --- rendering ----------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1em 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; margin-top: 0.3em; }
"""


def to_html(title: str, blocks: list, fig_dir: Path) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for b in blocks:
        if isinstance(b, Table):
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{e(h)}</th>" for h in b.headers)
                + "</tr></thead><tbody>"
            )
            for r in b.rows:
                out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((fig_dir / b.file).read_bytes()).decode()
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.caption)}" '
                f'data-file="{e(b.file)}"><figcaption>{e(b.caption)}</figcaption></figure>'
            )
        elif b[0] == "h2":
            out.append(f"<h2>{e(b[1])}</h2>")
        else:
            out.append(f"<p>{e(b[1])}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{_md_cell(b.caption)}](figures/{b.file})", "", f"*{b.caption}*", ""]
        elif b[0] == "h2":
            out += [f"## {b[1]}", ""]
        else:
            out += [b[1], ""]
    return "\n".join(out)


def run(ctx: Context) -> StageOutput:
    out = ctx.stage_dir("report")
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    title, blocks = build(ctx, fig_dir)
    atomic_write_bytes(out / "report.html", to_html(title, blocks, fig_dir).encode())
    atomic_write_bytes(out / "report.md", to_markdown(title, blocks).encode())
    figs = [b.file for b in blocks if isinstance(b, Figure)]
    summary = {"html": A.REPORT_HTML, "markdown": A.REPORT_MD, "figures": figs}
    line = f"{ctx.run_dir / A.REPORT_HTML} (+ report.md, {len(figs)} figures)"
    arte = (A.REPORT_HTML, A.REPORT_MD, *[f"report/figures/{f}" for f in figs])
    return StageOutput(summary, line, arte)
