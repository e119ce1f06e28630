"""A PTQ'd first-spike ``fs_fc`` with AdLIF hidden layers (two ``AdaptiveLayer`` nodes and a
CuLIF output layer, docs/first_spike.md, "AdLIF hidden layers") in the toolkit's Lava
processes (``fixed_pt``): every layer's spikes at every step equal the emulator's, and so
does the first-spike decision; learning fc1 (AdLIF) and out from the first-spike teaching
signal, Lava learns the emulator's weights bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from hw_tests.parity_references import emulate
from hw_tests.test_lava_first_spike import online_fs_signals
from lava_models.runner import run_lava
from quantization.emulator import IntegerEmulator
from quantization.network import AdaptiveLayer
from quantization.ptq import PTQConfig, quantize_model
from stllr.spike_metrics import spike_decision
from tests.test_first_spike_adlif_deploy import _input, _net


def _assert_outputs_equal(qnet, res, ref):
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
        assert ref.outputs[n.name].any(), n.name  # every node carries spikes


def test_adlif_first_spike_network_in_lava_equals_the_emulator():
    net, x = _net(), _input(batch=4, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    assert [isinstance(n, AdaptiveLayer) for n in qnet.nodes] == [True, True, False]
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [N, T, 20], reset between samples
    res = run_lava(qnet, frames, timeout_s=120)
    ref = emulate(qnet, frames)
    _assert_outputs_equal(qnet, res, ref)
    out = np.asarray(res.outputs["out"]).reshape(4, 40, -1)  # [N, T, K]
    lava_pred = spike_decision(torch.as_tensor(out).transpose(0, 1), torch.full((4,), 40))
    emu_pred = IntegerEmulator(qnet, delay=0).run(x).predictions()
    fired = lava_pred >= 0
    assert bool(fired.any())
    assert lava_pred[fired].tolist() == emu_pred[fired].tolist()


def test_adlif_first_spike_learning_in_lava_equals_the_emulator():
    """fc1 (an AdaptiveLayer, per-neuron gains) and out learn from the teaching signal of
    the emulator's own output spikes; Lava, fed those signals, emits the same spikes at
    every step and learns the same W bit for bit."""
    from quantization.learning import attach_learning
    from stllr.functional.first_spike_teacher import FSTeacher

    net, x = _net(), _input(batch=3, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["fc1", "out"], [x], lr=0.02, signal_max=1.0, seed=5)
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [3, 40, 20]
    signals, emu = online_fs_signals(qnet, frames, [1, 3, 0], FSTeacher(0.1, 2.5))
    assert (signals["fc1"] != 0).any() and (signals["out"] != 0).any()
    res = run_lava(qnet, frames, signals, timeout_s=120)
    ref = emulate(qnet, frames, signals)
    _assert_outputs_equal(qnet, res, ref)
    for name in ("fc1", "out"):
        want = emu.weights(name)["w"].numpy()
        np.testing.assert_array_equal(res.weights(name)["w"], want, err_msg=name)
        np.testing.assert_array_equal(ref.emu.weights(name)["w"].numpy(), want, err_msg=name)
        assert (want != qnet.node(name).weight.numpy()).sum() > 0, name
