"""A PTQ'd first-spike network (fs_fc: two CuLIF hidden layers and a CuLIF output layer,
docs/first_spike.md, "In the pipeline") in the toolkit's Lava processes (``fixed_pt``):
every layer's spikes at every step equal the emulator's, and so does the first-spike
decision read from Lava's output spikes."""

from __future__ import annotations

import numpy as np
import torch

from hw_tests.parity_references import emulate
from lava_models.runner import run_lava
from quantization.emulator import IntegerEmulator
from quantization.ptq import PTQConfig, quantize_model
from stllr.spike_metrics import spike_decision
from tests.test_first_spike_deploy import _input, _net


def test_first_spike_network_in_lava_equals_the_emulator():
    net, x = _net("culif"), _input(batch=4, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    assert [n.du < 4095 for n in qnet.nodes] == [True, True, True]
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [N, T, 20], reset between samples
    res = run_lava(qnet, frames, timeout_s=120)
    ref = emulate(qnet, frames)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    out = np.asarray(res.outputs["out"]).reshape(4, 40, -1)  # [N, T, K]
    assert 0 < out.sum() < out.size
    lengths = torch.full((4,), 40)
    lava_pred = spike_decision(torch.as_tensor(out).transpose(0, 1), lengths)
    emu_pred = IntegerEmulator(qnet).run(x).predictions()
    fired = lava_pred >= 0
    assert bool(fired.any())
    assert lava_pred[fired].tolist() == emu_pred[fired].tolist()


def test_conv_first_spike_network_in_lava_equals_the_emulator():
    """fs_plane (CuLIF: conv layers, max pooling, the neurons after each pooling as
    depthwise 1×1 layers, Flatten, the recurrent FC layer and the spiking output; small
    sizes) in Lava fixed_pt: every node's output at every step equals the emulator's, and
    so does the FS decision read from Lava's output spikes."""
    from tests.test_first_spike_conv_deploy import PLANE
    from tests.test_first_spike_conv_deploy import _input as conv_input
    from tests.test_first_spike_conv_deploy import _net as conv_net

    net, x = conv_net("culif", PLANE), conv_input(batch=3, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    assert "flat" in [n.name for n in qnet.nodes]
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [N, T, 2, 12, 12]
    res = run_lava(qnet, frames, timeout_s=300)
    ref = emulate(qnet, frames)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
        assert ref.outputs[n.name].any(), n.name  # every node carries spikes
    out = np.asarray(res.outputs["out"]).reshape(3, 40, -1)
    lava_pred = spike_decision(torch.as_tensor(out).transpose(0, 1), torch.full((3,), 40))
    emu_pred = IntegerEmulator(qnet).run(x).predictions()
    fired = lava_pred >= 0
    assert bool(fired.any())
    assert lava_pred[fired].tolist() == emu_pred[fired].tolist()
