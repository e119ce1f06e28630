"""The current-based LIF (CuLIF) as an integer node (docs/neurons.md §1, docs/node_kinds.md).

A float CuLIF network (``SHDNeuronNetSTLLR`` with ``neuron = culif``) quantized by PTQ runs in
the emulator with the float model's timing: its voltage reads the previous step's current,
and its bias enters the current with the synaptic input. Checked against the float model
itself (voltages step by step, spikes), against the same node run with the host's one-step
delay instead of its own, and against a hand computation of the integer recursion.
"""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.network import InputFormat, QNetwork, SpikingLayer
from quantization.nodes.spiking import current_decay_du
from quantization.ptq import PTQConfig, quantize_model
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec


def _float_model(kind="culif", mode="layer"):
    torch.manual_seed(0)
    spec = NeuronSpec(kind, tau_mem=5.0, tau_syn=3.0, threshold=0.5, reset="hard",
                      decay_mode=mode)  # fmt: skip
    m = SHDNeuronNetSTLLR(spec, num_inputs=40, hidden=32, num_classes=5).eval()
    with torch.no_grad():
        m.rec.bias.normal_(0.0, 0.2)
    return m


def _reset(model):
    for mod in model.modules():
        if hasattr(mod, "reset_state") and mod is not model:
            mod.reset_state()


def test_ptq_of_a_culif_network_follows_the_float_voltages():
    """12-bit PTQ: the integer voltage times its LSB stays within 2e-3 of the float voltage
    while the spikes agree, and ≥ 99 % of the spikes agree over 30 steps (a flipped spike
    then changes the recurrent input); du, dv are the 12-bit forms of β, α."""
    m = _float_model()
    x = (torch.rand(30, 4, 40, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=12))
    n = qnet.nodes[0]
    alpha, beta = torch.exp(torch.tensor(-1 / 5.0)), torch.exp(torch.tensor(-1 / 3.0))
    assert n.dv == round(float(1 - alpha) * 4096) and n.du == 4095 - round(float(beta) * 4096)
    lsb = n.weight_lsb / 64
    emu = IntegerEmulator(qnet)
    _reset(m)
    same = total = 0
    with torch.no_grad():
        for t in range(30):
            s_float = m.rec(x[t])
            out = emu.forward(x[t].to(torch.int64))["rec"].float()
            if t < 4:  # before any spike differs
                assert torch.equal(out, s_float)
                v_int = emu.state["rec"].v.double() * lsb
                assert torch.allclose(v_int, m.rec.state.neuron.v.double(), atol=2e-3)
            same += int((out == s_float).sum())
            total += out.numel()
    assert same / total >= 0.99
    assert float(emu.state["rec"].v.abs().max()) > 0


def test_own_delay_equals_the_hosts_delay():
    """A network of one recurrent current-based layer with a bias: the node's own one-step
    delay (host without delay) and the host's delay of W·x (``delay=1``, Lava's Dense) plus
    the node's delay of W_rec·s give the same run."""
    g = torch.Generator().manual_seed(3)
    w = torch.randint(-40, 41, (6, 9), generator=g)
    bias, w_rec = (
        torch.randint(-90, 90, (6,), generator=g),
        torch.randint(-20, 21, (6, 6), generator=g),
    )
    node = SpikingLayer("cu", ("input",), "dense", w, 0, 700, 30, "soft", bias_mant=bias,
                        weight_rec=w_rec, du=1500)  # fmt: skip
    qnet = QNetwork((node,), (9,), 6, InputFormat(0, 0, 3))
    own, hosts = IntegerEmulator(qnet, delay=0), IntegerEmulator(qnet, delay=1)
    fired = 0
    for _ in range(25):
        x = torch.randint(0, 4, (3, 9), generator=g)
        a, b = own.forward(x)["cu"], hosts.forward(x)["cu"]
        assert torch.equal(a, b)
        assert torch.equal(own.state["cu"].u, hosts.state["cu"].u)
        assert torch.equal(own.state["cu"].v, hosts.state["cu"].v)
        fired += int(a.sum())
    assert fired > 0


def test_first_steps_by_hand():
    """u[t] = trunc(u·(4095 − du)/4096) + (a[t−1] << 6) + bias·[t ≥ 1],
    v[t] = trunc(v·(4096 − dv)/4096) + u[t], fire above vth << 6 (hard reset)."""
    node = SpikingLayer("cu", ("input",), "dense", torch.tensor([[3]]), 0, 1024, 20, "hard",
                        bias_mant=torch.tensor([100]), du=2047)  # fmt: skip
    emu = IntegerEmulator(QNetwork((node,), (1,), 1, InputFormat(0, 0, 3)))
    u = v = 0
    a_prev = None
    for x in (2, 0, 1, 3, 0, 0):
        a = 3 * x
        du_keep = (4095 - 2047) * abs(u) // 4096 * (1 if u >= 0 else -1)
        u = du_keep + ((a_prev << 6) + 100 if a_prev is not None else 0)
        v = (4096 - 1024) * abs(v) // 4096 * (1 if v >= 0 else -1) + u
        s = int(v > 20 << 6)
        v = 0 if s else v
        a_prev = a
        out = emu.forward(torch.tensor([[x]]))["cu"]
        assert (int(out), int(emu.state["cu"].u), int(emu.state["cu"].v)) == (s, u, v)


def test_du_of_a_current_decay():
    assert current_decay_du(0.0) == 4095 and current_decay_du(0.5) == 2047
    with pytest.raises(ValueError):
        current_decay_du(1.0)


def test_per_neuron_current_decays_are_refused_by_name():
    """A PCuLIF with one current decay per neuron has no integer kind (the CuAdLIF has:
    tests/test_cuadlif_integer.py)."""
    with pytest.raises(TypeError, match="'pculif' .decay_mode 'neuron'.*have an integer kind"):
        quantize_model(_float_model("pculif", "neuron"), [torch.zeros(3, 2, 40)])


def test_8bit_network_equals_a_float64_loop_of_its_own_constants():
    """8-bit PTQ (the deployed width): the emulator against a float64 loop of docs/neurons.md
    §2 run with the integer network's own constants (weights m·LSB, α = 1 − dv/4096,
    β = (4095 − du)/4096, θ = vth·LSB, the bias entering the current from step 1): what is
    left is the 24-bit decays' truncation toward zero, at most ≈ 1/(1−β) LSB/64 in the
    current and (1/(1−β) + 1)/(1−α) in the voltage. While the spikes agree the voltages stay
    within that bound; over 40 steps ≥ 99 % of the spikes agree."""
    m = _float_model()
    x = (torch.rand(40, 6, 40, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    n = qnet.nodes[0]
    lsb = n.weight_lsb
    w, w_rec = n.weight.double() * lsb, n.weight_rec.double() * lsb
    bias = (n.bias_mant.double() * 2**n.bias_exp) * lsb / 64
    alpha, beta = 1 - n.dv / 4096, (4095 - n.du) / 4096
    theta = n.vth * lsb
    bound = ((1 / (1 - beta) + 1) / (1 - alpha) + 1) * lsb / 64
    emu = IntegerEmulator(qnet)
    v = u = s = torch.zeros(6, 32, dtype=torch.float64)
    a_prev = None
    same = total = 0
    agreeing = True
    for t in range(40):
        # u[t] = β·u[t−1] + (W x[t−1] + W_rec s[t−2] + b);  v[t] = α·v̂[t−1] + u[t]
        u = beta * u + (0 if a_prev is None else a_prev + bias)
        a_prev = x[t].double() @ w.T + s @ w_rec.T
        v = alpha * v + u
        s = (v > theta).double()
        out = emu.forward(x[t].to(torch.int64))["rec"].double()
        agreeing = agreeing and torch.equal(out, s)
        if agreeing:
            v_int = emu.state["rec"].v.double() * lsb / 64
            assert float((v_int - v * (1 - s)).abs().max()) <= bound
        v = v * (1 - s)  # hard reset
        same += int((out == s).sum())
        total += s.numel()
    assert same / total >= 0.99
    assert int(emu.state["rec"].s.sum()) > 0 or same < total  # the layer fires
