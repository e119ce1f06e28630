"""On-device learning signals (quantization/signals.py): kernels, constants, online learning.

The kernels are checked against naive Python-int references (exact rationals for the
rounding), numpy (one sample, as inside the Lava models) against torch (a batch, as in
the emulator), the constants against their formulas, and :func:`emulate_online`
against a recomputation of its signals from its own recorded outputs. A small task
shows that on-device DFA learns (well above chance).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import numpy as np
import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.learning_formats import LearningSpec, psi_table
from quantization.network import QNetwork, Readout, SpikingLayer
from quantization.ptq import PTQConfig, quantize_model
from quantization.signals import (
    DEFAULT_ERROR_EXP,
    SOURCES,
    ErrorFormat,
    calibrate_target_logit,
    default_target_logit,
    dfa_signal_max,
    emulate_online,
    feedback_matrix,
    label_schedule,
    make_error_format,
    make_signal_plan,
    output_error,
    project_signal,
    projection_signal,
    readout_lsb,
    shift_nearest,
    sign_error,
)
from stllr.feedback import kaiming_uniform_bound
from stllr.models.shd import SHDNetSTLLR

# --- naive references ---------------------------------------------------------------------


def _ref_shift(x: int, k: int) -> int:
    """x / 2^k to nearest, ties upward (exact rationals); k ≤ 0 multiplies."""
    return math.floor(Fraction(x, 1) / Fraction(2) ** k + Fraction(1, 2)) if k > 0 else x * 2**-k


def _sat(x: int) -> int:
    return max(-128, min(127, x))


def _ref_error(o: list[int], y: list[int], fmt: ErrorFormat) -> list[int]:
    if not any(y):
        return [0] * len(o)
    a = 2 ** (fmt.shift - fmt.exp)
    out = []
    for oi, yi in zip(o, y, strict=True):
        v = min(max(oi, 0), a) if fmt.clip else oi
        out.append(_sat(_ref_shift(v - a * yi, fmt.shift)))
    return out


def _ref_project(e: list[int], m: list[list[int]], k: int) -> list[int]:
    n = len(m[0])
    return [_sat(_ref_shift(sum(e[c] * m[c][j] for c in range(len(e))), k)) for j in range(n)]


# --- kernels ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [-2, 0, 1, 3, 9])
def test_shift_nearest_matches_reference(k):
    x = torch.arange(-700, 701, dtype=torch.int64)
    ref = [_ref_shift(int(v), k) for v in x]
    assert shift_nearest(x, k).tolist() == ref
    assert shift_nearest(x.numpy(), k).tolist() == ref


FORMATS = [ErrorFormat(9, -6), ErrorFormat(10, -7), ErrorFormat(9, -6, clip=False),
           ErrorFormat(-1, -6), ErrorFormat(0, -3, clip=False)]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_output_error_matches_reference_numpy_equals_torch(fmt):
    gen = torch.Generator().manual_seed(0)
    a = fmt.target
    o = torch.randint(-3 * a, 3 * a, (64, 5), generator=gen)
    o[:8] = torch.tensor([0, a, -1, a + 1, a // 2 + 1])  # the clip edges
    y = torch.nn.functional.one_hot(torch.randint(0, 5, (64,), generator=gen), 5)
    y[::7] = 0  # no label at these steps: no error
    e = output_error(o, y, fmt)
    assert e.dtype == torch.int64 and int(e.abs().max()) <= 128
    for i in range(64):
        ref = _ref_error(o[i].tolist(), y[i].tolist(), fmt)
        assert e[i].tolist() == ref, i
        assert output_error(o[i].numpy(), y[i].numpy(), fmt).tolist() == ref
    assert not e[::7].any()


def test_output_error_signs_follow_softmax_minus_onehot():
    """Clipped: wrong classes ≥ 0, the target ≤ 0 (the signs of softmax − onehot); a
    satisfied output (target ≥ A, others ≤ 0) gives exactly 0; float value ≈
    clip(o/A, 0, 1) − onehot within half an LSB."""
    fmt = ErrorFormat(shift=9, exp=-6)
    a = fmt.target
    gen = torch.Generator().manual_seed(1)
    o = torch.randint(-2 * a, 2 * a, (500, 4), generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (500,), generator=gen), 4)
    e = output_error(o, y, fmt)
    assert (e[y == 0] >= 0).all() and (e[y == 1] <= 0).all()
    want = (o.double() / a).clamp(0, 1) - y
    assert float((e * 2.0**fmt.exp - want).abs().max()) <= 2.0 ** (fmt.exp - 1)
    sat = torch.tensor([[a, -5, 0, -a]])
    assert not output_error(sat, torch.tensor([[1, 0, 0, 0]]), fmt).any()


@pytest.mark.parametrize("shift", [-1, 0, 4, 8, 13])
def test_project_signal_matches_reference_numpy_equals_torch(shift):
    gen = torch.Generator().manual_seed(shift + 10)
    m = torch.randint(-128, 128, (5, 12), generator=gen)
    e = torch.randint(-128, 128, (16, 5), generator=gen)
    e[0] = 0
    out = project_signal(e, m, shift)
    for i in range(16):
        ref = _ref_project(e[i].tolist(), m.tolist(), shift)
        assert out[i].tolist() == ref
        assert project_signal(e[i].numpy(), m.numpy(), shift).tolist() == ref
    # sign-DFA projects sign(e); a conv layer's [C, H, W] output shape
    s = sign_error(e)
    assert set(s.unique().tolist()) <= {-1, 0, 1}
    shaped = project_signal(s, m, shift, (3, 2, 2))
    assert shaped.shape == (16, 3, 2, 2)
    assert shaped.reshape(16, -1).tolist() == [
        _ref_project(s[i].tolist(), m.tolist(), shift) for i in range(16)
    ]
    np.testing.assert_array_equal(
        project_signal(sign_error(e[3].numpy()), m.numpy(), shift, (3, 2, 2)), shaped[3].numpy()
    )


def test_feedback_matrix_seeded_kaiming_int8():
    b, b_exp = feedback_matrix(5, (32,), seed=3, stream=0)
    b2, _ = feedback_matrix(5, (32,), seed=3, stream=0)
    assert torch.equal(b, b2)
    assert not torch.equal(b, feedback_matrix(5, (32,), seed=3, stream=1)[0])
    assert not torch.equal(b, feedback_matrix(5, (32,), seed=4, stream=0)[0])
    bound = kaiming_uniform_bound(32)
    assert b.shape == (5, 32) and b.dtype == torch.int64
    assert int(b.abs().max()) <= 127
    assert float(b.abs().max()) * 2.0**b_exp <= bound + 2.0 ** (b_exp - 1)
    assert round(bound / 2.0**b_exp) <= 127 < round(bound / 2.0 ** (b_exp - 1))  # 8-bit rule
    big, big_exp = feedback_matrix(10, (8, 16, 16), seed=0)
    assert big.shape == (10, 2048)
    assert abs(float(big.double().mean())) < 2.0  # centred (in LSBs)
    top = kaiming_uniform_bound(2048) / 2.0**big_exp  # 110.9: the bound in LSBs
    assert 0.98 * top < float(big.abs().max()) <= round(top)  # uniform up to the bound
    assert dfa_signal_max((32,)) == pytest.approx(2 * bound)


# --- constants ------------------------------------------------------------------------------


@cache
def _shd():
    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5).eval()
    gen = torch.Generator().manual_seed(100)
    x = (torch.rand(20, 4, 40, generator=gen) < 0.3).double() * 2
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
    return qnet, x


def _plastic(names=("rec", "readout"), lr=0.05, signal_max=1.0):
    qnet, x = _shd()
    return attach_learning(qnet, list(names), [x], lr=lr, seed=7, signal_max=signal_max), x


@pytest.mark.parametrize("source", SOURCES)
def test_plan_shifts_follow_the_scales(source):
    qnet, _ = _plastic()
    plan = make_signal_plan(qnet, source, seed=3, target_logit=5.0)
    ro, rec = qnet.node("readout"), qnet.node("rec")
    assert plan.readout == "readout" and plan.readout_learns
    assert plan.error.exp == ro.learning.l_exp
    a_logit = plan.error.target * readout_lsb(qnet)
    assert 5.0 / math.sqrt(2) <= a_logit <= 5.0 * math.sqrt(2)
    (p,) = plan.projections
    assert p.node == "rec" and p.out_shape == (32,) and p.kind == source
    if source == "bp":
        assert p.matrix is None and p.transport
        assert p.shift == rec.learning.l_exp - ro.weight_exp - plan.error.exp
    else:
        b, b_exp = feedback_matrix(5, (32,), 3, 0)
        assert torch.equal(p.matrix, b) and p.b_exp == b_exp
        e_exp = 0 if source == "sdfa" else plan.error.exp
        assert p.shift == rec.learning.l_exp - b_exp - e_exp
    # the integer L approximates the float projection within rounding + B's quantization
    e = torch.tensor([[20, -64, 3, 0, 64]])
    w = ro.weight
    got = projection_signal(p, e, w)[0].double() * 2.0**rec.learning.l_exp
    ef = e.double() * 2.0**plan.error.exp
    m = w.double() * 2.0**ro.weight_exp if source == "bp" else p.matrix.double() * 2.0**p.b_exp
    want = ((torch.sign(ef) if source == "sdfa" else ef) @ m)[0].clamp(
        -128 * 2.0**rec.learning.l_exp, 127 * 2.0**rec.learning.l_exp
    )
    assert float((got - want).abs().max()) <= 2.0 ** (rec.learning.l_exp - 1) + 1e-12


def test_plan_defaults_and_errors():
    qnet, x = _plastic(names=("rec",))
    plan = make_signal_plan(qnet, "dfa")
    assert not plan.readout_learns and plan.error.exp == DEFAULT_ERROR_EXP == -6
    target = plan.error.target * readout_lsb(qnet)
    assert math.log2(target) == pytest.approx(math.log2(default_target_logit(5)), abs=0.5)
    cal = calibrate_target_logit(qnet, [x])  # the 90th percentile of the top logit
    a_cal = make_error_format(qnet, cal).target * readout_lsb(qnet)
    assert cal / math.sqrt(2) <= a_cal <= cal * math.sqrt(2)
    with pytest.raises(ValueError, match="source must be"):
        make_signal_plan(qnet, "feedback")
    with pytest.raises(ValueError, match="not a plastic spiking layer"):
        make_signal_plan(qnet, "dfa", hidden=["readout"])
    with pytest.raises(ValueError, match="positive"):
        make_error_format(qnet, -1.0)
    no_readout = QNetwork(qnet.nodes[:1], qnet.input_shape, qnet.num_classes)
    with pytest.raises(ValueError, match="Readout as the last node"):
        make_signal_plan(no_readout, "dfa")


def _two_hidden() -> QNetwork:
    """input(6) → fc0(8) → fc1(8) → readout(3), both hidden layers plastic."""
    gen = torch.Generator().manual_seed(0)
    spec = LearningSpec(lam_pre=3500, lam_post=2048, a_pre=64, a_post=-32, a_frac=6, p_frac=3,
                        q_frac=5, l_exp=-6, lr_mant=90, lr_shift=14)  # fmt: skip

    def layer(name, inp, n_in):
        w = torch.randint(-60, 61, (8, n_in), generator=gen)
        return SpikingLayer(name, (inp,), "dense", w, -6, 300, 40, "soft",
                            psi=psi_table("a", 2.0**-12), learning=spec)  # fmt: skip

    ro = Readout("readout", ("fc1",), torch.randint(-60, 61, (3, 8), generator=gen), -6, 4096)
    return QNetwork((layer("fc0", "input", 6), layer("fc1", "fc0", 8), ro), (6,), 3)


def test_bp_reaches_only_the_readout_input_layer():
    qnet = _two_hidden()
    plan = make_signal_plan(qnet, "dfa")
    assert [p.node for p in plan.projections] == ["fc0", "fc1"]
    assert not torch.equal(plan.projections[0].matrix[:, :8], plan.projections[1].matrix)
    assert [p.node for p in make_signal_plan(qnet, "bp", hidden=["fc1"]).projections] == ["fc1"]
    with pytest.raises(ValueError, match="only the readout's input layer 'fc1'"):
        make_signal_plan(qnet, "bp")


def test_label_schedule():
    y = label_schedule([2, 0], 5, 3, learn_window=2)
    assert y.shape == (2, 5, 3)
    assert not y[:, :3].any()
    assert (y[0, 3:, 2] == 1).all() and (y[1, 3:, 0] == 1).all() and y.sum() == 4
    assert label_schedule([1], 4, 3).sum() == 4
    assert not label_schedule([1], 4, 3, learn_window=0).any()
    with pytest.raises(ValueError, match="labels"):
        label_schedule([3], 4, 3)
    with pytest.raises(ValueError, match="learn_window"):
        label_schedule([1], 4, 3, learn_window=5)


# --- online learning in the emulator ----------------------------------------------------------


def _frames(n, steps=20, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, steps, 40, generator=gen) < 0.3).to(torch.int64) * 2


@pytest.mark.parametrize("source", SOURCES)
def test_emulate_online_recomputes_its_signals(source):
    """The recorded e and L equal the numpy kernels (the Lava models' path) applied to
    the recorded readout membrane and, for BP, to the readout's weights at that step;
    nothing learns outside the window; the weights change."""
    qnet, _ = _plastic()
    frames, labels, window = _frames(2), [1, 3], 12
    res = emulate_online(qnet, frames, labels, source, learn_window=window, seed=3)
    plan = res.plan
    y = label_schedule(labels, 20, 5, window).reshape(40, 5)
    o = res.outputs["readout"]
    assert o.shape == (40, 5) and res.errors.shape == (40, 5)
    for t in range(40):
        e = output_error(o[t], y[t], plan.error)
        np.testing.assert_array_equal(res.errors[t], e)
        np.testing.assert_array_equal(res.signals["readout"][t], e)
    in_window = y.any(axis=1)
    assert not res.errors[~in_window].any() and not res.signals["rec"][~in_window].any()
    assert res.errors[in_window].any() and res.signals["rec"][in_window].any()
    if source != "bp":
        (p,) = plan.projections
        for t in range(40):
            np.testing.assert_array_equal(res.signals["rec"][t],
                                          projection_signal(p, res.errors[t]))  # fmt: skip
    for name in ("rec", "readout"):
        changed = (res.weights[name]["w"] != qnet.node(name).weight.numpy()).mean()
        assert changed > 0.05, (name, changed)
    assert res.predictions.shape == (2,)
    assert set(res.rail_fraction()) == {"rec", "readout"}


def test_bp_uses_the_readout_weights_of_the_step():
    """BP reads the readout's current (learned) weights: replaying the run with a copy of
    the readout's weights that follows its learning reproduces L, the initial weights
    do not."""
    qnet, _ = _plastic()
    frames, labels = _frames(2, seed=8), [4, 0]
    res = emulate_online(qnet, frames, labels, "bp", seed=3)
    (p,) = res.plan.projections
    # the readout's weights before each step, from a second run that records them
    emu = IntegerEmulator(qnet)
    seen, stale = 0, 0
    for i in range(2):
        emu.reset()
        for t in range(20):
            outs = emu.forward(frames[i, t][None])
            w = emu.weights("readout")["w"].clone()
            y = torch.as_tensor(label_schedule([labels[i]], 20, 5)[0, t])[None]
            sig, e = res.plan.signals(outs, y, w)
            k = i * 20 + t
            np.testing.assert_array_equal(sig["rec"][0].numpy(), res.signals["rec"][k])
            if e.any():
                old = projection_signal(p, e, qnet.node("readout").weight)[0].numpy()
                stale += int(not np.array_equal(old, res.signals["rec"][k]))
                seen += 1
            emu.apply_signals(sig)
    assert seen > 10 and stale > 0.8 * seen, f"initial weights give L at {seen - stale} of {seen}"


def test_step_offset_and_continued_emulator():
    """Two calls on one emulator equal one call on all samples (weights and step counter
    carry over); a different step offset changes the stochastic rounding."""
    qnet, _ = _plastic()
    frames = _frames(3, seed=2)
    whole = emulate_online(qnet, frames, [0, 1, 2], "dfa", seed=1, step_offset=50)
    first = emulate_online(qnet, frames[:2], [0, 1], "dfa", seed=1, step_offset=50)
    rest = emulate_online(qnet, frames[2:], [2], "dfa", seed=1,
                          emulator=first.state["emulator"])  # fmt: skip
    np.testing.assert_array_equal(whole.weights["rec"]["w"], rest.weights["rec"]["w"])
    np.testing.assert_array_equal(whole.outputs["readout"][40:], rest.outputs["readout"])
    other = emulate_online(qnet, frames, [0, 1, 2], "dfa", seed=1, step_offset=51)
    assert not np.array_equal(whole.weights["rec"]["w"], other.weights["rec"]["w"])


def test_emulate_online_rejects_bad_input():
    qnet, _ = _plastic()
    with pytest.raises(ValueError, match="frames must be"):
        emulate_online(qnet, torch.zeros(2, 20, 41, dtype=torch.int64), [0, 1])
    with pytest.raises(ValueError, match="integers"):
        emulate_online(qnet, torch.full((1, 3, 40), 0.5), [0])
    with pytest.raises(ValueError, match="labels for"):
        emulate_online(qnet, _frames(2), [0])


# --- it learns ------------------------------------------------------------------------------


def _task(n, gen, steps=20, classes=5, inputs=40):
    """Class c raises the firing rate of inputs 8c … 8c+7 from 0.05 to 0.4."""
    y = torch.randint(0, classes, (n,), generator=gen)
    rate = torch.full((n, steps, inputs), 0.05)
    for i, c in enumerate(y.tolist()):
        rate[i, :, 8 * c : 8 * c + 8] = 0.4
    return (torch.rand(n, steps, inputs, generator=gen) < rate).to(torch.int64), y


def _accuracy(qnet, x, y) -> float:
    res = IntegerEmulator(qnet).run(x.transpose(0, 1).double())
    return float((res.predictions() == y).double().mean())


def test_on_device_dfa_learns_a_separable_task():
    """DFA on the recurrent layer plus the error into the readout, everything made on
    device (integer error, int8 B), one sample at a time: test accuracy goes from chance
    (5 classes) to > 0.8 after 100 training samples."""
    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5).eval()
    gen = torch.Generator().manual_seed(1)
    xc, _ = _task(16, gen)
    calib = [xc.transpose(0, 1).double()]
    qnet, _ = quantize_model(model, calib, PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec", "readout"], calib, lr=0.01, seed=7)
    x_test, y_test = _task(200, gen)
    x_train, y_train = _task(100, gen)
    before = _accuracy(qnet, x_test, y_test)
    res = emulate_online(qnet, x_train, y_train, "dfa", learn_window=10, seed=3)
    learned = res.state["emulator"].to_qnetwork()
    after = _accuracy(learned, x_test, y_test)
    assert before < 0.35 and after > 0.8, (before, after)
    # the learned network keeps the plastic specs, so it can continue learning on device
    assert learned.node("rec").learning == qnet.node("rec").learning
