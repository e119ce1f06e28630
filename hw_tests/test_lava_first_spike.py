"""A PTQ'd first-spike network (fs_fc: two CuLIF hidden layers and a CuLIF output layer,
docs/first_spike.md, "In the pipeline") in the toolkit's Lava processes (``fixed_pt``):
every layer's spikes at every step equal the emulator's, and so does the first-spike
decision read from Lava's output spikes; learning fc1 and out from the first-spike
teaching signal, Lava learns the emulator's weights bit for bit. The same for the
convolutional fs_plane (small sizes), whose recurrent FC layer ``fc`` learns W and W_rec."""

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


def online_fs_signals(qnet, frames, labels, teacher):
    """Batch-1 emulator learning from the first-spike teaching signal of its own output
    spikes (stllr.functional.first_spike_teacher): the out layer's L is the quantized δ,
    that of the layer feeding it (fc1 of fs_fc, fc of a conv net: ``out``'s input in the
    graph) the quantized δ·W_out (the host path of pipeline/learners.py, written here
    without it). Returns (signals {node: [N, T, n]}, the emulator after learning)."""
    from quantization.learning import quantize_signal
    from stllr.functional.first_spike_teacher import teach_init, teach_step, teaching_signal

    emu = IntegerEmulator(qnet, delay=0)
    out = qnet.node("out")
    (feed,) = out.inputs
    hidden = qnet.node(feed)
    sigs = {feed: [], "out": []}
    for i in range(frames.shape[0]):
        emu.reset()
        state = teach_init(1, qnet.num_classes)
        rows = {feed: [], "out": []}
        for t in range(frames.shape[1]):
            outs = emu.forward(torch.as_tensor(frames[i, t])[None])
            state = teach_step(state, outs["out"])
            delta = teaching_signal(state, torch.tensor([labels[i]]), teacher)
            w_out = emu.weights("out")["w"].double() * 2.0**out.weight_exp
            sig = {
                "out": quantize_signal(delta, out.learning),
                feed: quantize_signal(delta @ w_out, hidden.learning),
            }
            emu.apply_signals(sig)
            for k, v in sig.items():
                rows[k].append(v[0].numpy())
        for k in sigs:
            sigs[k].append(np.stack(rows[k]))
    return {k: np.stack(v) for k, v in sigs.items()}, emu


def test_first_spike_learning_in_lava_equals_the_emulator():
    """On-device S-TLLR of a first-spike network (docs/first_spike.md, "On-device
    learning"): the emulator learns fc1 and out from the teaching signal of its own output
    spikes; Lava, fed those signals, emits the same spikes at every step (so the signals
    are its own) and learns the same W bit for bit."""
    from quantization.learning import attach_learning
    from stllr.functional.first_spike_teacher import FSTeacher

    net, x = _net("culif"), _input(batch=3, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["fc1", "out"], [x], lr=0.02, signal_max=1.0, seed=5)
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [3, 40, 20]
    signals, emu = online_fs_signals(qnet, frames, [1, 3, 0], FSTeacher(0.1, 2.5))
    assert (signals["out"] < 0).any() and (signals["out"] > 0).any()
    res = run_lava(qnet, frames, signals, timeout_s=120)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    for name in ("fc1", "out"):
        want = emu.weights(name)["w"].numpy()
        np.testing.assert_array_equal(res.weights(name)["w"], want, err_msg=name)
        np.testing.assert_array_equal(ref.emu.weights(name)["w"].numpy(), want, err_msg=name)
        assert (want != qnet.node(name).weight.numpy()).sum() > 0, name


def test_conv_first_spike_learning_in_lava_equals_the_emulator():
    """fs_plane (small sizes, CuLIF) learning its recurrent FC layer ``fc`` (W and W_rec)
    and ``out`` from the first-spike teaching signal of its own output spikes in the
    emulator; Lava fixed_pt, fed those signals, emits the same outputs at every node and
    step and learns the same W and W_rec bit for bit."""
    from quantization.learning import attach_learning
    from stllr.functional.first_spike_teacher import FSTeacher
    from tests.test_first_spike_conv_deploy import PLANE
    from tests.test_first_spike_conv_deploy import _input as conv_input
    from tests.test_first_spike_conv_deploy import _net as conv_net

    net, x = conv_net("culif", PLANE), conv_input(batch=2, steps=30)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    assert qnet.node("out").inputs == ("fc",) and qnet.node("fc").weight_rec is not None
    qnet = attach_learning(qnet, ["fc", "out"], [x], lr=0.05, signal_max=1.0, seed=5)
    frames = x.transpose(0, 1).to(torch.int64).numpy()  # [2, 30, 2, 12, 12]
    signals, emu = online_fs_signals(qnet, frames, [1, 3], FSTeacher(0.1, 2.5))
    assert (signals["out"] < 0).any() and (signals["out"] > 0).any()
    assert (signals["fc"] != 0).any()
    res = run_lava(qnet, frames, signals, timeout_s=300)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    for name, key, attr in (("fc", "w", "weight"), ("fc", "w_rec", "weight_rec"),
                            ("out", "w", "weight")):  # fmt: skip
        want = emu.weights(name)[key].numpy()
        np.testing.assert_array_equal(res.weights(name)[key], want, err_msg=f"{name} {key}")
        np.testing.assert_array_equal(ref.emu.weights(name)[key].numpy(), want)
        assert (want != getattr(qnet.node(name), attr).numpy()).sum() > 0, (name, key)
