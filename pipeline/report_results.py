"""The report's sections on the deployed network: accuracy (float, 8-bit emulator, Lava),
the bit-width sweep and the parity of the float, emulator and Lava models."""

from __future__ import annotations

from pathlib import Path

from pipeline import figures
from pipeline.document import Figure, Table
from pipeline.report_inputs import Artefacts, lava_prefix, pct


def _gap(quant: dict) -> str:
    """The deployed network's paired difference to float (absent in older run folders)."""
    g = quant.get("deployed_vs_float")
    if not g:
        return ""
    return f"; {g['delta']:+.1f} ± {g['standard_error']:.1f} points vs float (paired SE)"


def accuracy_section(art: Artefacts, fig_dir: Path) -> list:
    """Accuracy of float, fixed point and Lava on every condition, as table and figure."""
    quant, lava, adapt, lava_ran = art.quant, art.lava, art.adapt, art.lava_ran
    blocks: list = []
    blocks.append(("h2", "Accuracy: float vs fixed point vs Lava"))
    acc_rows = [
        [
            f"test split ({quant['test_samples']} samples)",
            pct(quant["float_accuracy"]),
            pct(quant["ptq"]["accuracy"])
            + f" ({quant['weight_bits']}-bit PTQ)"
            + ("" if quant.get("qat") else _gap(quant)),
            "—",
            "—",
        ],
    ]
    if quant.get("qat"):
        acc_rows.append(
            [
                f"test split, after {quant['qat_epochs']} QAT epoch(s)",
                pct(quant["qat"]["qat"]["fake_quant_accuracy"]) + " (fake-quant)",
                pct(quant["qat"]["accuracy"]) + _gap(quant),
                "—",
                "—",
            ]
        )
    if quant.get("float_control"):  # absent in run folders made before it existed
        acc_rows.append(
            [
                f"test split, float fine-tuned {quant['qat_epochs']} epoch(s) like QAT",
                pct(quant["float_control"]["accuracy"]) + " (QAT's control)",
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
                pct(a["float"]),
                pct(a["emulator"]),
                pct(a["lava"]),
                pct(a.get("lava_float")),
            ]
        )
        groups.append((f"Lava subset\n(n={lava['samples']})", dict(a)))
    if adapt is not None:
        aa = adapt["accuracy"]
        n_eval = adapt["settings"]["eval_samples"]
        for when in ("before", "after"):
            lv = aa["lava"][when] if aa.get("lava") else None
            lava_n = f"; Lava n={adapt['lava']['eval_samples']}" if lv is not None else ""
            if lv is not None and when == "after" and lava_prefix(adapt["lava"]):
                lava_n += ", emulator's final weights"  # Lava learned only a stream prefix
            acc_rows.append(
                [
                    f"shifted condition, {when} adaptation (n={n_eval}{lava_n})",
                    pct(aa["float"][when] if aa.get("float") else None),
                    pct(aa["emulator"][when]),
                    pct(lv),
                    "—",
                ]
            )
            groups.append(
                (
                    f"shifted, {when}\n(n={n_eval}{lava_n})",
                    {
                        "float": aa["float"][when] if aa.get("float") else None,
                        "emulator": aa["emulator"][when],
                        "lava": lv,
                    },
                )
            )
        fl = aa.get("float")
        acc_rows.append(
            [
                f"original condition, after adaptation (n={n_eval})",
                pct(fl["clean_after"] if fl else None),
                pct(aa["emulator"]["clean_after"]),
                "—",
                "—",
            ]
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
    blocks.extend(latency_blocks(quant))
    return blocks


def first_spike_blocks(quant: dict) -> list:
    """A first-spike network's FS read-out, float and deployed (pipeline/first_spike.py)."""
    fs = quant.get("first_spike")
    if not fs:
        return []
    rows = []
    for label, key in (("float (torch)", "float"), ("fixed point (emulator)", "integer")):
        r = fs[key]
        rows.append([label, pct(r["fs_acc"]), pct(r["fr_acc"]), f"{r['spikes_per_sample']:.1f}",
                     f"{r['latency']:.1f}", f"{r['silent']} of {r['samples']}",
                     f"{r['decision_step_50']:g} / {r['decision_step_90']:g}",
                     f"{r['hidden_spikes_per_neuron']:.2f}"])  # fmt: skip
    return [
        Table(
            [
                "network",
                "FS accuracy",
                "FR accuracy (same spikes)",
                "output spikes / sample",
                "first spike (step)",
                "silent samples",
                "decision step 50 % / 90 %",
                "hidden spikes / neuron",
            ],
            rows,
        ),  # fmt: skip
        ("p", f"First-spike read-out of the output layer {fs['node']!r} on the test split: "
         "the class is the output neuron that fires first (docs/first_spike.md); first "
         "spike = the mean step of a sample's first output spike (silent samples left out), "
         "decision steps = where the FS accuracy-with-time curve reaches 50 % / 90 % of its "
         "maximum, in steps of the input frames."),
    ]  # fmt: skip


def latency_blocks(quant: dict) -> list:
    """The float and deployed networks' latency (pipeline/latency.py), when measured."""
    lat = quant.get("latency")
    if not lat:
        return first_spike_blocks(quant)
    rows = []
    for label, key in (("float (torch)", "float"), ("fixed point (emulator)", "integer")):
        r = lat[key]
        rows.append([label, f"{r['first_spike_latency']:.1f}", f"{r['silent']} of "
                     f"{r['samples']}", f"{r['decision_step']:.1f}"])  # fmt: skip
    return [
        Table(
            [
                "network",
                f"first spike of {lat['node']!r} (step)",
                "silent samples",
                "decision step",
            ],
            rows,
        ),  # fmt: skip
        ("p", f"Latency on the test split, in steps of the input frames: the mean step of "
         f"the first spike of {lat['node']!r} (the layer the readout reads; samples without "
         "a spike left out) and the mean step from which the running prediction (argmax of "
         "the logits summed so far) stays the final one. The network has no first-spike "
         "coded output, so no FS accuracy is reported."),
    ]  # fmt: skip


def bits_section(art: Artefacts, fig_dir: Path) -> list:
    """Accuracy vs weight width (PTQ sweep) and the deployed network per layer."""
    quant, sweep = art.quant, art.sweep
    blocks: list = []
    blocks.append(("h2", "Accuracy vs weight bits"))
    entry = sweep["entries"][0]
    blocks.append(
        Table(
            ["weight bits", *[str(b) for b in sweep["bits"]]],
            [["PTQ (emulator)", *[pct(r["accuracy"]) for r in entry["ptq"]]]],
        )
    )
    from quantization.accuracy_plot import plot_accuracy_vs_bits

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


def parity_section(art: Artefacts) -> list:
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
            prefix = lava_prefix(lv)  # Lava learned only the first K of M stream samples
            stream = f"{s['stream_samples']} samples"
            if prefix:
                stream = f"first {prefix[0]} of {prefix[1]} stream samples"
            prow.append(
                [
                    "Lava vs emulator: on-device learning (stream)",
                    f"{stream} × {s.get('stream_steps', s['steps'])} steps, "
                    "layers "
                    f"{', '.join(s['layers'])}",
                    ("learned weights equal" + (" the emulator's after them" if prefix else ""))
                    if lv["weights_equal"]
                    else f"weights differ: {lv['weights_mismatched']}",
                    f"outputs bit-exact ({total_vals})"
                    if lv["outputs_bit_exact"]
                    else f"outputs differ: {lv['outputs_mismatched']}",
                ]
            )
            after_weights = "Lava-learned weights"
            if prefix:
                after_weights = f"emulator's final weights (Lava learned the first {prefix[0]})"
            for when in ("before", "after"):
                ag = lv["agreement"][when]
                prow.append(
                    [
                        f"Lava vs emulator: shifted test, {when} adaptation",
                        f"{lv['eval_samples']} samples",
                        f"{round(ag * lv['eval_samples'])}/{lv['eval_samples']} predictions equal",
                        "deployed weights" if when == "before" else after_weights,
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
