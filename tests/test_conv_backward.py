"""The conv backward that leaves out zeros (stllr.conv_backward, docs/event_driven.md §6.2)
and the no-graph 2 × 2 max pooling (stllr.layers.pooling).

References: the lattice and off-lattice products against ``conv2d_input`` /
``conv2d_weight`` of the whole tensors (strides, padding, dilation, kernel sizes); a conv
layer whose δ lies on the lattice (with a few entries off it) against the per-sample loops
of tests/reference_stllr.py; the pooling against ``F.max_pool2d`` bitwise. The VGG model
with silent deep layers against an autograd reference is in tests/test_sample_skip.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from stllr import conv_backward
from stllr.conv_backward import (
    adjoint_ops,
    adjoint_weight,
    even_lattice,
    feature_map_weight_grad,
    input_grad,
)
from stllr.conv_events import CONV_EVENT_MAX_DENSITY, ConvEvents, conv_events, sparse_input
from stllr.factors import STLLRFactors
from stllr.functional import stllr_step
from stllr.layers.pooling import MaxPool2x2, max_pool_2x2
from stllr.layers.stllr_layers import Conv2dSTLLR
from stllr.neuron import LIFParams
from stllr.synapse_ops import Conv2dOps
from tests import reference_stllr as ref

F64 = torch.float64
stllr_step_even_lattice = even_lattice


def _lattice_delta(shape, n_off, gen):
    """Random δ ``shape`` zero off the even lattice except ``n_off`` entries."""
    delta = torch.zeros(shape, dtype=F64)
    delta[..., ::2, ::2] = torch.randn(delta[..., ::2, ::2].shape, generator=gen, dtype=F64)
    if n_off:  # on odd rows
        odd = torch.zeros(delta[..., 1::2, :].shape, dtype=F64)
        picked = torch.randperm(odd.numel(), generator=gen)[:n_off]
        odd.view(-1)[picked] = torch.randn(n_off, generator=gen, dtype=F64)
        delta[..., 1::2, :] = odd
    return delta


def test_even_lattice_detection():
    gen = torch.Generator().manual_seed(0)
    ops = Conv2dOps(padding=(1, 1))
    shape = (4, 5, 12, 12)  # 2880 entries: CONV_EVENT_MAX_DENSITY allows 7 off the lattice
    psi = torch.rand(shape, generator=gen, dtype=F64)
    on = even_lattice(ops, _lattice_delta(shape, 0, gen), psi, (3, 3))
    assert on.ops.stride == (2, 2) and on.off is None
    allowed = int(CONV_EVENT_MAX_DENSITY * 2880)
    near = even_lattice(ops, _lattice_delta(shape, allowed, gen), psi, (3, 3))
    assert near.off.shape == (allowed, 4) and near.adjoint.padding == (1, 1)
    assert all(int(i) % 2 or int(j) % 2 for *_, i, j in near.off.tolist())
    assert even_lattice(ops, _lattice_delta(shape, allowed + 1, gen), psi, (3, 3)) is None
    assert even_lattice(ops, torch.randn(shape, generator=gen, dtype=F64), psi, (3, 3)) is None
    # a strided convolution has no adjoint here: the lattice must be exact
    strided = Conv2dOps(stride=(2, 2), padding=(1, 1))
    assert even_lattice(strided, _lattice_delta(shape, 0, gen), psi, (3, 3)).ops.stride == (4, 4)
    assert even_lattice(strided, _lattice_delta(shape, 1, gen), psi, (3, 3)) is None


@pytest.mark.parametrize(
    "stride,padding,dilation,kernel,n_off",
    [(1, 1, 1, 3, 0), (1, 1, 1, 3, 5), (1, 2, 2, 3, 4), (1, 0, 1, 3, 3), (1, 2, 1, 5, 6),
     (2, 1, 1, 3, 0), (3, 1, 1, 5, 0)],
)  # fmt: skip
def test_lattice_products_match_the_whole_convolution(stride, padding, dilation, kernel, n_off):
    """Input gradient and the two-term weight gradient with δ on the lattice (and
    ``n_off`` entries off it) against conv2d_input / conv2d_weight of the whole tensors."""
    gen = torch.Generator().manual_seed(1)
    batch, c_in, c_out, size = 3, 4, 5, 23
    ops = Conv2dOps((stride, stride), (padding, padding), (dilation, dilation))
    h_out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    w = torch.randn(c_out, c_in, kernel, kernel, generator=gen, dtype=F64)
    x = (torch.rand(batch, c_in, size, size, generator=gen) < 0.3).to(F64)
    p = torch.rand(batch, c_in, size, size, generator=gen, dtype=F64)
    shape = (batch, c_out, h_out, h_out)
    delta = _lattice_delta(shape, n_off, gen)
    psi = torch.rand(shape, generator=gen, dtype=F64)
    q_prev = torch.rand(shape, generator=gen, dtype=F64)
    lattice = even_lattice(ops, delta, psi, (kernel, kernel))
    assert lattice is not None and (lattice.off is None) == (n_off == 0)
    g = psi * delta
    f = STLLRFactors(lambda_post=0.2, lambda_pre=0.75, alpha_post=-1.0, alpha_pre=0.5)
    s, pd, dl = (stride, stride), (padding, padding), (dilation, dilation)
    want_x = conv2d_input(x.shape, w, g, s, pd, dl)
    got_x = input_grad(ops, lattice, g, w, x.shape)
    assert (got_x - want_x).abs().max() <= 1e-12 * want_x.abs().max()
    want_w = f.alpha_pre * conv2d_weight(p, w.shape, g, s, pd, dl)
    want_w += f.alpha_post * conv2d_weight(x, w.shape, delta * q_prev, s, pd, dl)
    got_w = feature_map_weight_grad(ops, lattice, f, g, delta, q_prev, p, x, None, w.shape)
    assert (got_w - want_w).abs().max() <= 1e-12 * want_w.abs().max()


def test_adjoint_convolution_is_the_input_gradient_and_its_weight_gradient_the_correlation():
    gen = torch.Generator().manual_seed(2)
    ops = Conv2dOps((1, 1), (2, 1), (2, 1))
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=F64)
    g = torch.randn(2, 5, 9, 11, generator=gen, dtype=F64)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=F64)
    adj = adjoint_ops(ops, (3, 3))
    want = conv2d_input(x.shape, w, g, ops.stride, ops.padding, ops.dilation)
    got = F.conv2d(g, adjoint_weight(w), None, adj.stride, adj.padding, adj.dilation)
    assert torch.allclose(got, want, rtol=0.0, atol=1e-12)
    assert torch.equal(adjoint_weight(adjoint_weight(w)), w)
    assert adjoint_ops(Conv2dOps((2, 2), (1, 1)), (3, 3)) is None
    assert conv_events(g, adj, (3, 3)).out_shape == (2, 9, 11)


@pytest.mark.parametrize("events", [False, True])
def test_conv_layer_with_delta_on_the_lattice_matches_naive(monkeypatch, events):
    """δ on the even lattice with a few entries off it; inputs dense, then sparse (x and P
    dense products on the active samples) or, with ``events``, a few events per step (x
    and P as events): spikes and all gradients against the per-sample loops."""
    seen, p_kinds = [], []

    def spy(*args):
        seen.append(stllr_step_even_lattice(*args))
        return seen[-1]

    def p_spy(*args):
        p_kinds.append(type(sparse_input(*args)))
        return sparse_input(*args)

    monkeypatch.setattr(stllr_step, "even_lattice", spy)
    monkeypatch.setattr(conv_backward, "sparse_input", p_spy)
    torch.manual_seed(3)
    factors = [0.2, 0.75, -1.0, 1.0]
    lif = LIFParams(leak=0.0, threshold=0.6)
    layer = Conv2dSTLLR(
        3, 4, 3, padding=1, lif=lif, factors=STLLRFactors.from_list(factors), weight_std=False
    ).double()
    layer.event_inputs = "sparse"
    with torch.no_grad():
        layer.weight.normal_(0, 1.0)
        layer.bias.normal_(0.3, 0.1)
    gen = torch.Generator().manual_seed(4)
    steps, batch, size = 5, 3, 20
    x = (torch.rand(steps, batch, 3, size, size, generator=gen) < 0.2).to(F64)
    x[2:] *= (torch.rand(steps - 2, batch, 3, size, size, generator=gen) < 0.01).to(F64)
    if events:  # 2 events per step: P is at most 0.25 % non-zero for the first steps
        x.zero_()
        for t in range(steps):
            x[t, 2, torch.randint(3, (2,), generator=gen), 4 + 3 * t, (5, 11)] = float(t + 1)
    x[:, 1] = 0.0  # a silent sample
    delta = torch.stack([_lattice_delta((batch, 4, size, size), 2, gen) for _ in range(steps)])
    layer.reset_state()
    spikes, grad_x = [], []
    for t in range(steps):
        xt = x[t].clone().requires_grad_(True)
        s = layer(xt)
        (s * delta[t]).sum().backward()
        spikes.append(s.detach())
        grad_x.append(xt.grad)
    want = ref.conv_sequence(
        x, layer.weight.detach(), layer.bias.detach(), delta,
        stride=1, padding=1, gamma=lif.gamma, theta=lif.theta_eff, reset="soft",
        factors=factors, psi="b",
    )  # fmt: skip
    assert len(seen) == steps and all(lat is not None and lat.off is not None for lat in seen)
    assert (ConvEvents in p_kinds) == events
    spikes = torch.stack(spikes)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= 1e-10
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= 1e-10
    assert (torch.stack(grad_x) - want["grad_x"]).abs().max() <= 1e-10


@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_no_graph_max_pool_equals_max_pool2d_bitwise(size):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, *size, generator=gen)
    x[0, 1, 2, 3] = float("nan")
    spikes = (torch.rand(2, 3, *size, generator=gen) < 0.2).float()
    pool = MaxPool2x2()
    for t in (x, spikes):
        want = F.max_pool2d(t, 2)
        got = max_pool_2x2(t)
        assert got.is_contiguous() and torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(), want.nan_to_num())
        with torch.no_grad():
            assert torch.equal(pool(t).nan_to_num(), want.nan_to_num())
    y = spikes.clone().requires_grad_(True)
    pool(y).sum().backward()  # with a graph: nn.MaxPool2d's own path and backward
    want_grad = torch.autograd.grad(F.max_pool2d(spikes.requires_grad_(True), 2).sum(), spikes)
    assert torch.equal(y.grad, want_grad[0])
