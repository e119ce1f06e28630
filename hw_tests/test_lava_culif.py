"""A PTQ'd current-based (CuLIF) SHD network in the toolkit's Lava processes (``fixed_pt``):
every node's output at every step equals the emulator's, with the node's own one-step
synaptic delay kept by its process across steps and reset between samples
(quantization/nodes/spiking.py; docs/neurons.md §1)."""

from __future__ import annotations

import numpy as np
import torch

from hw_tests.parity_references import emulate, integer_signals
from lava_models.runner import run_lava
from quantization.learning import attach_learning
from quantization.ptq import PTQConfig, quantize_model
from tests.test_culif_integer import _float_model


def test_culif_network_in_lava_equals_the_emulator():
    m = _float_model()
    x = (torch.rand(12, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.25).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    assert qnet.nodes[0].du < 4095 and qnet.nodes[0].bias_mant.any()
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [N, T, 40], reset between samples
    res = run_lava(qnet, frames, timeout_s=120)
    ref = emulate(qnet, frames)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    s = ref.outputs["rec"]
    assert 0 < s.sum() < s.size
    np.testing.assert_array_equal(res.state["rec"]["u"], ref.emu.state["rec"].u[0].numpy())


def test_culif_on_device_learning_in_lava_equals_the_emulator():
    """On-device S-TLLR of the current-based layer (and the readout) in the toolkit's Lava
    processes: spikes and logits at every step, the learned W and W_rec, and the traces
    P, P^i, Q, R, R^i after two samples (reset between them) equal the emulator's."""
    m = _float_model()
    x = (torch.rand(15, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.25).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec", "readout"], [x], lr=0.05, seed=3)
    assert qnet.node("rec").learning.pi_frac is not None
    frames = x[:, :2].transpose(0, 1).to(torch.int64).numpy()  # [2, T, 40]
    signals = integer_signals(qnet, ["rec", "readout"], 15, seed=4, shape_prefix=(2,))
    res = run_lava(qnet, frames, signals, timeout_s=120)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    emu, st = ref.emu, res.state["rec"]
    for key in ("w", "w_rec"):
        np.testing.assert_array_equal(res.weights("rec")[key], emu.weights("rec")[key].numpy())
    tr = emu.state["rec"].traces
    for var, want in (("p", tr.p), ("pi", tr.pi), ("q", tr.q), ("r", tr.r), ("ri", tr.ri)):
        np.testing.assert_array_equal(st[var], want[0].numpy(), err_msg=var)
    assert tr.pi.any() and tr.ri.any()
    changed = int((res.weights("rec")["w"] != qnet.node("rec").weight.numpy()).sum())
    assert changed >= qnet.node("rec").weight.numel() // 4
