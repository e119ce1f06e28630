"""A PTQ'd current-based AdLIF (CuAdLIF) SHD network in the toolkit's Lava processes
(``fixed_pt``): every node's output at every step and the adaptive layer's final state
(u, v, ω, h) equal the emulator's, two samples back to back with the state reset between
them (quantization/nodes/adaptive.py; lava_models/processes: AdaptiveProcess). The float
network in Lava (``floating_pt``, ``cuadlif_step``) equals the torch model: spikes, the
voltage after reset at every step and the logits. On-device S-TLLR of the CuAdLIF layer
(current traces, per-neuron gains) and the readout: Lava ``fixed_pt`` learns the
emulator's weights and traces bit for bit (the float model does not learn a CuAdLIF
layer: the process refuses it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hw_tests.parity_references import emulate, integer_signals, torch_inference
from lava_models.float_exporter import float_network
from lava_models.runner import run_lava
from quantization.learning import attach_learning
from quantization.nodes import AdaptiveLayer
from quantization.ptq import PTQConfig, quantize_model
from tests.test_cuadlif_integer import _float_cuadlif


def test_cuadlif_network_in_lava_equals_the_emulator():
    m = _float_cuadlif("neuron", "soft")
    x = (torch.rand(20, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    node = qnet.nodes[0]
    assert isinstance(node, AdaptiveLayer) and node.current_based and node.bias_mant.any()
    frames = x[:, :2].transpose(0, 1).to(torch.int64).numpy()  # [2, T, 40]
    res = run_lava(qnet, frames, timeout_s=120)
    ref = emulate(qnet, frames)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    s = ref.outputs["rec"]
    assert 0 < s.sum() < s.size
    st = ref.emu.state["rec"]
    for key in ("u", "v", "w", "h"):
        np.testing.assert_array_equal(res.state["rec"][key], getattr(st, key)[0].numpy())
    assert st.w.abs().max() > 0 and st.u.abs().max() > 0


@pytest.mark.parametrize("mode", ["neuron", "layer"])
def test_float_cuadlif_network_in_lava_equals_torch(mode):
    m = _float_cuadlif(mode, "soft")
    x = (torch.rand(2, 20, 40, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    out, mem = torch_inference(m, x)  # [2·20, ...], the state reset between the samples
    res = run_lava(float_network(m), x.double().numpy(), timeout_s=120)
    spikes = res.outputs["rec"].reshape(out["rec"].shape)
    np.testing.assert_array_equal(spikes, out["rec"])
    assert 0 < spikes.sum() < spikes.size
    v = res.per_step["rec"]["v"].reshape(mem["rec"].shape)
    np.testing.assert_allclose(v, mem["rec"], atol=1e-5, rtol=0)
    logits = res.outputs["readout"].reshape(out["readout"].shape)
    np.testing.assert_allclose(logits, out["readout"], atol=1e-5, rtol=0)


def test_cuadlif_on_device_learning_in_lava_equals_the_emulator():
    """Spikes and logits at every step, the learned W and W_rec and the traces P, P^i, Q, R,
    R^i and Ψ after two samples (reset between them) equal the emulator's."""
    m = _float_cuadlif("neuron", "soft")
    x = (torch.rand(15, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec", "readout"], [x], lr=0.05, seed=3)
    node = qnet.node("rec")
    assert node.current_traces and node.learning.gain_frac == 12
    frames = x[:, :2].transpose(0, 1).to(torch.int64).numpy()  # [2, T, 40]
    signals = integer_signals(qnet, ["rec", "readout"], 15, seed=4, shape_prefix=(2,))
    res = run_lava(qnet, frames, signals, timeout_s=120)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    assert ref.outputs["rec"].any()
    emu, st = ref.emu, res.state["rec"]
    for key in ("w", "w_rec"):
        np.testing.assert_array_equal(res.weights("rec")[key], emu.weights("rec")[key].numpy())
    tr = emu.state["rec"]
    for var, want in (("p", tr.traces.p), ("pi", tr.traces.pi), ("q", tr.traces.q),
                      ("r", tr.traces.r), ("ri", tr.traces.ri), ("psi", tr.psi), ("u", tr.u),
                      ("w", tr.w), ("h", tr.h)):  # fmt: skip
        np.testing.assert_array_equal(st[var], want[0].numpy(), err_msg=var)
    assert tr.traces.pi.any()
    changed = int((res.weights("rec")["w"] != node.weight.numpy()).sum())
    assert changed >= node.weight.numel() // 10
