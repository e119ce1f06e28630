"""The transposed-convolution S-TLLR layer (FSFN decoder) against independent references:
a naive scatter loop (float64, ≤ 1e-10) for the whole rule, and plain autograd through
``conv_transpose2d`` with a surrogate spike where the two coincide (T = 1)."""

from __future__ import annotations

import pytest
import torch

from stllr.factors import STLLRFactors
from stllr.layers.bptt import BPTTLIF, ScaledWSConvTranspose2d
from stllr.layers.stllr_layers import ConvTranspose2dSTLLR
from stllr.neuron import LIFParams
from tests import reference_stllr as ref
from tests.test_stllr_gradients import _run_layer

TOL = 1e-10


@pytest.mark.parametrize(
    "factors,stride,padding,k,psi",
    [
        ([0.5, 0.8, -0.2, 1.0], 2, 1, 4, "d"),  # FSFN: the paper's flow factors, Ψ (d)
        ([0.5, 0.8, 0.2, 1.0], 2, 0, 3, "b"),
        ([0.2, 0.75, -1.0, 0.5], 1, 1, 3, "c"),
    ],
)
def test_conv_transpose_matches_naive(factors, stride, padding, k, psi):
    torch.manual_seed(3)
    steps, batch, c_in, c_out, size = 4, 2, 2, 3, 3
    lif = LIFParams(leak=0.0, threshold=0.6)
    layer = ConvTranspose2dSTLLR(
        c_in,
        c_out,
        k,
        stride=stride,
        padding=padding,
        lif=lif,
        factors=STLLRFactors.from_list(factors),
        psi=psi,
        weight_std=False,
    ).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
        layer.bias.normal_(0, 0.1)
    x = torch.rand(steps, batch, c_in, size, size, dtype=torch.float64)
    h_out, w_out = layer.output_shape(size, size)
    delta = torch.randn(steps, batch, c_out, h_out, w_out, dtype=torch.float64)
    delta[0] = 0.0
    spikes, grad_x = _run_layer(layer, x, delta)
    want = ref.conv_transpose_sequence(
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
    assert spikes.shape == want["spikes"].shape
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= TOL
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= TOL
    assert (grad_x - want["grad_x"]).abs().max() <= TOL


def test_one_step_equals_autograd_with_weight_standardisation():
    """At T = 1 (zero state, α_pre = 1) the S-TLLR gradient is the surrogate gradient that
    autograd gives through the BPTT twin, weight standardisation and gain included."""
    torch.manual_seed(4)
    lif = LIFParams(leak=0.0, threshold=0.6)
    f = STLLRFactors(0.5, 0.8, -0.2, 1.0)
    a = ConvTranspose2dSTLLR(3, 4, 4, 2, 1, lif=lif, factors=f, psi="d").double()
    b_conv = ScaledWSConvTranspose2d(3, 4, 4, 2, 1).double()
    b_lif = BPTTLIF(lif, psi="d")
    with torch.no_grad():
        b_conv.weight.copy_(a.weight)
        a.bias.normal_(0, 0.3)
        b_conv.bias.copy_(a.bias)
        a.gain.uniform_(0.5, 2.0)
        b_conv.gain.copy_(a.gain)
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64) * 2
    delta = torch.randn(2, 4, 10, 10, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    sa = a(xa)
    sb = b_lif(b_conv(xb))
    assert torch.equal(sa, sb) and 0 < sa.sum() < sa.numel()
    (sa * delta).sum().backward()
    (sb * delta).sum().backward()
    for pa, pb in [(a.weight, b_conv.weight), (a.gain, b_conv.gain), (a.bias, b_conv.bias)]:
        assert torch.allclose(pa.grad, pb.grad, atol=1e-10), (pa.grad - pb.grad).abs().max()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-10)
