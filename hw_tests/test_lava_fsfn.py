"""FSFN, the fully spiking optical-flow network, in Lava ``fixed_pt``: bit-exact with the
emulator (docs/flow.md, "Deployment").

A narrow FSFN on a 16 × 16 crop (widths (2, 4, 4, 4) / (2, 2, 2)), quantized with 8-bit
PTQ: 26 nodes — conv and transposed-conv spiking layers, residual ``Add``, the 1×1-conv
flow heads (graded ``Readout`` maps, ``a_shift ≠ 6``), the ×2 bilinear up-sampling
(``Upsample2x`` with a rounding shift) and the two-input ``Concat`` nodes that put the
up-sampled flow beside spikes. The finest head learns on device from integer signals
(the 1×1-conv readout's S-TLLR step). Every node's output at every step and the learned
head weights are compared.

``floating_pt``: the float graph of the same FSFN (float64) against the torch model: the
spikes of the first encoder and the last decoder layer identical at every step, the four
flows within 1e-5 at every step (a run without learning); then, in a second run, the
finest head learning online from float signals L: its weights after every step's
``W ← W − lr·Σ_pixels L ⊗ P`` (P = Σ_s γ_o^(t−s) h[s], the head's input trace, taken from
the torch model's head input) within 1e-5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hw_tests.parity_references import emulate, integer_signals
from lava_models.exporter import output_shapes
from lava_models.float_exporter import float_network
from lava_models.runner import run_lava
from quantization.learning_formats import LearningSpec
from quantization.network import Readout, Upsample2x
from quantization.ptq import quantize_model
from stllr.models.fsfn import FSFN


def _tiny_fsfn(dtype=torch.float32):
    torch.manual_seed(3)
    model = FSFN(2, encoder=(2, 4, 4, 4), decoder=(2, 2, 2), input_size=(16, 16)).to(dtype)
    with torch.no_grad():  # heads that produce flows of a few pixels
        for h in model.heads:
            h.conv.weight.normal_(0.0, 0.3)
            h.conv.bias.normal_(0.0, 0.2)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(6, 2, 2, 16, 16, generator=g) < 0.25).to(dtype)
    return model, x


def _tiny_fsfn_qnet():
    model, x = _tiny_fsfn()
    qnet, _ = quantize_model(model, [x])
    spec = LearningSpec(lam_pre=3500, lam_post=2048, a_pre=64, a_post=0, a_frac=6, p_frac=3,
                        q_frac=5, l_exp=-6, lr_mant=90, lr_shift=12, trace_bits=7,
                        trace_rounding="stochastic", w_min=-128, w_max=127, seed=9)  # fmt: skip
    qnet = qnet.replace_node(dataclasses.replace(qnet.node("flow1"), learning=spec))
    return qnet, x.permute(1, 0, 2, 3, 4).numpy().astype(np.int64)


def test_fsfn_in_lava_equals_the_emulator():
    qnet, frames = _tiny_fsfn_qnet()
    shapes = output_shapes(qnet)
    assert shapes["flow1"] == (2, 8, 8) and shapes["up2"] == (2, 8, 8)
    assert shapes["cat1"] == (2 + 2 + 2, 8, 8)
    assert any(isinstance(n, Upsample2x) and n.shift > 0 for n in qnet.nodes)
    assert any(isinstance(n, Readout) and n.a_shift != 6 for n in qnet.nodes)
    steps = frames.shape[1]
    signals = integer_signals(qnet, ("flow1",), steps, seed=2, shape_prefix=(2,))
    res = run_lava(qnet, frames, signals, timeout_s=180)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    for name in ("enc1", "dec1", "dec2"):
        s = ref.outputs[name]
        assert 0 < s.sum() < s.size, f"{name}: {int(s.sum())} spikes of {s.size}"
    assert np.abs(ref.outputs["up2"]).max() > 0 and np.abs(ref.outputs["flow1"]).max() > 0
    learned = ref.emu.weights("flow1")["w"].numpy()
    assert (learned != qnet.node("flow1").weight.numpy()).any(), "flow1 did not learn"
    np.testing.assert_array_equal(res.state["flow1"]["weights"], learned)


def test_fsfn_float_graph_in_lava_equals_torch():
    model, x = _tiny_fsfn(torch.float64)
    model.eval()
    spikes = {"enc1": [], "dec1": []}

    def keep(name):
        return lambda _module, _args, out: spikes[name].append(out[0].clone())

    head_in = []
    hooks = [model.encoder[0].register_forward_hook(keep("enc1")),
             model.deconv1.register_forward_hook(keep("dec1")),
             model.heads[0].register_forward_pre_hook(
                 lambda _module, args: head_in.append(args[0][0].clone()))]  # fmt: skip
    model.reset_state()
    flows = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            flows.append(model(x[t, :1]))
    for h in hooks:
        h.remove()
    res = run_lava(float_network(model), x[:, 0].numpy(), timeout_s=180)
    for k in (1, 2, 3, 4):
        ref = torch.stack([f[k - 1][0] for f in flows]).numpy()
        got = res.outputs[f"flow{k}"].reshape(ref.shape)
        assert np.abs(ref).max() > 0.1
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"flow{k}")
    # the finest head learns online: W ← W − lr·Σ_pixels L ⊗ P after every step
    lr, steps = 0.05, x.shape[0]
    sig = np.random.default_rng(4).normal(0.0, 1.0, (steps, 2, 8, 8))
    net = float_network(model, lr=lr, plastic=("flow1",))
    learned = run_lava(net, x[:, 0].numpy(), {"flow1": sig[None]}, timeout_s=180)
    w = model.heads[0].conv.weight.detach()[:, :, 0, 0].clone()
    p = torch.zeros_like(head_in[0])
    for t in range(steps):
        p = model.heads[0].decay * p + head_in[t]
        w -= lr * torch.einsum("khw,chw->kc", torch.as_tensor(sig[t]), p)
    got = learned.weights("flow1")["w"][:, :, 0, 0]
    assert np.abs(got - model.heads[0].conv.weight.detach()[:, :, 0, 0].numpy()).max() > 1e-2
    np.testing.assert_allclose(got, w.numpy(), rtol=0, atol=1e-5)
    for name, ref in spikes.items():
        ref = torch.stack(ref).numpy()
        assert 0 < ref.sum() < ref.size, name
        np.testing.assert_array_equal(res.outputs[name].reshape(ref.shape), ref, err_msg=name)
