"""The adaptation stage in Lava: learn the stream (or its first K samples), check it against
the emulator, then score the shifted condition before and after (docs/adaptation.md §1).

Learning: Lava ``fixed_pt`` runs the stream the emulator learned, the first ``R`` samples
in arrival order (replay and passes included; ``R`` = ``adaptation.lava_stream_samples``
when ``0 < R < M``, else the whole stream of ``M``). With host signals it receives the
emulator's recorded integer third factors ``L [T, R, *out]`` (computed from outputs Lava
reproduces bit for bit, so they are Lava's own); with on-device signals (DFA, sign-DFA) its
own error and feedback processes make them (:func:`lava_models.online.run_lava_online`).
Checked: every node's output at every step of those ``R`` samples equals the emulator's,
and Lava's learned W (and W_rec) equal the emulator's weights after the same ``R`` samples
(its final weights when ``R = M``, else its snapshot after sample ``R``, taken after that
sample's update and consolidation pull).

Scoring: the first ``lava_eval_samples`` shifted test samples run in Lava (learning off)
with the deployed weights (before) and with the learned weights (after): Lava's own when it
learned the whole stream, the emulator's final weights when it learned a prefix (Lava has
not seen the rest). Each Lava prediction is compared with the emulator's on the same
network and sample. A sample is scored over its ``le`` steps only; a first-spike network
is read by its first output spike (undecided without one, in both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import torch

from pipeline.adapt_device import accuracy
from pipeline.lava_inference import emulate, lava_outputs, run_in_lava
from pipeline.learners import strip_learning
from stllr.padding import sum_over_lengths
from stllr.spike_metrics import spike_decision

#: ``lava.after_weights``: whose learned weights Lava scored "after"
OWN_WEIGHTS = "Lava's own"


def emulator_weights_text(k: int) -> str:
    """``lava.after_weights`` when Lava learned the first ``k`` stream samples only."""
    return f"emulator's final (Lava learned the first {k})"


class LavaLearned(NamedTuple):
    """Lava's run of the stream against the emulator's (counts of differing values)."""

    outputs_mismatched: dict[str, int]  # per node, over every step of the learned samples
    weights_mismatched: dict[str, int]  # per plastic node, W and W_rec together
    network: object  # the plastic network holding Lava's learned weights
    timing: object  # Lava's timing record


def weight_mismatch(
    lava_weights: Callable[[str], dict], reference, layers, plastic
) -> tuple[dict[str, int], object]:
    """Per plastic node, how many of Lava's W and W_rec values (``lava_weights(name) →
    {"w", "w_rec"}``) differ from ``reference``'s (a QNetwork), and ``plastic`` holding
    Lava's weights."""
    mismatch, lava_net = {}, plastic
    for name in layers:
        lw, ref = lava_weights(name), reference.node(name)
        diff = int((torch.as_tensor(lw["w"]) != ref.weight).sum())
        kw = {"weight": torch.as_tensor(lw["w"], dtype=torch.int64)}
        if "w_rec" in lw:
            diff += int((torch.as_tensor(lw["w_rec"]) != ref.weight_rec).sum())
            kw["weight_rec"] = torch.as_tensor(lw["w_rec"], dtype=torch.int64)
        mismatch[name] = diff
        lava_net = lava_net.replace_node(dataclasses.replace(lava_net.node(name), **kw))
    return mismatch, lava_net


def learn_in_lava(
    plastic, xs_int, ys, signals, outputs, reference, layers, plan, window, timeout
) -> LavaLearned:
    """Lava learns the stream ``xs_int [T, R, ...]`` (labels ``ys [R]``; ``signals``: the
    host's, or ``plan``'s on-device ones); its outputs are compared with the emulator's
    ``outputs {node: [T, R, ...]}``, its weights with ``reference``'s."""
    n, steps = xs_int.shape[1], xs_int.shape[0]
    if plan is None:
        res = run_in_lava(plastic, xs_int, signals, timeout_s=timeout)
        lava_weights = res.weights
    else:
        from lava_models.online import run_lava_online
        from lava_models.runtime import import_lava

        import_lava()
        res = run_lava_online(
            plastic, xs_int.transpose(0, 1).numpy(), ys.numpy(), learn_window=window,
            plan=plan, timeout_s=timeout,
        )  # fmt: skip
        lava_weights = res.weights.get  # run_lava_online holds them in a dict
    got = lava_outputs(res, plastic, n, steps)
    out_mismatch = {
        node.name: int((outputs[node.name].numpy() != got[node.name]).sum())
        for node in plastic.nodes
    }
    w_mismatch, lava_net = weight_mismatch(lava_weights, reference, layers, plastic)
    return LavaLearned(out_mismatch, w_mismatch, lava_net, res.timing)


def score_in_lava(qnet, after, xe, ye, le, n_eval: int, fs: bool, timeout) -> dict:
    """The first ``n_eval`` shifted samples ``xe [T, N, ...]`` in Lava with ``qnet``
    (before) and ``after`` (learning off), each prediction beside the emulator's."""
    from quantization.ptq import quantize_input

    xe_int = quantize_input(xe[:, :n_eval], qnet.input_format)
    y, lengths = ye[:n_eval], le[:n_eval]
    out_name = qnet.nodes[-1].name
    preds = {}
    for when, net in (("before", qnet), ("after", strip_learning(after))):
        r = run_in_lava(strip_learning(net), xe_int, timeout_s=timeout)
        lava_out = lava_outputs(r, net, n_eval, xe_int.shape[0])[out_name]
        emu_out = emulate(strip_learning(net), xe_int)[out_name]
        if fs:
            preds[when] = (
                spike_decision(torch.as_tensor(lava_out), lengths),
                spike_decision(torch.as_tensor(emu_out), lengths),
            )
            continue
        preds[when] = (
            sum_over_lengths(lava_out, lengths).argmax(1),
            sum_over_lengths(emu_out, lengths).argmax(1),
        )
    return {
        "eval_samples": n_eval,
        "accuracy": {
            "before": accuracy(preds["before"][0], y),
            "after": accuracy(preds["after"][0], y),
        },
        "emulator_same_samples": {
            "before": accuracy(preds["before"][1], y),
            "after": accuracy(preds["after"][1], y),
        },
        "agreement": {w: float((p[0] == p[1]).double().mean()) for w, p in preds.items()},
        "predictions_differing": {w: int((p[0] != p[1]).sum()) for w, p in preds.items()},
    }


def lava_part(ctx, qnet, dev, prep, layers, fs: bool = False) -> dict:
    """Lava learns the stream samples the emulator ``dev`` recorded and is checked against
    it, then scores before and after (module doc): ``adaptation.json``'s ``lava`` block."""
    a, timeout = ctx.cfg.adaptation, ctx.cfg.lava.timeout_s
    total, k = len(prep.schedule), dev.recorded
    xs_int = prep.x_all_int[:, :k].long()  # only the samples Lava learns are stacked
    part = f"of {total} samples" if k == total else f"(its first {k} of {total} samples)"
    how = (
        " with the host's signals"
        if dev.plan is None
        else f"; error and {dev.plan.source.upper()} feedback computed by Lava processes"
    )
    ctx.log(f"  Lava fixed_pt: adaptation stream {part} × {xs_int.shape[0]} steps{how}")
    reference = dev.learned if k == total else dev.prefix
    learned = learn_in_lava(
        dev.plastic, xs_int, prep.y_all[:k], dev.signals, dev.outputs, reference, layers,
        dev.plan, a.window, timeout,
    )  # fmt: skip
    n_eval = min(a.lava_eval_samples or prep.xe.shape[1], prep.xe.shape[1])
    after = learned.network if k == total else dev.learned
    scored = score_in_lava(qnet, after, prep.xe, prep.ye, prep.le, n_eval, fs, timeout)
    return {
        **scored,
        "weights_mismatched": learned.weights_mismatched,
        "weights_equal": all(v == 0 for v in learned.weights_mismatched.values()),
        "outputs_mismatched": learned.outputs_mismatched,
        "outputs_bit_exact": all(v == 0 for v in learned.outputs_mismatched.values()),
        "timing_s": learned.timing,
        # what the checks above and "after" cover: the samples Lava learned, whose weights
        "stream_samples_learned": k,
        "stream_samples_total": total,
        "after_weights": OWN_WEIGHTS if k == total else emulator_weights_text(k),
    }


def lava_line(lava: dict) -> str:
    """The stage line's Lava part: what Lava learned, which weights it scored."""
    la, n = lava["accuracy"], lava["eval_samples"]
    eq = "=" if lava["weights_equal"] else "≠"
    k, total = lava.get("stream_samples_learned"), lava.get("stream_samples_total")
    if k is None or k == total:
        return (
            f", Lava {la['before']:.1f}% → {la['after']:.1f}% ({n} samples); "
            f"Lava-learned weights {eq} emulator's"
        )
    same = n - lava["predictions_differing"]["after"]
    return (
        f", Lava {la['before']:.1f}% → {la['after']:.1f}% ({n} samples, emulator's final "
        f"weights); Lava learned the first {k} of {total} stream samples, weights {eq} "
        f"emulator's there; final weights in Lava: {same}/{n} predictions equal"
    )
