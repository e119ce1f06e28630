"""A PTQ'd current-based (CuLIF) SHD network in the toolkit's Lava processes (``fixed_pt``):
every node's output at every step equals the emulator's, with the node's own one-step
synaptic delay kept by its process across steps and reset between samples
(quantization/nodes/spiking.py; docs/neurons.md §1)."""

from __future__ import annotations

import numpy as np
import torch

from hw_tests.parity_references import emulate
from lava_models.runner import run_lava
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
