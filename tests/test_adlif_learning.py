"""On-device S-TLLR of an AdLIF layer (quantization/nodes/adaptive.py; docs/fixed_point.md,
"Adaptive layers"; the float rule of docs/neurons.md §3b, "direct (AdLIF)").

* The per-neuron gains equal their definition computed with exact fractions.
* The batched emulator equals a naive per-sample Python-int reference
  (tests/reference_integer_adlif.py) step by step: spikes, the traces P, Q, R and the
  learned W, W_rec, for several trace formats, roundings, factor sets, per-neuron decays
  and the consolidation pull; the same reference with the gains left out (κ omitted)
  differs.
* A PTQ'd float AdLIF layer made plastic by ``attach_learning`` takes the float rule's
  step: the integer weight change of one learning step, divided by each row's κ_i, equals
  ``−η·∂L/∂Ŵ`` of the float ``RecurrentNeuronSTLLR`` within quantization error.
"""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.learning_formats import LearningSpec, psi_table
from quantization.network import InputFormat, QNetwork
from quantization.nodes import AdaptiveLayer
from quantization.nodes.adaptive import post_gains
from quantization.ptq import PTQConfig, quantize_model
from stllr.factors import STLLRFactors
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec
from tests.reference_integer_adlif import RefAdaptivePlastic, gains_by_hand


def _spec(**kw) -> LearningSpec:
    base = dict(
        lam_pre=3300, lam_post=2048, a_pre=64, a_post=-32, a_frac=6, p_frac=2, q_frac=5,
        l_exp=-6, lr_mant=90, lr_shift=25, trace_bits=7, trace_rounding="stochastic",
        w_min=-128, w_max=127, seed=11, gain_frac=12,
    )  # fmt: skip
    base.update(kw)
    return LearningSpec(**base)


def test_gains_equal_their_definition():
    g = torch.Generator().manual_seed(0)
    for dv in (torch.randint(0, 4096, (50,), generator=g), torch.tensor([1, 2, 3, 4095]),
               torch.tensor([700] * 4), torch.tensor([0, 0]), torch.tensor([1, 3])):  # fmt: skip
        got_g, got_h = post_gains(dv)
        want_g, want_h = gains_by_hand(dv.tolist())
        assert got_g.tolist() == want_g and got_h.tolist() == want_h


def _node(gen, spec, reset="soft", rec=True, n_in=9, n=6):
    e = 0
    return AdaptiveLayer(
        "ad", ("input",), torch.randint(-40, 41, (n, n_in), generator=gen), e,
        torch.randint(200, 2000, (n,), generator=gen), torch.randint(10, 600, (n,), generator=gen),
        torch.randint(0, 3 << 22, (n,), generator=gen), torch.randint(0, 900, (n,), generator=gen),
        12, reset, bias_mant=torch.randint(-50, 80, (n,), generator=gen), bias_exp=2,
        weight_rec=torch.randint(-30, 31, (n, n), generator=gen) if rec else None,
        psi=psi_table("e", 2.0**e / 64), learning=spec,
    )  # fmt: skip


def _reference(node, gains=None):
    table = node.psi
    return RefAdaptivePlastic(
        node.weight.tolist(), None if node.weight_rec is None else node.weight_rec.tolist(),
        [int(b) << node.bias_exp for b in node.bias_mant], node.dv.tolist(), node.dw.tolist(),
        node.ka.tolist(), node.kb.tolist(), node.vth, node.reset, spec=node.learning,
        psi=(table.table.tolist(), table.shift, table.half, table.frac), gains=gains,
    )  # fmt: skip


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
        for key, got in (("p", tr.p), ("q", tr.q), ("r", tr.r)):
            if got is not None:
                assert got.tolist() == [r[key] for r in ref.tr], f"{key} differs at t={t}"
        fired += int(out.sum())
        emu.apply_signals({"ad": sig})
        ref.learn(sig.tolist(), emu.t)
        w = emu.weights("ad")
        if w["w"].tolist() != ref.w or ("w_rec" in w and w["w_rec"].tolist() != ref.w_rec):
            return fired, t, emu
    return fired, None, emu


@pytest.mark.parametrize(
    "spec_kw,reset,rec",
    [
        ({}, "soft", True),
        ({}, "hard", False),
        ({"trace_rounding": "toward_zero", "lr_shift": 22}, "hard", True),
        ({"trace_rounding": "nearest", "a_post": 0, "lam_post": 0}, "soft", True),
        ({"lam_pre": 4096, "trace_bits": 5, "lr_shift": 20}, "soft", True),  # saturation
        ({"consolidate_shift": 2, "consolidate_every": 4, "lr_shift": 22}, "soft", True),
    ],
)
def test_emulator_learning_equals_the_naive_reference(spec_kw, reset, rec):
    gen = torch.Generator().manual_seed(4)
    node = _node(gen, _spec(**spec_kw), reset=reset, rec=rec)
    fired, differs, emu = _run(node, 14, 3, gen, _reference(node))
    assert differs is None, f"weights differ after t={differs}"
    assert fired > 0
    changed = int((emu.weights("ad")["w"] != node.weight).sum())
    assert changed >= node.weight.numel() // 4


def test_the_reference_without_the_gains_differs():
    """The same run against the reference with κ left out (every gain 4096) fails."""
    gen = torch.Generator().manual_seed(4)
    node = _node(gen, _spec())
    unity = [4096] * node.out_channels
    _, differs, _ = _run(node, 14, 3, gen, _reference(node, gains=(unity, unity)))
    assert differs is not None


def test_a_plastic_adlif_layer_needs_its_table_and_gain_bits():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="gain_frac = 12"):
        _node(gen, _spec(gain_frac=0))
    with pytest.raises(ValueError, match="without current traces"):
        _node(gen, _spec(pi_frac=3))


# --- the float rule ---------------------------------------------------------------------


def _float_layer():
    torch.manual_seed(1)
    spec = NeuronSpec("adlif", tau_mem=5.0, tau_adapt=20.0, threshold=0.5, reset="soft",
                      decay_mode="neuron")  # fmt: skip
    f = STLLRFactors(lambda_post=0.5, lambda_pre=0.7, alpha_post=-0.2, alpha_pre=1.0)
    m = SHDNeuronNetSTLLR(spec, num_inputs=24, hidden=12, num_classes=3, factors=f).eval()
    m.rec.weight_std = False  # Ŵ = the raw weights: their gradient is ∂L/∂Ŵ
    with torch.no_grad():
        m.rec.weight.mul_(1.5)
        m.rec.weight_rec.mul_(1.5)
        m.rec.neurons.mem_logit.add_(torch.linspace(-1.0, 1.0, 12))  # κ_i differ
        m.rec.neurons.a.clamp_(min=0.0)  # the integer kind holds a ≥ 0 (ka in 0 … 2^24)
    return m


def _float_grads(m, x, delta, t_signal):
    rec = m.rec
    rec.reset_state()
    rec.zero_grad()
    spikes = []
    for t in range(t_signal + 1):
        s = rec(x[t])
        spikes.append(s.detach())
    (s * delta).sum().backward()
    return rec.weight.grad.clone(), rec.weight_rec.grad.clone(), spikes


def float_rule_step(m, weight_bits: int, t_signal: int):
    """Quantize the float layer ``m.rec`` at ``weight_bits``, make it plastic (η = 1), send a
    random learning signal at step ``t_signal`` only, and check the integer ΔW of that step,
    in float units and divided by each row's κ_i (W_node = κ_i·Ŵ), against −η·∂L/∂Ŵ of the
    float layer (within 2 % of its largest entry), with the spikes equal up to that step.
    Returns the plastic node."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(16, 4, 24, generator=gen) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=weight_bits))
    lr = 1.0
    qnet = attach_learning(qnet, ["rec"], [x], lr=lr, trace_bits=12, trace_rounding="nearest",
                           weight_bits=24)  # fmt: skip
    node = qnet.node("rec")
    kappa = node.dv.double() / 4096
    assert isinstance(node, AdaptiveLayer) and float(kappa.max() / kappa.min()) > 1.5
    sig = torch.randint(-100, 101, (4, 12), generator=gen)
    delta = sig.double() * 2.0**node.learning.l_exp
    gw, gw_rec, spikes = _float_grads(m, x, delta.float(), t_signal)
    emu = IntegerEmulator(qnet)
    for t in range(t_signal + 1):
        out = emu.forward(x[t].to(torch.int64))["rec"]
        assert torch.equal(out.float(), spikes[t]), f"spikes differ at t={t}"
        emu.apply_signals({"rec": sig if t == t_signal else torch.zeros_like(sig)})
    lsb = node.weight_lsb
    dw = (emu.weights("rec")["w"] - node.weight).double() * lsb / kappa[:, None]
    dw_rec = (emu.weights("rec")["w_rec"] - node.weight_rec).double() * lsb / kappa[:, None]
    for got, grad in ((dw, gw), (dw_rec, gw_rec)):
        want = -lr * grad.double()
        scale = float(want.abs().max())
        assert scale > 0
        assert float((got - want).abs().max()) <= 0.02 * scale
    assert int(sum(int(s.sum()) for s in spikes)) > 0
    return node


@pytest.mark.parametrize("t_signal", [4, 9])
def test_one_learning_step_follows_the_float_rule(t_signal):
    """A learning signal at one step only: the integer ΔW of that step, in float units and
    divided by each row's κ_i (W_node = κ_i·Ŵ), is −η·∂L/∂Ŵ of the float layer to within
    2 % of its largest entry; leaving the gains out (or κ_m out of the α's) fails this."""
    node = float_rule_step(_float_layer(), 16, t_signal)
    assert not node.current_traces


def test_attach_learning_folds_kappa_max_and_survives_saving(tmp_path):
    m = _float_layer()
    x = (torch.rand(8, 2, 24, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec", "readout"], [x], lr=0.01)
    node = qnet.node("rec")
    k = int(node.dv.max()) / 4096
    a = 2.0**-node.learning.a_frac
    assert node.learning.gain_frac == 12
    assert node.learning.a_pre == round(1.0 * k * k / a)
    assert node.learning.a_post == round(-0.2 * k / a)
    assert node.factors == (0.5, 0.7, -0.2, 1.0) and node.psi.variant == m.rec.psi_name
    qnet.save(tmp_path / "net.pt")
    loaded = QNetwork.load(tmp_path / "net.pt").node("rec")
    assert loaded.learning == node.learning and loaded.factors == node.factors
    assert torch.equal(loaded.psi.table, node.psi.table) and loaded.psi.frac == node.psi.frac
