"""Current-based and adaptive neurons: steps against hand-computed sequences, S-TLLR
gradients against the naive per-synapse reference (tests/reference_neurons.py) and
against autograd where the eligibility is exact, and the reduction to the LIF layer."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.factors import STLLRFactors
from stllr.layers.bptt import SpikeFn
from stllr.layers.stllr_layers import RecurrentLinearSTLLR
from stllr.models.factory import build_model
from stllr.neuron import LIFParams
from stllr.neurons.dynamics import (
    AdLIFParams,
    AdLIFState,
    CuAdLIFParams,
    CuAdLIFState,
    CuLIFParams,
    CuLIFState,
    adlif_step,
    cuadlif_step,
    culif_step,
    zero_state,
)
from stllr.neurons.layers import RecurrentNeuronBPTT, RecurrentNeuronSTLLR
from stllr.neurons.population import NeuronPopulation, NeuronSpec
from stllr.surrogates import get_surrogate
from tests import reference_neurons as ref

D = torch.float64


def _run(step, params, state_type, inputs):
    """Drive one neuron (``[1, 1]`` tensors) with ``inputs``; return the spikes and the
    states after each step as lists of floats."""
    state = zero_state(state_type, torch.zeros(1, 1, dtype=D))
    spikes, states = [], []
    for c in inputs:
        s, _, state = step(torch.tensor([[c]], dtype=D), state, params)
        spikes.append(float(s))
        states.append({k: float(v) for k, v in state._asdict().items()})
    return spikes, states


# ---- step functions against sequences computed by hand ----


def test_culif_hand_computed_soft_and_hard():
    # α = β = 0.5, θ = 0.8, c = 2, 0, 0, 4, 0, 0. By hand (v uses the previous current):
    # t0 v=0            i=2     | t1 v=0.5·0+0.5·2=1 → spike, v̂=0.2 (soft)   i=1
    # t2 v=0.1+0.5=0.6  i=0.5   | t3 v=0.3+0.25=0.55  i=0.25+4=4.25
    # t4 v=0.275+2.125=2.4 → spike, v̂=1.6 (soft) / 0 (hard)   i=2.125
    # t5 soft v=0.8+1.0625=1.8625 → spike, v̂=1.0625; hard v=1.0625 → spike, v̂=0
    inputs = [2.0, 0.0, 0.0, 4.0, 0.0, 0.0]
    spikes, states = _run(culif_step, CuLIFParams(0.5, 0.5, 0.8, "soft"), CuLIFState, inputs)
    assert spikes == [0, 1, 0, 0, 1, 1]
    expected_v = [0.0, 0.2, 0.6, 0.55, 1.6, 1.0625]
    expected_i = [2.0, 1.0, 0.5, 4.25, 2.125, 1.0625]
    assert [st["v"] for st in states] == pytest.approx(expected_v, abs=1e-12)
    assert [st["i"] for st in states] == pytest.approx(expected_i, abs=1e-12)
    spikes, states = _run(culif_step, CuLIFParams(0.5, 0.5, 0.8, "hard"), CuLIFState, inputs)
    assert spikes == [0, 1, 0, 0, 1, 1]
    assert [st["v"] for st in states] == pytest.approx([0, 0, 0.5, 0.5, 0, 0], abs=1e-12)


def test_adlif_hand_computed():
    # α = ρ = 0.5, a = 0.5, b = 0.25, θ = 0.9, c = 2, 2, 0, 0 (v uses w[t−1]; w uses h, s of t−1)
    # t0 v=0.5·2=1 → spike, v̂=0.1; w=0; h=1
    # t1 v=0.05+0.5·2=1.05 → spike, v̂=0.15; w=0.5·1+0.25·1=0.75; h=1.05
    # t2 v=0.075+0.5·(0−0.75)=−0.3; w=0.375+0.525+0.25=1.15
    # t3 v=−0.15+0.5·(0−1.15)=−0.725; w=0.575−0.15+0=0.425
    params = AdLIFParams(0.5, 0.5, 0.5, 0.25, 0.9, "soft")
    spikes, states = _run(adlif_step, params, AdLIFState, [2.0, 2.0, 0.0, 0.0])
    assert spikes == [1, 1, 0, 0]
    assert [st["v"] for st in states] == pytest.approx([0.1, 0.15, -0.3, -0.725], abs=1e-12)
    assert [st["w"] for st in states] == pytest.approx([0.0, 0.75, 1.15, 0.425], abs=1e-12)
    assert [st["h"] for st in states] == pytest.approx([1.0, 1.05, -0.3, -0.725], abs=1e-12)


def test_cuadlif_hand_computed():
    # α = β = ρ = 0.5, a = 0.5, b = 0.25, θ = 0.9, c = 2, 2, 0, 0
    # t0 v=0; i=2; w=0 | t1 v=0.5·2=1 → spike, v̂=0.1; i=3; w=0
    # t2 v=0.05+0.5·3=1.55 → spike, v̂=0.65; i=1.5; w=0.5·1+0.25=0.75
    # t3 v=0.325+0.5·(1.5−0.75)=0.7; i=0.75; w=0.375+0.775+0.25=1.4
    params = CuAdLIFParams(0.5, 0.5, 0.5, 0.5, 0.25, 0.9, "soft")
    spikes, states = _run(cuadlif_step, params, CuAdLIFState, [2.0, 2.0, 0.0, 0.0])
    assert spikes == [0, 1, 1, 0]
    assert [st["v"] for st in states] == pytest.approx([0.0, 0.1, 0.65, 0.7], abs=1e-12)
    assert [st["i"] for st in states] == pytest.approx([2.0, 3.0, 1.5, 0.75], abs=1e-12)
    assert [st["w"] for st in states] == pytest.approx([0.0, 0.0, 0.75, 1.4], abs=1e-12)


def test_population_decays_and_per_neuron_broadcast():
    """σ(d) = e^{−1/τ} at init; a per-neuron population equals per-neuron scalar runs."""
    torch.manual_seed(0)
    pop = NeuronPopulation(3, NeuronSpec("cuadlif", tau_mem=5.0, tau_syn=7.0, tau_adapt=50.0))
    p = pop.params()
    assert p.alpha.shape == (3,)  # cuadlif: one decay per neuron by default (as the reference)
    assert torch.allclose(p.alpha.double(), torch.full((3,), math.exp(-1 / 5), dtype=D))
    assert torch.allclose(p.beta.double(), torch.full((3,), math.exp(-1 / 7), dtype=D))
    assert torch.allclose(p.rho.double(), torch.full((3,), math.exp(-1 / 50), dtype=D))
    assert NeuronPopulation(3, NeuronSpec("pculif")).params().alpha.dim() == 0
    pop = pop.double()
    with torch.no_grad():
        pop.mem_logit.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    params = pop.params()
    c = torch.rand(6, 2, 3, dtype=D) * 2
    state = pop.zero_state(c[0])
    out = []
    for t in range(6):
        s, _, state = pop.step(c[t], state)
        out.append(s)
    for n in range(3):
        scalar = CuAdLIFParams(
            *(float(v[n].detach()) for v in params[:5]), params.threshold, params.reset
        )
        st = zero_state(CuAdLIFState, c[0, :, n : n + 1])
        for t in range(6):
            s, _, st = cuadlif_step(c[t, :, n : n + 1], st, scalar)
            assert torch.equal(s[:, 0], out[t][:, n])


def test_population_projects_a_b():
    pop = NeuronPopulation(4, NeuronSpec("adlif"))
    with torch.no_grad():
        pop.a.copy_(torch.tensor([-0.5, 0.3, 1.7, 0.9]))
    pop.reset_state()
    assert pop.a.tolist() == pytest.approx([0.0, 0.3, 1.0, 0.9])


# ---- S-TLLR gradients against the naive reference ----


def _drive(layer, x, delta):
    layer.reset_state()
    spikes, grad_x = [], []
    for t in range(x.shape[0]):
        xt = x[t].clone().requires_grad_(True)
        s = layer(xt)
        (s * delta[t]).sum().backward()
        spikes.append(s.detach())
        grad_x.append(xt.grad)
    return torch.stack(spikes), torch.stack(grad_x)


def _neuron_params(layer: RecurrentNeuronSTLLR) -> list[dict]:
    p = layer.neurons.params()
    n = layer.out_features
    out = []
    for i in range(n):
        d = {"theta": p.threshold, "reset": p.reset}
        for name in ("alpha", "beta", "rho", "a", "b"):
            if hasattr(p, name):
                value = getattr(p, name)
                d[name] = float((value if value.dim() == 0 else value[i]).detach())
        out.append(d)
    return out


@pytest.mark.parametrize(
    "kind,mode,reset,factors,psi",
    [
        ("culif", "layer", "soft", [0.5, 1.0, 1.0, 1.0], "c"),
        ("pculif", "neuron", "hard", [0.2, 0.75, -1.0, 1.0], "a"),
        ("adlif", "neuron", "soft", [0.5, 0.8, -0.2, 1.0], "c"),
        ("adlif", "layer", "hard", [0.5, 1.0, 1.0, 1.0], "e"),
        ("cuadlif", "neuron", "hard", [0.9, 0.3, -3.0, 0.4], "b"),
        ("cuadlif", "layer", "soft", [0.0, 0.6, 0.0, 1.0], "d"),
    ],
)
def test_stllr_gradients_match_naive_reference(kind, mode, reset, factors, psi):
    torch.manual_seed(1)
    steps, batch, n_in, n_out = 8, 2, 5, 4
    spec = NeuronSpec(
        kind, tau_mem=3.0, tau_syn=4.0, tau_adapt=6.0, threshold=0.3, reset=reset, decay_mode=mode
    )
    layer = RecurrentNeuronSTLLR(
        n_in,
        n_out,
        spec,
        STLLRFactors.from_list(factors),
        psi=psi,
        lambda_syn=0.7,
        weight_std=False,
    ).double()
    with torch.no_grad():
        layer.weight.mul_(4.0)
        layer.bias.uniform_(-0.2, 0.4)
        layer.weight_rec.mul_(2.0)
        if mode == "neuron":  # distinct decays per neuron
            layer.neurons.mem_logit.add_(torch.linspace(-0.5, 0.5, n_out, dtype=D))
    x = (torch.rand(steps, batch, n_in) < 0.5).to(D)
    delta = torch.randn(steps, batch, n_out, dtype=D)
    spikes, grad_x = _drive(layer, x, delta)
    want = ref.recurrent_sequence(
        kind, x, layer.weight.detach(), layer.weight_rec.detach(), layer.bias.detach(), delta,
        _neuron_params(layer), factors=factors, lambda_syn=0.7, psi=psi,
    )  # fmt: skip
    assert spikes.sum() > 0 and spikes.mean() < 1  # the layer fires, not always
    assert torch.equal(spikes, want["spikes"])
    for name, got in (
        ("grad_w", layer.weight.grad),
        ("grad_w_rec", layer.weight_rec.grad),
        ("grad_b", layer.bias.grad),
        ("grad_x", grad_x),
    ):
        assert torch.allclose(got, want[name], atol=1e-10, rtol=0), name
    _check_parameter_grads(layer, want["grad_params"])


#: population attribute → (parameter π, whether π = σ(attribute))
_PARAMETER_OF = {
    "mem_logit": ("alpha", True),
    "syn_logit": ("beta", True),
    "adapt_logit": ("rho", True),
    "a": ("a", False),
    "b": ("b", False),
}


def _check_parameter_grads(layer, want: dict, atol: float = 1e-10):
    """The population's gradients against ``want[π]`` ``[out]`` (∂L/∂π per neuron),
    chained by hand through σ for the logits and summed over neurons for 0-dim ones."""
    pop = layer.neurons
    learnable = dict(pop.named_parameters())
    if pop.spec.kind == "culif":
        assert not learnable  # fixed decays
    for attr, (name, logit) in _PARAMETER_OF.items():
        if attr not in learnable:
            continue
        prm = learnable[attr]
        expected = want[name]
        if logit:
            value = torch.sigmoid(prm.detach())
            expected = expected * value * (1 - value)
        if prm.dim() == 0:
            expected = expected.sum()
        assert prm.grad is not None, attr
        assert torch.allclose(prm.grad, expected, atol=atol, rtol=0), attr


def test_one_state_lif_reduces_to_existing_stllr_layer():
    """The derivation's reference with one state (κ = 1, direct drive) is the existing
    RecurrentLinearSTLLR's rule: same spikes and gradients."""
    torch.manual_seed(2)
    steps, batch, n_in, n_out = 7, 2, 5, 4
    factors = [0.5, 0.8, -0.2, 1.0]
    lif = LIFParams(leak=1.0, threshold=0.6, reset="soft")
    layer = RecurrentLinearSTLLR(
        n_in, n_out, lif=lif, factors=STLLRFactors.from_list(factors), psi="a", weight_std=False
    ).double()
    with torch.no_grad():
        layer.weight.mul_(3.0)
    x = (torch.rand(steps, batch, n_in) < 0.5).to(D)
    delta = torch.randn(steps, batch, n_out, dtype=D)
    spikes, grad_x = _drive(layer, x, delta)
    params = [{"gamma": lif.gamma, "theta": lif.theta_eff, "reset": "soft"}] * n_out
    want = ref.recurrent_sequence(
        "lif", x, layer.weight.detach(), layer.weight_rec.detach(), layer.bias.detach(), delta,
        params, factors=factors, lambda_syn=0.0, psi="a",
    )  # fmt: skip
    assert spikes.sum() > 0
    assert torch.equal(spikes, want["spikes"])
    assert torch.allclose(layer.weight.grad, want["grad_w"], atol=1e-10, rtol=0)
    assert torch.allclose(layer.weight_rec.grad, want["grad_w_rec"], atol=1e-10, rtol=0)
    assert torch.allclose(layer.bias.grad, want["grad_b"], atol=1e-10, rtol=0)
    assert torch.allclose(grad_x, want["grad_x"], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "kind,mode",
    [("culif", "layer"), ("pculif", "neuron"), ("adlif", "layer"), ("cuadlif", "neuron")],
)
def test_causal_term_equals_autograd_where_exact(kind, mode):
    """No recurrence, λ_pre = α, λ_syn = β (one trace decay per layer, so the decays are
    equal across neurons), α_post = 0, soft reset and no adaptation coupling (a = b = 0):
    the S-TLLR gradients of the weights and of the neuron parameters are the true
    gradients of Σ_t δ[t]·s[t] with the reset's derivative dropped, which autograd
    computes through the pure step function (another implementation)."""
    torch.manual_seed(3)
    steps, batch, n_in, n_out = 10, 3, 6, 5
    spec = NeuronSpec(kind, tau_mem=4.0, tau_syn=3.0, threshold=0.2, reset="soft", decay_mode=mode)
    layer = RecurrentNeuronSTLLR(n_in, n_out, spec, psi="c", weight_std=False).double()
    # the trace decays are the population's own decays (σ of its float32-initialised logits)
    p = layer.neurons.params()
    alpha = float(p.alpha.detach().reshape(-1)[0])
    assert alpha == pytest.approx(math.exp(-1 / 4), rel=1e-6)
    layer.factors = STLLRFactors(lambda_post=0.5, lambda_pre=alpha, alpha_post=0.0, alpha_pre=1.0)
    if spec.current_based:
        layer.lambda_syn = float(p.beta.detach().reshape(-1)[0])
    with torch.no_grad():
        layer.weight.mul_(3.0)
        layer.weight_rec.zero_()
        if spec.adaptive:
            layer.neurons.a.zero_()
            layer.neurons.b.zero_()
    reference = copy.deepcopy(layer.neurons)  # its own parameters, for autograd's gradients
    x = (torch.rand(steps, batch, n_in) < 0.5).to(D)
    delta = torch.randn(steps, batch, n_out, dtype=D)
    spikes, _ = _drive(layer, x, delta)
    assert 0 < spikes.mean() < 1

    w = layer.weight.detach().clone().requires_grad_(True)
    params = reference.params()
    psi = get_surrogate("c")
    state = reference.zero_state(torch.zeros(batch, n_out, dtype=D))
    loss = 0.0
    for t in range(steps):
        c = x[t] @ w.t() + layer.bias.detach()
        s, _, state = reference.step(c, state, params, spike=lambda z: SpikeFn.apply(z, psi))
        loss = loss + (s * delta[t]).sum()
    loss.backward()
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-10, rtol=0)
    got = dict(layer.neurons.named_parameters())
    for name, prm in reference.named_parameters():
        # with a = b = 0, w stays 0 and ∂L/∂ρ is 0 in both (the naive reference checks ρ)
        assert prm.grad is not None and (name == "adapt_logit" or prm.grad.abs().sum() > 0), name
        assert torch.allclose(got[name].grad, prm.grad, atol=1e-10, rtol=0), name


def test_bptt_layer_trains_decays_and_stllr_runs_without_graph():
    torch.manual_seed(4)
    spec = NeuronSpec("adlif", threshold=0.2)
    layer = RecurrentNeuronBPTT(6, 5, spec)
    x = (torch.rand(12, 3, 6) < 0.5).float()
    loss = sum(layer(x[t]).sum() for t in range(12))
    loss.backward()
    for name in ("mem_logit", "adapt_logit", "a", "b"):
        assert getattr(layer.neurons, name).grad is not None, name
    stllr = RecurrentNeuronSTLLR(6, 5, spec)
    with torch.no_grad():
        out = stllr(x[0])
    assert out.grad_fn is None


# ---- configs ----


@pytest.mark.parametrize("neuron", ["culif", "pculif", "adlif", "cuadlif"])
@pytest.mark.parametrize("method", ["stllr", "bptt"])
def test_factory_builds_neuron_networks(neuron, method):
    cfg = ExperimentConfig(neuron=neuron, method=method, hidden=8)
    model, mode = build_model(cfg, (12,), 3)
    assert mode == method and model.family == ("bptt" if method == "bptt" else "stllr")
    assert model.rec.neurons.spec.kind == neuron
    model.reset_state()
    assert model(torch.zeros(2, 12)).shape == (2, 3)


def test_factory_rejects_bad_neuron_settings():
    with pytest.raises(UserError, match="neuron must be one of"):
        build_model(ExperimentConfig(neuron="izhikevich"), (12,), 3)
    with pytest.raises(UserError, match="tau_mem"):
        build_model(ExperimentConfig(neuron="culif", tau_mem=-1.0), (12,), 3)
    with pytest.raises(UserError, match="reset"):
        build_model(ExperimentConfig(reset="hard"), (12,), 3)
    with pytest.raises(UserError, match="shd_rsnn only"):
        build_model(ExperimentConfig(arch="vgg9", neuron="adlif"), (2, 8, 8), 3)


def test_adlif_run_resumes_bit_identically(tmp_path):
    """Through the experiment runner: the neurons' parameters (a, b drawn at random) are in
    the checkpoint and a resumed run ends where an uninterrupted one does."""
    from stllr.run import CHECKPOINT, run_experiment
    from tests.test_run_and_cli import _cfg, _tiny_task

    task = _tiny_task()
    kw = {"neuron": "adlif", "method": "stllr", "threshold": 0.3, "epochs": 2}
    run_experiment(_cfg(tmp_path / "a", **kw), progress=False, log=lambda s: None, data=task)
    part = _cfg(tmp_path / "b", **{**kw, "epochs": 1})
    run_experiment(part, progress=False, log=lambda s: None, data=task)
    resumed = _cfg(tmp_path / "b", **kw)
    run_experiment(resumed, resume=True, progress=False, log=lambda s: None, data=task)
    load = lambda p: torch.load(p / "t" / "trial_1" / CHECKPOINT, weights_only=True)["model"]  # noqa: E731
    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    assert any(k.endswith("neurons.a") for k in a)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
