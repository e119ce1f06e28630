"""Synaptic delays in Lava (``fixed_pt``) equal the emulator bit for bit.

A two-layer network, the first with per-neuron (axonal) delays into a current-based
LIF (du < 4095), the second with per-synapse delays into the toolkit's LIF:

* on Lava's built-in ``DelayDense`` + ``LIF`` (:func:`lava_models.builtin.run_builtin`)
  against ``IntegerEmulator(delay=1)`` (Lava's Dense timing): spikes, ``u`` and ``v`` of
  every layer at every step;
* on the toolkit's own processes (:func:`lava_models.runner.run_lava`, which keep the
  node's delay line in the process and reset it between samples) against the emulator
  with its default timing.
"""

from __future__ import annotations

import numpy as np
import torch

from hw_tests.parity_references import emulate, emulate_delay1
from lava_models.builtin import run_builtin
from lava_models.runner import run_lava
from quantization.network import InputFormat, QNetwork, SpikingLayer


def delayed_net() -> QNetwork:
    rng = np.random.default_rng(11)
    w1, w2 = rng.integers(-40, 60, (12, 9)), rng.integers(-50, 70, (6, 12))
    axonal = np.repeat(rng.integers(0, 5, (12, 1)), 9, axis=1)
    per_synapse = rng.integers(0, 4, (6, 12))
    a = SpikingLayer("a", ("input",), "dense", torch.as_tensor(w1), 0, 300, 90, "hard",
                     delay=torch.as_tensor(axonal), du=2048)  # fmt: skip
    b = SpikingLayer("b", ("a",), "dense", torch.as_tensor(w2), 0, 500, 70, "hard",
                     bias_mant=torch.as_tensor(rng.integers(0, 3, 6)), bias_exp=6,
                     delay=torch.as_tensor(per_synapse))  # fmt: skip
    return QNetwork((a, b), (9,), 6, InputFormat(0, 0, 1), {})


def _spikes(shape, seed):
    return (np.random.default_rng(seed).random(shape) < 0.35).astype(np.int64)


def test_delay_dense_builtin_equals_the_emulator():
    qnet = delayed_net()
    x = _spikes((40, 9), 0)
    got, ref = run_builtin(qnet, x, timeout_s=120), emulate_delay1(qnet, x)
    for name in ("a", "b"):
        for key in ("s", "u", "v"):
            np.testing.assert_array_equal(got[name][key], ref[name][key], err_msg=f"{name}.{key}")
        assert 0 < ref[name]["s"].sum() < ref[name]["s"].size, name


def test_toolkit_processes_keep_and_reset_the_delay_line():
    qnet = delayed_net()
    frames = _spikes((2, 25, 9), 1)  # two samples: the delay line starts empty in each
    res, ref = run_lava(qnet, frames, timeout_s=120), emulate(qnet, frames)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
        assert ref.outputs[n.name].sum() > 0
