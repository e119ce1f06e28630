"""Learning signals made on device in Lava equal the emulator's online learning bit for bit.

:func:`lava_models.online.run_lava_online` runs the exported network next to an
``ErrorProcess`` (readout membrane vs a one-hot teaching vector from a ``RingBuffer``)
and one feedback process per hidden plastic layer (DFA, sign-DFA, or BP through the
readout's transposed weights, read through a ``RefPort``). The reference is
:func:`quantization.signals.emulate_online` with the same
:class:`~quantization.signals.SignalPlan`. Compared: every node's output at every step,
the error ``e`` and every ``L`` at every step, the learned weights (W, W_rec), the traces
P, Q, R, the last Ψ and the membranes. Each case is non-trivial: the error is non-zero
inside the learning window, and learning moves many weights.

The runs also show the same-step dataflow does not deadlock: the readout's ``ls_in`` is
fed from the error of its own output of the same step (a loop in the graph).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from functools import cache

import numpy as np
import pytest
import torch

from lava_models.online import run_lava_online
from lava_models.runner import LavaRunError
from quantization.learning import attach_learning
from quantization.network import SpikingLayer
from quantization.ptq import PTQConfig, quantize_model
from quantization.signals import (
    SOURCES,
    emulate_online,
    label_schedule,
    make_signal_plan,
    projection_signal,
)
from stllr.errors import UserError
from stllr.models.shd import SHDNetSTLLR
from stllr.models.vgg import VGGSTLLR

LR = 0.5  # large: many weights move within 2 × 20 steps (bit-exactness is the point)


@cache
def _shd(names=("rec", "readout")):
    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5).eval()
    gen = torch.Generator().manual_seed(100)
    x = (torch.rand(20, 4, 40, generator=gen) < 0.3).double() * 2
    # power-of-two scale: its unused top bit is headroom for the large LR's updates; at the
    # exact-threshold scale |m| reaches 127 and rec's weights saturate (20 % change, < 25 %)
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="pow2"))
    return attach_learning(qnet, list(names), [x], lr=LR, seed=7)


def _frames(n, steps=20, shape=(40,), seed=5):
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, steps, *shape, generator=gen) < 0.3).to(torch.int64) * 2).numpy()


def _assert_equal(qnet, ref, res, min_changed=0.25):
    """Outputs, e, L, weights, traces, Ψ and membranes identical; learning did something."""
    for n in qnet.nodes:
        np.testing.assert_array_equal(res.outputs[n.name], ref.outputs[n.name], err_msg=n.name)
    np.testing.assert_array_equal(res.errors, ref.errors, err_msg="e")
    assert set(res.signals) == set(ref.signals)
    for name, sig in ref.signals.items():
        np.testing.assert_array_equal(res.signals[name], sig, err_msg=f"L of {name}")
        assert sig.any(), f"L of {name} is always 0"
    emu = ref.state["emulator"]
    for name, w in ref.weights.items():
        for key in w:
            np.testing.assert_array_equal(res.weights[name][key], w[key], err_msg=f"{name}.{key}")
        n, st, learn = qnet.node(name), res.state[name], emu.state[name].traces
        np.testing.assert_array_equal(st["p"], learn.p[0].numpy(), err_msg=f"{name}.P")
        if isinstance(n, SpikingLayer):
            np.testing.assert_array_equal(st["q"], learn.q[0].numpy(), err_msg=f"{name}.Q")
            np.testing.assert_array_equal(st["psi"], emu.state[name].psi[0].numpy())
            np.testing.assert_array_equal(st["v"], emu.state[name].v[0].numpy())
            if n.weight_rec is not None:
                np.testing.assert_array_equal(st["r"], learn.r[0].numpy(), err_msg=f"{name}.R")
        else:
            np.testing.assert_array_equal(st["v"], emu.state[name].v[0].numpy())
        changed = float((w["w"] != n.weight.numpy()).mean())
        assert changed >= min_changed, f"{name}: only {changed:.0%} of the weights changed"
    np.testing.assert_array_equal(res.predictions, ref.predictions)


@pytest.mark.parametrize("source", SOURCES)
def test_on_device_signals_equal_emulator(source):
    """SHD (recurrent 40 → 32 → 5), rec and readout plastic, 2 samples × 20 steps, the
    label in the last 12 steps of each sample."""
    qnet = _shd()
    frames, labels, window = _frames(2), [1, 3], 12
    plan = make_signal_plan(qnet, source, seed=3)
    ref = emulate_online(qnet, frames, labels, plan=plan, learn_window=window)
    res = run_lava_online(qnet, frames, labels, plan=plan, learn_window=window, timeout_s=120)
    _assert_equal(qnet, ref, res)
    y = label_schedule(labels, 20, 5, window).reshape(40, 5).any(axis=1)
    assert not res.errors[~y].any() and res.errors[y].any()
    assert (res.outputs["rec"].sum(axis=0) > 0).any()
    if source == "bp":  # the transported weights are the learned ones, not the initial
        (p,) = plan.projections
        w0 = qnet.node("readout").weight
        stale = [projection_signal(p, e, w0.numpy()) for e in res.errors]
        differs = sum(not np.array_equal(a, b) for a, b in zip(stale, res.signals["rec"],
                                                                strict=True))  # fmt: skip
        assert differs > 5, f"L with the initial readout weights differs at {differs} steps"


def test_hidden_only_step_offset_three_samples():
    """Only the recurrent layer learns (the error feeds the feedback process alone), sign-DFA,
    a global step that starts at 1000, three samples, the label at every step."""
    qnet = _shd(("rec",))
    frames, labels = _frames(3, steps=12, seed=9), [4, 0, 2]
    plan = make_signal_plan(qnet, "sdfa", seed=11)
    assert not plan.readout_learns
    ref = emulate_online(qnet, frames, labels, plan=plan, step_offset=1000)
    res = run_lava_online(qnet, frames, labels, plan=plan, step_offset=1000)
    _assert_equal(qnet, ref, res, min_changed=0.1)
    assert set(res.signals) == {"rec"}
    np.testing.assert_array_equal(res.outputs["readout"], ref.outputs["readout"])


def test_conv_layers_dfa_equals_emulator():
    """VGG (two conv layers, max pooling, global sum pool, readout): DFA into [C, H, W]
    feedback ports of both conv layers."""
    torch.manual_seed(0)
    model = VGGSTLLR((2, 16, 16), 5, pooling="max", channels=(8, 16), pool_after=(0, 1)).eval()
    gen = torch.Generator().manual_seed(100)
    x = (torch.rand(12, 2, 2, 16, 16, generator=gen) < 0.3).double() * 2
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["conv0", "conv1", "head"], [x], lr=0.05, seed=7)
    frames = x.transpose(0, 1).to(torch.int64).numpy()
    plan = make_signal_plan(qnet, "dfa", seed=3)
    assert [p.out_shape for p in plan.projections] == [(8, 16, 16), (16, 8, 8)]
    ref = emulate_online(qnet, frames, [1, 3], plan=plan, learn_window=8)
    res = run_lava_online(qnet, frames, [1, 3], plan=plan, learn_window=8)
    _assert_equal(qnet, ref, res, min_changed=0.25)


def test_bad_arguments_raise_before_lava():
    qnet = _shd()
    before = set(mp.active_children())
    with pytest.raises(ValueError, match="frames must be"):
        run_lava_online(qnet, np.zeros((2, 5, 41), dtype=np.int64), [0, 1])
    with pytest.raises(ValueError, match="labels must be in"):
        run_lava_online(qnet, _frames(1), [7])
    with pytest.raises(ValueError, match="source must be"):
        run_lava_online(qnet, _frames(1), [0], source="hebb")
    with pytest.raises(UserError, match=r"value 400 is outside the network's input format"):
        run_lava_online(qnet, _frames(1) * 200, [0])  # was run as it was (no clipping)
    with pytest.raises(UserError, match="value 4294967296 does not fit Lava's int32"):
        run_lava_online(qnet, _frames(1) * 2**31, [0])  # was wrapped into int32
    assert set(mp.active_children()) == before


def _children_settle(before: set, seconds: float = 10.0) -> set:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not set(mp.active_children()) - before:
            return set()
        time.sleep(0.05)
    return set(mp.active_children()) - before


def test_failing_feedback_process_is_reported_and_cleaned_up(monkeypatch):
    """A feedback model that raises leaves the plastic layer blocked in ``recv(ls_in)``; the
    runner machinery reports the traceback and leaves no Lava process behind."""
    import lava_models.processes.signal_processes as sp

    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected failure in the DFA process")

    monkeypatch.setattr(sp, "project_signal", broken)
    before = set(mp.active_children())
    t0 = time.monotonic()
    with pytest.raises(LavaRunError, match="injected failure in the DFA process"):
        run_lava_online(_shd(), _frames(1), [2], "dfa", timeout_s=60)
    assert time.monotonic() - t0 < 30
    assert not _children_settle(before)
