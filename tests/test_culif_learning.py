"""On-device S-TLLR of a current-based (CuLIF) spiking layer (docs/fixed_point.md,
"Current-based layers"; docs/neurons.md §3b).

* The batched emulator equals a naive per-sample Python-int reference
  (tests/reference_integer_culif.py) step by step: spikes, the traces P, P^i, Q, R, R^i and
  the learned weights, for several trace formats, roundings and factor sets.
* A PTQ'd float CuLIF layer made plastic by ``attach_learning`` takes the float rule's
  step: the integer weight change of one learning step equals ``−η·κ·∂L/∂Ŵ`` of the float
  ``RecurrentNeuronSTLLR`` (its own S-TLLR gradient) within quantization error.
"""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.learning_formats import LearningSpec, psi_table
from quantization.network import QNetwork, SpikingLayer
from quantization.ptq import PTQConfig, quantize_model
from stllr.factors import STLLRFactors
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec
from tests.reference_integer_culif import RefCurrentLayer
from tests.reference_integer_stllr import all_indices


def _spec(**kw) -> LearningSpec:
    base = dict(
        lam_pre=3300, lam_post=2048, a_pre=64, a_post=-32, a_frac=6, p_frac=2, q_frac=5,
        l_exp=-6, lr_mant=90, lr_shift=13, trace_bits=7, trace_rounding="stochastic",
        w_min=-128, w_max=127, seed=11, pi_frac=3, lam_syn=2900,
    )  # fmt: skip
    base.update(kw)
    return LearningSpec(**base)


def _d(t: torch.Tensor) -> dict:
    return {i: int(t[i]) for i in all_indices(tuple(t.shape))}


def _node(gen, spec, reset="soft", rec=True, n_in=7, n_out=5, du=1400, psi="e"):
    e = -7
    return SpikingLayer(
        name="cu", inputs=("input",), kind="dense",
        weight=torch.randint(-70, 71, (n_out, n_in), generator=gen), weight_exp=e, dv=900,
        vth=40, reset=reset, bias_mant=torch.randint(-200, 200, (n_out,), generator=gen),
        bias_exp=1, weight_rec=torch.randint(-40, 41, (n_out, n_out), generator=gen) if rec
        else None, psi=psi_table(psi, 2.0**e / 64), learning=spec, du=du,
    )  # fmt: skip


def _run_against_reference(node, steps, batch, gen):
    n_in, n_out = node.weight.shape[1], node.weight.shape[0]
    emu = IntegerEmulator(QNetwork((node,), (n_in,), 2))
    ref = RefCurrentLayer(
        _d(node.weight), node.learning, du=node.du, dv=node.dv, vth=node.vth, reset=node.reset,
        bias=[int(b) << node.bias_exp for b in node.bias_mant],
        w_rec=None if node.weight_rec is None else _d(node.weight_rec),
        psi=(node.psi.table.tolist(), node.psi.shift, node.psi.half, node.psi.frac),
    )  # fmt: skip
    emu.reset()
    fired = 0
    for t in range(steps):
        x = (torch.rand((batch, n_in), generator=gen) < 0.4).to(torch.int64)
        x = x * torch.randint(1, 3, x.shape, generator=gen)
        out = emu.forward(x)["cu"]
        sig = torch.randint(-60, 61, out.shape, generator=gen)
        xs = [_d(x[b]) for b in range(batch)]
        ref_out = ref.step(xs, (n_in,), (n_out,), emu.t)
        tr = emu.state["cu"].traces
        for b in range(batch):
            assert _d(out[b]) == ref_out[b], f"spikes differ at t={t}, sample {b}"
            view = ref.state[b]
            assert _d(tr.p[b]) == view["p"], f"P differs at t={t}"
            assert _d(tr.pi[b]) == view["pi"], f"P^i differs at t={t}"
            assert _d(tr.q[b]) == view["q"], f"Q differs at t={t}"
            if node.recurrent:
                assert _d(tr.r[b]) == view["r"], f"R differs at t={t}"
                assert [int(v) for v in tr.ri[b]] == ref.cur[b]["ri"], f"R^i differs at t={t}"
        fired += int(out.sum())
        emu.apply_signals({"cu": sig})
        ref.learn(xs, [_d(sig[b]) for b in range(batch)], (n_in,), (n_out,), emu.t)
        assert _d(emu.weights("cu")["w"]) == ref.w, f"weights differ after t={t}"
        if node.recurrent:
            assert _d(emu.weights("cu")["w_rec"]) == ref.w_rec, f"W_rec differs after t={t}"
    changed = int((emu.weights("cu")["w"] != node.weight).sum())
    return fired, changed, emu


@pytest.mark.parametrize(
    "spec_kw,reset,rec",
    [
        ({}, "soft", True),
        ({}, "hard", False),
        ({"trace_rounding": "toward_zero"}, "hard", True),
        ({"trace_rounding": "nearest", "pi_frac": 2, "p_frac": 4}, "soft", True),  # k < 0
        (
            {"a_post": 0, "lam_post": 0, "pi_frac": 14, "p_frac": 2, "trace_bits": 16},
            "soft",
            True,
        ),  # k = 12, wide traces  # fmt: skip
        ({"lam_syn": 4096, "lam_pre": 4096, "trace_bits": 5}, "hard", True),  # saturation
    ],
)
def test_current_based_learning_equals_the_naive_reference(spec_kw, reset, rec):
    gen = torch.Generator().manual_seed(4)
    node = _node(gen, _spec(**spec_kw), reset=reset, rec=rec)
    fired, changed, emu = _run_against_reference(node, steps=14, batch=3, gen=gen)
    assert fired > 0 and changed > 0
    assert emu.state["cu"].traces.pi.any()


def test_a_current_based_layer_needs_current_traces():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="with current traces"):
        _node(gen, _spec(pi_frac=None))
    with pytest.raises(ValueError, match="without current traces"):
        _node(gen, _spec(), du=4095)


# --- the float rule ---------------------------------------------------------------------


def _float_layer():
    torch.manual_seed(1)
    spec = NeuronSpec("culif", tau_mem=4.0, tau_syn=3.0, threshold=0.4, reset="hard")
    f = STLLRFactors(lambda_post=0.5, lambda_pre=0.7, alpha_post=-0.2, alpha_pre=1.0)
    m = SHDNeuronNetSTLLR(spec, num_inputs=24, hidden=12, num_classes=3, factors=f).eval()
    m.rec.weight_std = False  # Ŵ = the raw weights: their gradient is ∂L/∂Ŵ
    with torch.no_grad():
        m.rec.weight.mul_(1.5)
        m.rec.weight_rec.mul_(1.5)
    return m


def _float_grads(m, x, delta, t_signal):
    """The float layer's S-TLLR gradient of ``Σ δ·s[t_signal]`` (spikes up to then)."""
    rec = m.rec
    rec.reset_state()
    rec.zero_grad()
    spikes = []
    for t in range(t_signal + 1):
        s = rec(x[t])
        spikes.append(s.detach())
    (s * delta).sum().backward()
    return rec.weight.grad.clone(), rec.weight_rec.grad.clone(), spikes


@pytest.mark.parametrize("t_signal", [5, 11])
def test_one_learning_step_follows_the_float_rule(t_signal):
    """A learning signal at one step only: the integer ΔW of that step, in float units and
    divided by κ (W_node = κ·Ŵ), is −η·∂L/∂Ŵ of the float layer, to within 2 % of its
    largest entry (0.5 % when written); leaving κ out of the α's fails this."""
    m = _float_layer()
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(16, 4, 24, generator=gen) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=16))  # v within ~3e-4 of float
    lr = 1.0  # one step: a large η makes ΔW many LSBs (the rounding of ΔW is not tested)
    qnet = attach_learning(qnet, ["rec"], [x], lr=lr, trace_bits=12, trace_rounding="nearest",
                           weight_bits=24)  # fmt: skip
    node = qnet.node("rec")
    spec = node.learning
    assert node.du < 4095 and spec.pi_frac is not None
    sig = torch.randint(-100, 101, (4, 12), generator=gen)
    delta = sig.double() * 2.0**spec.l_exp
    gw, gw_rec, spikes = _float_grads(m, x, delta.float(), t_signal)
    emu = IntegerEmulator(qnet)
    emu.reset()
    for t in range(t_signal + 1):
        out = emu.forward(x[t].to(torch.int64))["rec"]
        assert torch.equal(out.float(), spikes[t]), f"spikes differ at t={t}"
        emu.apply_signals({"rec": sig if t == t_signal else torch.zeros_like(sig)})
    kappa = node.dv / 4096
    lsb = node.weight_lsb
    dw = (emu.weights("rec")["w"] - node.weight).double() * lsb / kappa
    dw_rec = (emu.weights("rec")["w_rec"] - node.weight_rec).double() * lsb / kappa
    for got, grad in ((dw, gw), (dw_rec, gw_rec)):
        want = -lr * grad.double()
        scale = float(want.abs().max())
        assert scale > 0
        assert float((got - want).abs().max()) <= 0.02 * scale
    assert int(sum(int(s.sum()) for s in spikes)) > 0


def test_lambda_syn_and_the_gains_reach_the_spec_and_survive_saving(tmp_path):
    """``lambda_syn`` reaches the integer node, κ is folded into the α's, and a saved
    network keeps the current traces' format."""
    m = _float_layer()
    m.rec.lambda_syn = 0.6
    x = (torch.rand(8, 2, 24, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, ["rec"], [x], lr=0.01)
    node = qnet.node("rec")
    assert node.lambda_syn == 0.6 and node.learning.lam_syn == round(0.6 * 4096)
    k2, k = (node.dv / 4096) ** 2, node.dv / 4096
    a = 2.0**-node.learning.a_frac
    assert node.learning.a_pre == round(1.0 * k2 / a)
    assert node.learning.a_post == round(m.rec.factors.alpha_post * k / a)
    qnet.save(tmp_path / "net.pt")
    loaded = QNetwork.load(tmp_path / "net.pt").node("rec")
    assert loaded.learning == node.learning and loaded.lambda_syn == 0.6
