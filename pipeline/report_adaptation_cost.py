"""The report's sections on on-device adaptation, cost (synaptic operations, NeuroBench
definitions), training memory against the number of steps and a spike raster."""

from __future__ import annotations

from pathlib import Path

from pipeline import artefacts as A
from pipeline import figures
from pipeline.config import resolve_repo_path
from pipeline.document import Figure, Table
from pipeline.report_inputs import Artefacts, lava_prefix, num, pct

NEUROBENCH = (
    "Yik et al., “NeuroBench: a framework for benchmarking neuromorphic computing algorithms "
    "and systems”, Nature Communications 16, 1545 (2025); definitions at "
    "neurobench.readthedocs.io (metrics)"
)


def adaptation_section(art: Artefacts, fig_dir: Path) -> list:
    """The on-device adaptation scenario, its accuracies, learning curves and weights."""
    run_dir, adapt = art.run_dir, art.adapt
    if adapt is None:
        return []
    blocks: list = []
    s = adapt["settings"]
    aa = adapt["accuracy"]
    blocks.append(("h2", "On-device adaptation to a shifted condition"))
    signal = s.get("signal", "host")
    if s.get("first_spike_teacher"):  # a first-spike network (docs/first_spike.md)
        t = s["first_spike_teacher"]
        fed_back = ""
        if len(s["layers"]) > 1:
            fed_back = " and that signal fed back through its weights to " + ", ".join(
                s["layers"][:-1]
            )
        how = (
            "the host sends the first-spike teaching signal of the output spikes so far "
            f"(α = {t['alpha']:g}, σ = {t['sigma']:g} steps: the label neuron pushed to fire "
            f"until it fires, the others down while silent or after firing) to the output "
            f"layer{fed_back}"
        )
    elif signal == "host":
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
    if adapt.get("mechanisms"):
        blocks.append(("p", f"Stabilising mechanisms: {adapt['mechanisms']}."))
    rows = []
    for impl in ("float", "emulator"):
        d = aa.get(impl)
        if not d:
            continue
        rows.append(
            [
                impl if impl == "float" else "fixed point (emulator)",
                pct(d["before"]),
                pct(d["after"]),
                _delta(d, "shifted", d["after"] - d["before"]),
                pct(d["clean_before"]),
                pct(d["clean_after"]),
                _delta(d, "original", d["clean_after"] - d["clean_before"]),
            ]
        )
    if aa.get("lava"):
        d = aa["lava"]
        rows.append(
            [
                _lava_label(adapt["lava"]),
                pct(d["before"]),
                pct(d["after"]),
                f"{d['after'] - d['before']:+.1f}",
                "—",
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
                "Δ shifted (points ± paired SE; gained/lost)",
                "original, before",
                "original, after",
                "Δ original (points ± paired SE; gained/lost)",
            ],
            rows,
        )
    )
    e = aa["emulator"]
    if "shifted" in e:
        from pipeline.adapt_stats import PairedChange, gained_lost

        sh, orig = PairedChange(**e["shifted"]), PairedChange(**e["original"])
        blocks.append(("p", f"What on-device learning gained and lost (emulator): "
                            f"{gained_lost(sh, orig)}."))  # fmt: skip
    seeds = adapt.get("seeds") or {}
    if len(seeds.get("seeds", [])) > 1:
        n = len(seeds["seeds"])
        blocks.append(
            (
                "p",
                f"Over {n} seeds of the adaptation (emulator; seeds "
                f"{', '.join(map(str, seeds['seeds']))}): shifted condition "
                f"{seeds['shifted_delta_mean']:+.1f} ± {seeds['shifted_delta_std']:.1f} points "
                f"(mean ± std; paired SE of one run {seeds['shifted_se_mean']:.1f}), original "
                f"condition {seeds['original_delta_mean']:+.1f} ± "
                f"{seeds['original_delta_std']:.1f} points (paired SE "
                f"{seeds['original_se_mean']:.1f}).",
            )
        )
    figures.adaptation_curves(adapt, fig_dir / "adaptation_curves.png")
    lava_text = (
        "Lava learned the same stream (its weights equal the emulator's) and was scored "
        "before and after."
    )
    prefix = lava_prefix(adapt.get("lava"))
    if prefix:  # Lava learned the first K stream samples; "after" ran the emulator's weights
        eq = "equal" if adapt["lava"]["weights_equal"] else "differ from"
        lava_text = (
            f"Lava learned the first {prefix[0]} of the {prefix[1]} stream samples (its "
            f"weights {eq} the emulator's after them) and scored the deployed and the "
            "emulator's final weights."
        )
    blocks.append(
        Figure(
            "adaptation_curves.png",
            "Learning curves: accuracy on the shifted held-out samples (solid) and on "
            f"the original condition (dashed) as labelled samples stream in. {lava_text}",
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


def _lava_label(lava: dict) -> str:
    """``Lava fixed_pt (n samples; = emulator on k/n after)``."""
    n = lava["eval_samples"]
    diff = lava.get("predictions_differing")
    if diff is None:
        return f"Lava fixed_pt ({n} samples)"
    same = n - max(diff.values())
    name = "Lava fixed_pt, emulator's final weights" if lava_prefix(lava) else "Lava fixed_pt"
    return f"{name} ({n} samples; predictions = emulator's on {same}/{n})"


def _delta(d: dict, cond: str, fallback: float) -> str:
    """``Δ ± SE (gained/lost)`` from a result's paired block, or the plain Δ of older ones."""
    c = d.get(cond)
    if c is None:
        return f"{fallback:+.1f}"
    return f"{c['delta']:+.1f} ± {c['se']:.1f} ({c['gained']}/{c['lost']})"


def cost_section(art: Artefacts, fig_dir: Path) -> list:
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
            num(r["effective_per_sample"]),
            num(r["dense_per_sample"]),
            f"{100 * r['effective_per_sample'] / max(r['dense_per_sample'], 1):.1f} %",
        ]
        for r in cost["connections"]
    ]
    eff = sum(r["effective_per_sample"] for r in cost["connections"])
    dense = sum(r["dense_per_sample"] for r in cost["connections"])
    rows.append(["total", "", num(eff), num(dense), f"{100 * eff / max(dense, 1):.1f} %"])
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


def memory_section(art: Artefacts, fig_dir: Path) -> list:
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


def raster_section(art: Artefacts, fig_dir: Path) -> list:
    """Spikes of one test sample in Lava (only when Lava ran)."""
    if not art.lava_ran:
        return []
    import numpy as np

    from quantization.network import SPIKING_NODES

    run_dir = art.run_dir
    blocks: list = []
    qnet = A.load_qnet(run_dir)
    with np.load(run_dir / A.LAVA_SAMPLE) as z:
        sample = {k: z[k] for k in z.files}
    spiking = [n.name for n in qnet.nodes if isinstance(n, SPIKING_NODES)]
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
