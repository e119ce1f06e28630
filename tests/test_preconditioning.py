"""The readout's per-input step sizes (quantization.preconditioning) and the host's
stream view, each against an independent reference: hand-computed shifts, the float
update ``−acc·lr/2^(lr_shift + s_i)`` written as loops, the unpreconditioned rule, the
stacked stream of :func:`pipeline.adapt_loop.interleave`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.adapt_loop import StreamFrames, interleave
from pipeline.adapt_mechanisms import Mechanisms, StreamItem, stream_schedule
from quantization.kernels import stllr_weight_step
from quantization.learning_formats import LearningSpec
from quantization.nodes.spiking import dense_correlate
from quantization.preconditioning import input_shifts, scale_columns
from quantization.trace_energy import input_energy
from stllr.errors import UserError


def test_input_shifts_by_hand():
    # mean energy 23/5 = 4.6: log2(4/4.6) = −0.2 → 0, log2(1/4.6) = −2.2 → −2, 0 → −span,
    # log2(16/4.6) = 1.8 → 2, log2(2/4.6) = −1.2 → −1
    e = torch.tensor([4.0, 1.0, 0.0, 16.0, 2.0])
    assert input_shifts(e, 3) == (0, -2, -3, 2, -1)
    assert input_shifts(e, 1) == (0, -1, -1, 1, -1)
    assert input_shifts(e, 0) == ()
    assert input_shifts(torch.zeros(3), 2) == (0, 0, 0)
    with pytest.raises(ValueError):
        input_shifts(e, -1)


def _spec(lr_shift: int, pre_shift=()) -> LearningSpec:
    return LearningSpec(lam_pre=4055, lam_post=0, a_pre=64, a_post=0, a_frac=6, p_frac=3,
                        q_frac=0, l_exp=-7, lr_mant=77, lr_shift=lr_shift, w_min=-128,
                        w_max=127, pre_shift=tuple(pre_shift))  # fmt: skip


def test_preconditioned_step_is_the_float_update_per_column():
    """Each weight's integer step is the float value ``v = −a_pre·Σ_b L_k P_i·lr_mant /
    2^(lr_shift + s_i)`` (loops) rounded down or up, unbiased over the random keys, and
    with all shifts 0 it is the plain rule bit for bit."""
    gen = torch.Generator().manual_seed(4)
    K, n, B = 3, 5, 2
    w = torch.randint(-20, 20, (K, n), generator=gen)
    g = torch.randint(-30, 30, (B, K), generator=gen)
    p = torch.randint(0, 127, (B, n), generator=gen)
    shifts = (0, -2, 1, 3, -1)
    spec = _spec(14, shifts)
    ref = torch.zeros(K, n, dtype=torch.float64)
    for k in range(K):
        for i in range(n):
            acc = spec.a_pre * sum(int(g[b, k]) * int(p[b, i]) for b in range(B))
            ref[k, i] = -acc * spec.lr_mant / 2.0 ** (spec.lr_shift + shifts[i])
    steps = []
    for key in range(300):
        new, dw = stllr_weight_step(w, g, None, p, None, spec, key, dense_correlate, shifts)
        assert torch.equal(new, (w + dw).clamp(-128, 127))
        steps.append(dw.double())
    steps = torch.stack(steps)
    assert bool((steps >= torch.floor(ref)).all()) and bool((steps <= torch.ceil(ref)).all())
    assert torch.allclose(steps.mean(0), ref, atol=0.1)
    assert ref.abs().max() > 1.0  # the shifts matter at whole-LSB scale here
    plain = stllr_weight_step(w, g, None, p, None, spec, 9, dense_correlate)
    zero = stllr_weight_step(w, g, None, p, None, spec, 9, dense_correlate, (0,) * n)
    assert torch.equal(plain[0], zero[0])


def test_scale_columns_numpy_torch_and_conv_agree():
    acc = torch.tensor([[3, -1, 2], [0, 5, -4]])
    got, c = scale_columns(acc, (1, -1, 0))
    assert c == 1 and got.tolist() == [[3, -4, 4], [0, 20, -8]]  # × 2^(1 − s_i) = 1, 4, 2
    got_np, _ = scale_columns(acc.numpy(), (1, -1, 0))
    assert np.array_equal(got_np, got.numpy())
    conv, _ = scale_columns(acc.reshape(2, 3, 1, 1), (1, -1, 0))
    assert conv.reshape(2, 3).tolist() == got.tolist()
    with pytest.raises(ValueError):
        scale_columns(acc, (0, 0))


def _small():
    from quantization.ptq import quantize_model
    from stllr.models.vgg import VGGSTLLR

    torch.manual_seed(0)
    model = VGGSTLLR((2, 8, 8), 3, channels=(4, 4), pool_after=(0,)).eval()
    x = (torch.rand(6, 4, 2, 8, 8) < 0.3).float()
    return model, quantize_model(model, [x])[0], x


def test_make_plastic_shifts_from_the_traces_energy_and_the_device_uses_them():
    """``precondition = R``: the readout's shifts are :func:`input_shifts` of the energy of
    its pre-traces over the window (recomputed here from the emulator's traces by a loop),
    and the device learner then learns other weights than without them."""
    from pipeline.learners import DeviceLearner, make_plastic
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import quantize_input

    _, qnet, x = _small()
    plain = make_plastic(qnet, ("head",), [x], lr=0.5, seed=1)
    pre = make_plastic(qnet, ("head",), [x], lr=0.5, seed=1, precondition=2, window=3)
    shifts = pre.node("head").learning.pre_shift
    # energy by hand: Σ over the last 3 steps and the 4 samples of P², / 12
    emu = IntegerEmulator(plain)
    xi = quantize_input(x, qnet.input_format)
    lsb = 2.0 ** -plain.node("head").learning.p_frac
    tot = 0.0
    for t in range(xi.shape[0]):
        emu.step(xi[t])
        if t >= xi.shape[0] - 3:
            p = emu.state["head"].traces.p.double() * lsb
            tot = tot + (p * p).sum(dim=0)
    energy = tot / (3 * xi.shape[1])
    assert torch.allclose(input_energy(plain, "head", [x], 3), energy)
    mean = float(energy.mean())
    expect = tuple(
        -2 if v == 0 else max(-2, min(2, round(math.log2(v / mean)))) for v in energy.tolist()
    )
    assert shifts == expect and len(set(shifts)) > 1
    a, b = DeviceLearner(plain, ("head",), 3), DeviceLearner(pre, ("head",), 3)
    xs = quantize_input(x[:, :1], qnet.input_format)
    a.learn_sample(xs, 1)
    b.learn_sample(xs, 1)
    assert not torch.equal(a.network().node("head").weight, b.network().node("head").weight)


def test_float_learner_steps_each_input_by_its_shift():
    """One window step: the preconditioned float step is the plain one times 2^−s_i per
    input column."""
    from pipeline.float_learner import FloatLearner

    model, _, x = _small()
    plain = FloatLearner(model, ("head",), lr=0.05, window=1)
    w0 = plain.plastic_copy()[0]
    n = w0.shape[1]
    shifts = tuple((i % 5) - 2 for i in range(n))
    pre = FloatLearner(model, ("head",), lr=0.05, window=1, pre_shift=shifts)
    plain.learn_sample(x[:, :1], 2)
    pre.learn_sample(x[:, :1], 2)
    d_plain = plain.plastic_copy()[0] - w0
    d_pre = pre.plastic_copy()[0] - w0
    assert d_plain.abs().max() > 0
    gain = torch.tensor([2.0**-s for s in shifts], dtype=d_plain.dtype)
    assert torch.allclose(d_pre, d_plain * gain, atol=1e-7)


def test_precondition_setting_is_checked():
    Mechanisms(precondition=3).check()
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(UserError, match="f.toml: adaptation.precondition must be"):
            Mechanisms(precondition=bad).check("f.toml")


def test_stream_frames_equal_the_stacked_stream():
    """The view gives, column by column and stacked, what :func:`interleave` stacks, over
    two passes with replay; the mapped (quantized) view too."""
    gen = torch.Generator().manual_seed(1)
    xs = torch.rand(3, 4, 2, generator=gen)
    xr = torch.rand(5, 2, 2, generator=gen)
    ys, yr = torch.tensor([1, 2, 3, 4]), torch.tensor([7, 8])
    sched = stream_schedule(4, 3, 2, passes=2)
    ref, _ = interleave(sched, xs, ys, xr, yr)
    view = StreamFrames(sched, xs, xr)
    assert view.shape == ref.shape
    assert torch.equal(view.materialize(), ref)
    for j in range(len(sched)):
        assert torch.equal(view[:, j : j + 1], ref[:, j : j + 1])
        assert torch.equal(view[:, j], ref[:, j])
    q = view.map(lambda f: (f * 10).round().to(torch.int8))
    assert torch.equal(q.materialize(), (ref * 10).round().to(torch.int8))
    with pytest.raises(ValueError, match="replay buffer"):
        StreamFrames([StreamItem("replay", 0)], xs)


def test_compact_int_keeps_the_values():
    from pipeline.adapt_device import compact_int

    small = torch.tensor([0, 5, 127])
    assert compact_int(small).dtype == torch.int8
    assert compact_int(torch.tensor([-300, 2])).dtype == torch.int16
    big = torch.tensor([1 << 40])
    assert compact_int(big).dtype == torch.int64
    assert torch.equal(compact_int(small).long(), small)
