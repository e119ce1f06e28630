"""Fast S-TLLR layers vs the naive per-sample reference (float64, ≤ 1e-10)."""

from __future__ import annotations

import pytest
import torch

from stllr.factors import STLLRFactors
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.neuron import LIFParams
from stllr.weight_standardization import standardize_weight, standardize_weight_reference
from tests import reference_stllr as ref

TOL = 1e-10
FACTOR_SETS = [
    [0.5, 0.8, -0.2, 1.0],  # code default
    [0.2, 0.75, -1.0, 1.0],  # Gesture
    [0.5, 1.0, 1.0, 1.0],  # SHD
    [0.0, 0.6, 0.0, 1.0],  # OTTT-like
    [0.9, 0.3, -3.0, 0.4],  # large negative alpha_post, small alpha_pre
]


def _run_layer(layer, x, delta):
    """Drive ``layer`` step by step and backpropagate ``delta[t]`` at each step."""
    layer.reset_state()
    spikes, grad_x = [], []
    for t in range(x.shape[0]):
        xt = x[t].clone().requires_grad_(True)
        s = layer(xt)
        (s * delta[t]).sum().backward()
        spikes.append(s.detach())
        grad_x.append(xt.grad)
    return torch.stack(spikes), torch.stack(grad_x)


def _lif(leak, reset):
    return LIFParams(leak=leak, threshold=0.6, reset=reset)


@pytest.mark.parametrize("factors", FACTOR_SETS)
@pytest.mark.parametrize("psi,reset", [("a", "soft"), ("b", "hard"), ("c", "soft"), ("d", "soft")])
def test_linear_matches_naive(factors, psi, reset):
    torch.manual_seed(0)
    steps, batch, n_in, n_out = 7, 3, 6, 5
    lif = _lif(1.0, reset)
    layer = LinearSTLLR(
        n_in, n_out, lif=lif, factors=STLLRFactors.from_list(factors), psi=psi, weight_std=False
    ).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.6)
        layer.bias.normal_(0, 0.2)
    x = torch.rand(steps, batch, n_in, dtype=torch.float64)
    delta = torch.randn(steps, batch, n_out, dtype=torch.float64)
    delta[:2] = 0.0  # outside the learning window
    spikes, grad_x = _run_layer(layer, x, delta)
    want = ref.linear_sequence(
        x,
        layer.weight.detach(),
        layer.bias.detach(),
        delta,
        gamma=lif.gamma,
        theta=lif.theta_eff,
        reset=reset,
        factors=factors,
        psi=psi,
    )
    assert 0 < spikes.sum() < spikes.numel(), "test inputs must make some but not all units spike"
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= TOL
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= TOL
    assert (grad_x - want["grad_x"]).abs().max() <= TOL


@pytest.mark.parametrize("factors", FACTOR_SETS[:3] + FACTOR_SETS[4:])
@pytest.mark.parametrize("stride,padding,psi", [(1, 1, "b"), (2, 0, "c"), (2, 1, "a")])
def test_conv_matches_naive(factors, stride, padding, psi):
    torch.manual_seed(1)
    steps, batch, c_in, c_out, size = 4, 2, 2, 3, 5
    lif = _lif(0.0, "soft")
    layer = Conv2dSTLLR(
        c_in,
        c_out,
        3,
        stride=stride,
        padding=padding,
        lif=lif,
        factors=STLLRFactors.from_list(factors),
        psi=psi,
        weight_std=False,
    ).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.4)
        layer.bias.normal_(0, 0.1)
    x = torch.rand(steps, batch, c_in, size, size, dtype=torch.float64)
    h_out, w_out = layer.output_shape(size, size)
    delta = torch.randn(steps, batch, c_out, h_out, w_out, dtype=torch.float64)
    delta[0] = 0.0
    spikes, grad_x = _run_layer(layer, x, delta)
    want = ref.conv_sequence(
        x,
        layer.weight.detach(),
        layer.bias.detach(),
        delta,
        stride=stride,
        padding=padding,
        gamma=lif.gamma,
        theta=lif.theta_eff,
        reset="soft",
        factors=factors,
        psi=psi,
    )
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= TOL
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= TOL
    assert (grad_x - want["grad_x"]).abs().max() <= TOL


@pytest.mark.parametrize("factors", FACTOR_SETS)
def test_recurrent_matches_naive(factors):
    torch.manual_seed(2)
    steps, batch, n_in, n_out = 8, 2, 5, 4
    lif = _lif(5.0, "soft")
    layer = RecurrentLinearSTLLR(
        n_in, n_out, lif=lif, factors=STLLRFactors.from_list(factors), psi="c", weight_std=False
    ).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
        layer.weight_rec.normal_(0, 0.5)
        layer.bias.normal_(0, 0.1)
    x = torch.rand(steps, batch, n_in, dtype=torch.float64)
    delta = torch.randn(steps, batch, n_out, dtype=torch.float64)
    spikes, grad_x = _run_layer(layer, x, delta)
    want = ref.linear_sequence(
        x,
        layer.weight.detach(),
        layer.bias.detach(),
        delta,
        gamma=lif.gamma,
        theta=lif.theta_eff,
        reset="soft",
        factors=factors,
        psi="c",
        w_rec=layer.weight_rec.detach(),
    )
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= TOL
    assert (layer.weight_rec.grad - want["grad_w_rec"]).abs().max() <= TOL
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= TOL
    assert (grad_x - want["grad_x"]).abs().max() <= TOL


def test_readout_matches_naive():
    torch.manual_seed(3)
    steps, batch, n_in, n_out = 6, 3, 5, 4
    layer = AccumulateReadout(n_in, n_out, leak=5.0, lambda_pre=0.99).double()
    h = (torch.rand(steps, batch, n_in, dtype=torch.float64) < 0.4).double()
    delta = torch.randn(steps, batch, n_out, dtype=torch.float64)
    layer.reset_state()
    logits, grad_h = [], []
    for t in range(steps):
        ht = h[t].clone().requires_grad_(True)
        o = layer(ht)
        (o * delta[t]).sum().backward()
        logits.append(o.detach())
        grad_h.append(ht.grad)
    want = ref.readout_sequence(
        h, layer.weight.detach(), layer.bias.detach(), delta, gamma=layer.gamma, lambda_pre=0.99
    )
    assert (torch.stack(logits) - want["logits"]).abs().max() <= TOL
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= TOL
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= TOL
    assert (torch.stack(grad_h) - want["grad_x"]).abs().max() <= TOL


def test_weight_standardization_stays_in_graph():
    """With WS, grad of W and gain = the WS Jacobian applied to the naive ∂L/∂Ŵ."""
    torch.manual_seed(4)
    steps, batch, n_in, n_out = 5, 2, 6, 4
    factors = [0.2, 0.75, -1.0, 1.0]
    lif = _lif(1.0, "soft")
    layer = LinearSTLLR(
        n_in, n_out, lif=lif, factors=STLLRFactors.from_list(factors), psi="b"
    ).double()
    with torch.no_grad():
        layer.weight.normal_(0, 1.0)
        layer.gain.uniform_(1.5, 3.0)
    x = torch.rand(steps, batch, n_in, dtype=torch.float64)
    delta = torch.randn(steps, batch, n_out, dtype=torch.float64)
    _run_layer(layer, x, delta)
    w = layer.weight.detach().clone().requires_grad_(True)
    g = layer.gain.detach().clone().requires_grad_(True)
    w_hat = standardize_weight(w, g)
    want = ref.linear_sequence(
        x,
        w_hat.detach(),
        layer.bias.detach(),
        delta,
        gamma=lif.gamma,
        theta=lif.theta_eff,
        reset="soft",
        factors=factors,
        psi="b",
    )
    grad_w, grad_g = torch.autograd.grad(w_hat, (w, g), want["grad_w"])
    assert layer.gain.grad.abs().max() > 0
    assert (layer.weight.grad - grad_w).abs().max() <= TOL
    assert (layer.gain.grad - grad_g).abs().max() <= TOL


def test_weight_standardization_formula():
    """Ŵ against the formula with the unbiased variance, computed by hand."""
    w = torch.tensor([[1.0, 2.0, 4.0], [0.0, -1.0, 1.0]], dtype=torch.float64)
    g = torch.tensor([[2.0], [1.0]], dtype=torch.float64)
    row = w[0]
    mean = row.sum() / 3
    var = ((row - mean) ** 2).sum() / 2
    expected0 = 2.0 * (row - mean) / torch.sqrt(var * 3 + 1e-4)
    got = standardize_weight(w, g)
    assert torch.allclose(got[0], expected0, atol=1e-14, rtol=0)


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 3, 3), (4, 2)])
def test_standardization_function_matches_plain_autograd(shape):
    """The memory-lean WS Function vs the formula differentiated by autograd."""
    torch.manual_seed(5)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    g = torch.rand(shape[0], *[1] * (len(shape) - 1), dtype=torch.float64) + 0.5
    g.requires_grad_(True)
    up = torch.randn(*shape, dtype=torch.float64)
    fast = standardize_weight(w, g)
    ref = standardize_weight_reference(w, g)
    assert (fast - ref).abs().max() <= 1e-13
    got = torch.autograd.grad(fast, (w, g), up)
    want = torch.autograd.grad(ref, (w, g), up)
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max() <= 1e-12
    assert torch.autograd.gradcheck(lambda a, b: standardize_weight(a, b), (w, g))


def test_standardization_rejects_fan_in_one():
    with pytest.raises(ValueError, match=r"fan-in of at least 2, got weight shape \(4, 1\)"):
        standardize_weight(torch.ones(4, 1), None)
