"""On-device S-TLLR of a current-based AdLIF (CuAdLIF) layer (quantization/nodes/adaptive.py;
docs/fixed_point.md, "Adaptive layers"; the float rule of docs/neurons.md §3b,
"current-based", with the AdLIF's per-neuron gains): the batched emulator equals the naive
per-sample Python-int reference (tests/reference_integer_adlif.py, with its current traces
P^i, R^i) step by step: spikes, the traces P, P^i, Q, R, R^i and the learned W, W_rec; the
reference with direct-drive traces in place of the current traces differs."""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.network import InputFormat, QNetwork
from quantization.nodes import AdaptiveLayer
from quantization.ptq import PTQConfig, quantize_model
from stllr.factors import STLLRFactors
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec
from tests.test_adlif_learning import _node, _reference, _spec, float_rule_step
from tests.test_cuadlif_integer import _float_cuadlif

#: current-trace constants of the tests (P^i at 2^−3, λ_syn ≈ 0.71) and a faster rate
_CURRENT = {"pi_frac": 3, "lam_syn": 2900, "lr_shift": 22}


def _current_node(gen, spec, reset="soft", rec=True):
    """The AdLIF test node with a current (``du``) and weights a quarter as large: the
    current sums a few steps of input, which keeps the voltage near θ, where Ψ is not 0."""
    node = _node(gen, None, reset=reset, rec=rec)
    du = torch.randint(1500, 3500, (node.out_channels,), generator=gen)
    w_rec = None if node.weight_rec is None else node.weight_rec // 4
    return AdaptiveLayer(**{**node.__dict__, "weight": node.weight // 4, "weight_rec": w_rec,
                            "du": du, "learning": spec})  # fmt: skip


def _run(node, steps, batch, gen, ref):
    n, n_in = node.weight.shape
    emu = IntegerEmulator(QNetwork((node,), (n_in,), n, InputFormat(0, 0, 3)))
    fired = 0
    for t in range(steps):
        x = torch.randint(0, 4, (batch, n_in), generator=gen)
        x = x * (torch.rand(batch, n_in, generator=gen) < 0.5)
        out = emu.forward(x)["ad"]
        sig = torch.randint(-60, 61, out.shape, generator=gen)
        want = ref.step_traces(x.tolist(), emu.t)
        assert out.tolist() == want, f"spikes differ at t={t}"
        tr = emu.state["ad"].traces
        for key in ("p", "q", "r", "pi", "ri"):
            got = getattr(tr, key)
            if got is not None:
                if got.tolist() != [r[key] for r in ref.tr]:
                    return fired, t, emu
        fired += int(out.sum())
        emu.apply_signals({"ad": sig})
        ref.learn(sig.tolist(), emu.t)
        w = emu.weights("ad")
        if w["w"].tolist() != ref.w or ("w_rec" in w and w["w_rec"].tolist() != ref.w_rec):
            return fired, t, emu
    return fired, None, emu


def _cur_reference(node):
    ref = _reference(node)
    ref.du = node.du.tolist()
    return ref


@pytest.mark.parametrize(
    "spec_kw,reset,rec",
    [
        ({}, "soft", True),
        ({"trace_rounding": "toward_zero"}, "hard", True),
        ({"trace_rounding": "nearest", "a_post": 0, "lam_post": 0}, "hard", False),
        ({"lam_syn": 4096, "trace_bits": 5, "lr_shift": 20}, "soft", True),  # saturation
        ({"consolidate_shift": 2, "consolidate_every": 4, "lr_shift": 22}, "hard", True),
    ],
)
def test_emulator_learning_equals_the_naive_reference(spec_kw, reset, rec):
    gen = torch.Generator().manual_seed(5)
    node = _current_node(gen, _spec(**{**_CURRENT, **spec_kw}), reset, rec)
    fired, differs, emu = _run(node, 14, 3, gen, _cur_reference(node))
    assert differs is None, f"differs after t={differs}"
    assert fired > 0 and emu.state["ad"].traces.pi.any()
    changed = int((emu.weights("ad")["w"] != node.weight).sum())
    assert changed >= node.weight.numel() // 4


def test_the_reference_with_direct_traces_differs():
    """The same run against the reference whose P, R take x, s directly (the AdLIF's traces,
    the current traces left out) fails."""
    gen = torch.Generator().manual_seed(5)
    node = _current_node(gen, _spec(**_CURRENT))
    ref = _cur_reference(node)
    ref.du = None  # the reference's traces: direct drive (its voltage still reads du below)
    _, differs, _ = _run(node, 14, 3, gen, _Mixed(ref, node.du.tolist()))
    assert differs is not None


class _Mixed:
    """``ref`` whose neuron keeps the current (``du``) but whose traces are direct-drive."""

    def __init__(self, ref, du):
        self.ref, self.du = ref, du

    def step_traces(self, xs, seed_step):
        step = self.ref.step

        def step_with_current(x):
            self.ref.du = self.du
            try:
                return step(x)
            finally:
                self.ref.du = None

        self.ref.step = step_with_current
        try:
            return self.ref.step_traces(xs, seed_step)
        finally:
            self.ref.step = step

    def learn(self, signals, seed_step):
        self.ref.learn(signals, seed_step)

    def __getattr__(self, name):
        return getattr(self.ref, name)


def test_a_plastic_cuadlif_layer_needs_current_traces():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="with current traces"):
        _current_node(gen, _spec())


def test_attach_learning_makes_a_ptqd_cuadlif_layer_plastic():
    """PTQ + attach_learning: the layer gets current traces at the float layer's λ_syn and
    the per-layer κ_m in the α's; its weights move under a signal."""
    m = _float_cuadlif("neuron", "soft")
    x = (torch.rand(15, 3, 40, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec"], [x], lr=0.05, seed=3)
    node = qnet.node("rec")
    spec = node.learning
    assert node.current_traces and spec.pi_frac is not None and spec.gain_frac == 12
    assert spec.lam_syn == round(m.rec.lambda_syn * 4096)
    emu = IntegerEmulator(qnet)
    g = torch.Generator().manual_seed(4)
    for t in range(15):
        emu.forward(x[t].to(torch.int64))
        emu.apply_signals({"rec": torch.randint(-60, 61, (3, 32), generator=g)})
    assert emu.state["rec"].traces.pi.any()
    assert int((emu.weights("rec")["w"] != node.weight).sum()) > 0


def _float_cuadlif_layer():
    """A float S-TLLR CuAdLIF layer with spread per-neuron κ_i (as tests/test_adlif_learning
    builds the AdLIF's)."""
    torch.manual_seed(1)
    spec = NeuronSpec("cuadlif", tau_mem=5.0, tau_syn=3.0, tau_adapt=20.0, threshold=0.5,
                      reset="soft", decay_mode="neuron")  # fmt: skip
    f = STLLRFactors(lambda_post=0.5, lambda_pre=0.7, alpha_post=-0.2, alpha_pre=1.0)
    m = SHDNeuronNetSTLLR(spec, num_inputs=24, hidden=12, num_classes=3, factors=f).eval()
    m.rec.weight_std = False  # Ŵ = the raw weights: their gradient is ∂L/∂Ŵ
    with torch.no_grad():
        m.rec.neurons.mem_logit.add_(torch.linspace(-1.0, 1.0, 12))  # κ_i differ
        m.rec.neurons.a.clamp_(min=0.0)
    return m


@pytest.mark.parametrize("t_signal", [4, 9])
def test_one_learning_step_follows_the_float_rule(t_signal):
    """A learning signal at one step only: the integer ΔW of that step, in float units and
    divided by each row's κ_i (W_node = κ_i·Ŵ), is −η·∂L/∂Ŵ of the float CuAdLIF layer (its
    current traces, the per-neuron κ_i) within 2 % of its largest entry. 12 bits, not the
    AdLIF test's 16: the current sums several steps of input, and at 16 bits it would wrap
    the 24-bit u (the emulator counts it)."""
    node = float_rule_step(_float_cuadlif_layer(), 12, t_signal)
    assert node.current_traces
