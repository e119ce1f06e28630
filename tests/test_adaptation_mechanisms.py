"""The adaptation's stabilising mechanisms and its paired statistics, each against an
independent reference: loops over elements, hand-computed values, analytic expectations,
or the existing training step they must reproduce."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from pipeline.adapt_loop import checkpoints_of, interleave
from pipeline.adapt_mechanisms import (
    Mechanisms,
    StreamItem,
    rate_scale,
    step_error,
    stream_schedule,
)
from pipeline.adapt_stats import mean_std, paired_change
from quantization.consolidation import consolidate
from quantization.kernels import STREAM_CW, STREAM_CWREC, hash_uniform, node_stream_key
from stllr.errors import UserError


# --- consolidation (integer, on device) -------------------------------------------------
def test_consolidate_matches_an_elementwise_floor_reference():
    w = torch.tensor([[10, -7, 3, 0], [127, -128, 5, -1]])
    w0 = torch.tensor([[2, -7, 9, 1], [-20, 100, 5, 3]])
    shift, key = 3, 12345
    noise = hash_uniform(w, tuple(w.shape), key, shift)
    got = consolidate(w, w0, shift, key)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            d = int(w[i, j]) - int(w0[i, j])
            pull = math.floor((d + int(noise[i, j])) / 2**shift)
            assert int(got[i, j]) == int(w[i, j]) - pull


def test_consolidate_never_overshoots_and_is_unbiased():
    """W' lies between W0 and W; over many keys E[W' − W0] = (1 − 2^−k)(W − W0)."""
    w0 = torch.zeros(2000, dtype=torch.int64)
    w = torch.full((2000,), 5, dtype=torch.int64)
    w[1000:] = -3
    shift = 2
    outs = torch.stack([consolidate(w, w0, shift, k) for k in range(200)]).double()
    lo, hi = torch.minimum(w, w0), torch.maximum(w, w0)
    assert bool(((outs >= lo) & (outs <= hi)).all())
    expect = (1 - 2.0**-shift) * w.double()
    assert torch.allclose(outs.mean(0)[:1000].mean(), expect[0], atol=0.02)
    assert torch.allclose(outs.mean(0)[1000:].mean(), expect[1000], atol=0.02)


def test_consolidate_checks_its_arguments_and_keys_differ_per_node():
    w = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="shift must be ≥ 1"):
        consolidate(w, w, 0, 1)
    with pytest.raises(ValueError, match="differ"):
        consolidate(w, torch.zeros(4, dtype=torch.int64), 1, 1)
    keys = {node_stream_key(0, 5, node, q) for node in range(3) for q in (STREAM_CW, STREAM_CWREC)}
    assert len(keys) == 6
    # numpy (a Lava process) and torch (the emulator) draw the same bits
    w, w0 = torch.tensor([9, -9, 4, 0]), torch.tensor([0, 1, 4, -3])
    assert consolidate(w.numpy(), w0, 2, 77).tolist() == consolidate(w, w0, 2, 77).tolist()


# --- host-side mechanisms ----------------------------------------------------------------
def test_rate_scale_and_step_error_by_hand():
    assert rate_scale(0, 10.0) == 1.0
    assert rate_scale(30, 10.0) == pytest.approx(0.25)
    assert rate_scale(99, 0.0) == 1.0
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    err = step_error(logits, 1, gate=0.0, scale=0.5)
    assert torch.allclose(err, torch.tensor([[0.125, -0.125]], dtype=torch.float64))
    assert step_error(logits, 1, gate=0.3) is None  # 1 − p = 0.25 < 0.3: nothing sent
    err = step_error(logits, 0, gate=0.3)  # 1 − p = 0.75 ≥ 0.3
    assert torch.allclose(err, torch.tensor([[-0.75, 0.75]], dtype=torch.float64))


def test_stream_schedule_interleaves_replay_by_hand():
    s = stream_schedule(5, replay_every=2, n_buffer=2)
    assert s == [
        StreamItem("shift", 0),
        StreamItem("shift", 1),
        StreamItem("replay", 0),
        StreamItem("shift", 2),
        StreamItem("shift", 3),
        StreamItem("replay", 1),
        StreamItem("shift", 4),
    ]
    assert stream_schedule(3) == [StreamItem("shift", k) for k in range(3)]
    # curve points after the 2nd and 4th shifted sample, and after the last
    assert checkpoints_of(s, 2) == {1: 2, 4: 4, 6: 5}
    # a replay after the last shifted sample: the last point follows it
    assert checkpoints_of(stream_schedule(4, 2, 1), 2) == {1: 2, 5: 4}


def test_stream_schedule_passes_repeat_the_stream_by_hand():
    # two passes over 3 shifted samples, a replay after every 2nd shifted item
    assert stream_schedule(3, replay_every=2, n_buffer=2, passes=2) == [
        StreamItem("shift", 0),
        StreamItem("shift", 1),
        StreamItem("replay", 0),
        StreamItem("shift", 2),
        StreamItem("shift", 0),
        StreamItem("replay", 1),
        StreamItem("shift", 1),
        StreamItem("shift", 2),
        StreamItem("replay", 0),
    ]


def test_interleave_pads_and_orders_the_stream():
    xs = torch.arange(2 * 3).reshape(2, 3, 1).float() + 1  # T = 2, 3 shifted samples
    xr = -torch.arange(4 * 2).reshape(4, 2, 1).float() - 1  # T = 4, 2 replay samples
    sched = [StreamItem("shift", 2), StreamItem("replay", 1), StreamItem("shift", 0)]
    x, y = interleave(sched, xs, torch.tensor([7, 8, 9]), xr, torch.tensor([1, 2]))
    assert x.shape == (4, 3, 1) and y.tolist() == [9, 2, 7]
    assert x[:, 0, 0].tolist() == [3.0, 6.0, 0.0, 0.0]
    assert x[:, 1, 0].tolist() == [-2.0, -4.0, -6.0, -8.0]


def test_mechanism_settings_are_checked_with_one_line_errors():
    Mechanisms(rate_decay=10, replay_buffer=5, replay_every=2, consolidate_shift=4).check()
    with pytest.raises(UserError, match="error_gate must be in"):
        Mechanisms(error_gate=1.0).check()
    with pytest.raises(UserError, match="replay needs both"):
        Mechanisms(replay_buffer=4).check("f.toml")
    with pytest.raises(UserError, match="f.toml: adaptation.consolidate_shift"):
        Mechanisms(consolidate_shift=40).check("f.toml")
    with pytest.raises(UserError, match="f.toml.*adaptation.passes"):
        Mechanisms(passes=0).check("f.toml")


# --- paired statistics -------------------------------------------------------------------
def test_paired_change_by_hand():
    y = torch.tensor([0, 1, 2, 3, 4])
    before = torch.tensor([0, 1, 9, 9, 4])  # correct: 1 1 0 0 1
    after = torch.tensor([0, 9, 2, 3, 4])  # correct: 1 0 1 1 1
    c = paired_change(before, after, y)
    # d = 0 −1 +1 +1 0: mean 0.2, sample std sqrt(0.7), SE sqrt(0.7/5)
    assert (c.n, c.gained, c.lost) == (5, 2, 1)
    assert c.before == pytest.approx(60.0) and c.after == pytest.approx(80.0)
    assert c.delta == pytest.approx(20.0)
    assert c.se == pytest.approx(100 * math.sqrt(0.7) / math.sqrt(5))


def test_mean_std_is_the_sample_std():
    v = [1.0, 4.0, 6.5]
    assert mean_std(v) == pytest.approx((statistics.mean(v), statistics.stdev(v)))
    assert mean_std([3.0]) == (3.0, 0.0)


# --- the learners with the mechanisms ---------------------------------------------------
def _small():
    from quantization.ptq import quantize_model
    from stllr.models.vgg import VGGSTLLR

    torch.manual_seed(0)
    model = VGGSTLLR((2, 8, 8), 3, channels=(4, 4), pool_after=(0,)).eval()
    x = (torch.rand(6, 4, 2, 8, 8) < 0.3).float()
    return model, quantize_model(model, [x])[0], x


def test_float_learner_mechanism_path_equals_the_training_step():
    """The loop with a scale and a gate reduces to train_batch's stllr_online step (scale 1,
    a gate that never closes), and a scale s equals SGD with η·s (SGD is linear in η)."""
    from pipeline.float_learner import FloatLearner

    model, _, x = _small()
    sample = x[:, :1]

    def learned(lr, scale, gate):
        fl = FloatLearner(model, ("head",), lr=lr, window=3)
        fl.learn_sample(sample, 2, scale, gate)
        return fl.plastic_copy()[0]

    ref = learned(0.05, 1.0, 0.0)  # stllr.training.train_batch
    assert not torch.equal(ref, learned(0.0 + 1e-12, 1.0, 0.0))  # it did learn
    assert torch.allclose(learned(0.05, 1.0, 1e-30), ref, atol=1e-6)
    assert torch.allclose(learned(0.1, 0.5, 1e-30), ref, atol=1e-6)
    # a gate no step passes leaves the weights as deployed
    fl = FloatLearner(model, ("head",), lr=0.05, window=3)
    w0 = fl.plastic_copy()[0]
    fl.learn_sample(sample, 2, 1.0, 0.999999)
    assert torch.equal(fl.plastic_copy()[0], w0)
    fl.learn_sample(sample, 2)
    fl.consolidate([w0], 2)  # W ← W − (W − W0)/4
    moved = fl.plastic_copy()[0]
    assert not torch.equal(moved, w0)


def test_device_learner_gate_sends_nothing():
    from pipeline.learners import DeviceLearner, make_plastic
    from quantization.ptq import quantize_input

    _, qnet, x = _small()
    # lr large enough that a step moves W by whole LSBs (not only by a lucky rounding)
    plastic = make_plastic(qnet, ("head",), [x], lr=1e-1, seed=1)
    xi = quantize_input(x[:, :1], qnet.input_format)
    closed = DeviceLearner(plastic, ("head",), window=3)
    sig, _ = closed.learn_sample(xi, 1, 1.0, 0.999999)
    assert closed.learned_steps == 0 and not bool(sig["head"].any())
    assert torch.equal(closed.network().node("head").weight, plastic.node("head").weight)
    open_ = DeviceLearner(plastic, ("head",), window=3)
    open_.learn_sample(xi, 1)
    assert open_.learned_steps == 3
    assert not torch.equal(open_.network().node("head").weight, plastic.node("head").weight)


def test_device_consolidation_is_the_node_kinds_step_after_each_sample():
    """With consolidation scheduled, the kinds pull W toward the deployed W0 after the last
    step of every sample: sample 1 learned without it, then :func:`consolidate` with the
    node's stream key at step T − 1, is what the consolidating learner holds; a second
    sample whose gate closes still gets the pull (at step 2T − 1)."""
    from pipeline.learners import DeviceLearner, make_plastic
    from quantization.ptq import quantize_input

    _, qnet, x = _small()
    steps, shift = x.shape[0], 1
    xi = quantize_input(x[:, :1], qnet.input_format)
    plain = make_plastic(qnet, ("head",), [x], lr=0.5, seed=1)
    cons = make_plastic(qnet, ("head",), [x], lr=0.5, seed=1, consolidate_shift=shift,
                        sample_steps=steps)  # fmt: skip
    spec = cons.node("head").learning
    assert (spec.consolidate_shift, spec.consolidate_every) == (shift, steps)
    idx = [n.name for n in cons.nodes].index("head")
    w0 = plain.node("head").weight
    ref = DeviceLearner(plain, ("head",), window=3)
    ref.learn_sample(xi, 1)
    w1 = ref.network().node("head").weight
    assert not torch.equal(w1, w0)
    expect = consolidate(w1, w0, shift, node_stream_key(spec.seed, steps - 1, idx, STREAM_CW))
    assert not torch.equal(expect, w1)  # the pull moved something
    dev = DeviceLearner(cons, ("head",), window=3)
    dev.learn_sample(xi, 1)
    assert torch.equal(dev.network().node("head").weight, expect)
    # a closed gate sends nothing, but the pull still follows the sample's last step
    dev.learn_sample(xi, 1, 1.0, 0.999999)
    key = node_stream_key(spec.seed, 2 * steps - 1, idx, STREAM_CW)
    assert torch.equal(dev.network().node("head").weight, consolidate(expect, w0, shift, key))
    assert dev.emu.step_count == 2 * steps


def test_pseudo_labels_and_label_scarce_streams_by_hand():
    from pipeline.adapt_loop import unlabel_after

    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    assert step_error(logits, -1) is None  # unlabelled, pseudo-labels off
    assert step_error(logits, -1, pseudo=0.8) is None  # not confident enough
    err = step_error(logits, -1, pseudo=0.7)  # answer 1 with p = 0.75 is the label
    assert torch.allclose(err, torch.tensor([[0.25, -0.25]], dtype=torch.float64))
    sched = stream_schedule(4, replay_every=2, n_buffer=1)  # s0 s1 r0 s2 s3 r0
    y = unlabel_after(sched, torch.tensor([5, 6, 9, 7, 8, 9]), labelled=1)
    assert y.tolist() == [5, -1, 9, -1, -1, 9]
    # two passes over 2 shifted samples (s0 s1 r0 s0 s1 r0): s0 keeps its label each pass
    sched = stream_schedule(2, replay_every=2, n_buffer=1, passes=2)
    y = unlabel_after(sched, torch.tensor([5, 6, 9, 5, 6, 9]), labelled=1)
    assert y.tolist() == [5, -1, 9, 5, -1, 9]
