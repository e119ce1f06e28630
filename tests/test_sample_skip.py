"""Feature-map S-TLLR layers skipping silent samples (stllr.sample_skip, docs/event_driven.md §6).

References: one conv / transposed-conv layer against the per-sample loops of
tests/reference_stllr.py with samples whose input (and pre-trace) is all zero, and with
inputs sparse enough for the event-driven current (checked alone against F.conv2d); the
VGG model (small widths, float64) against an S-TLLR step written here with plain
autograd (``F.conv2d`` on detached traces, the weight-standardisation formula, max
pooling and the head), both with the sample skipping and without, and with silent deep
layers (δ on the even lattice, stllr.conv_backward): identical spikes, gradients within
1e-10 relative; the in-place no-graph steps against the Function bitwise.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from stllr.conv_events import (
    CONV_EVENT_MAX_DENSITY,
    ConvEvents,
    conv_events,
    events_conv_current,
    events_conv_weight_grad,
    sparse_input,
)
from stllr.factors import STLLRFactors
from stllr.layers.stllr_layers import Conv2dSTLLR, ConvTranspose2dSTLLR
from stllr.models.base import SpikingModel
from stllr.models.vgg import GESTURE_FACTORS, VGGSTLLR
from stllr.neuron import LIFParams
from stllr.sample_skip import active_samples, subset_current
from stllr.spike_events import set_event_inputs
from stllr.surrogates import get_surrogate
from stllr.synapse_ops import Conv2dOps
from stllr.training import train_batch
from stllr.weight_standardization import standardize_weight_reference
from tests import reference_stllr as ref


def _silent_samples(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[T, B, ...]`` with sample 1 silent throughout (P stays zero) and sample 0
    silent after step 1 (x zero, P not)."""
    x = x.clone()
    x[:, 1] = 0.0
    x[2:, 0] = 0.0
    return x


def test_active_samples_lists_the_samples_with_a_non_zero_entry():
    x = torch.zeros(4, 2, 3)
    x[1, 0, 2] = 1.0
    x[3, 1, 0] = -0.5
    rows = active_samples(x)
    assert rows.index.tolist() == [1, 3] and rows.batch == 4
    assert active_samples(torch.ones(3, 2)) is None  # nothing to skip
    assert active_samples(torch.zeros(3, 2)).index.numel() == 0


def test_subset_current_gives_the_bias_to_silent_samples():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 5, generator=g, dtype=torch.float64)
    x[1] = 0.0
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    ops = Conv2dOps(padding=(1, 1))
    got = subset_current(ops, x, w, b, active_samples(x), torch.Size((3, 4, 5, 5)))
    want = F.conv2d(x, w, b, padding=1)
    assert torch.equal(got[1], b.view(4, 1, 1).expand(4, 5, 5))
    assert torch.equal(got, want)


@pytest.mark.parametrize("hw, stride", [(1, 1), (2, 2)])
def test_one_pixel_output_leaves_the_bias_alone(hw, stride):
    """A deep ResNet layer at batch 1 has a 1 × 1 output: the bias-filled current of the
    skipped path must be a new tensor (an expanded [1, O, 1, 1] view of the bias is
    already contiguous, and the in-place LIF step once wrote into the bias). Every step
    equals the dense path, input silent or not, and the bias is unchanged."""
    g = torch.Generator().manual_seed(4)
    layer = Conv2dSTLLR(8, 6, 3, stride=stride, padding=1).double()
    with torch.no_grad():
        layer.bias.uniform_(0.2, 0.6, generator=g)
    layer.requires_grad_(False)
    bias = layer.bias.clone()
    xs = (torch.rand(2, 6, 1, 8, hw, hw, generator=g, dtype=torch.float64) < 0.3).double()
    xs[:, :2] = 0.0  # silent first steps: the skipped path
    out = {}
    for mode in ("dense", "sparse"):
        m = copy.deepcopy(layer)
        set_event_inputs(m, mode)
        steps = []
        for sample in xs:
            m.reset_state()
            steps += [m(x).clone() for x in sample]
        out[mode] = torch.stack(steps)
        assert torch.equal(m.bias, bias), mode
    assert out["dense"].any()
    assert torch.equal(out["sparse"], out["dense"])


@pytest.mark.parametrize("factors", [[0.2, 0.75, -1.0, 1.0], [0.0, 0.6, 0.0, 1.0]])
@pytest.mark.parametrize("kind", ["conv", "conv_transpose"])
def test_layer_with_silent_samples_matches_naive(factors, kind):
    torch.manual_seed(1)
    steps, batch, c_in, c_out, size = 4, 3, 2, 3, 5
    lif = LIFParams(leak=0.0, threshold=0.6)
    f = STLLRFactors.from_list(factors)
    if kind == "conv":
        layer = Conv2dSTLLR(c_in, c_out, 3, padding=1, lif=lif, factors=f, weight_std=False)
        reference, stride, padding = ref.conv_sequence, 1, 1
    else:
        layer = ConvTranspose2dSTLLR(c_in, c_out, lif=lif, factors=f, weight_std=False)
        reference, stride, padding = ref.conv_transpose_sequence, 2, 1
    layer = layer.double()
    layer.event_inputs = "sparse"
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
        layer.bias.normal_(0, 0.1)
    x = _silent_samples(torch.rand(steps, batch, c_in, size, size, dtype=torch.float64))
    h_out, w_out = layer.output_shape(size, size)
    delta = torch.randn(steps, batch, c_out, h_out, w_out, dtype=torch.float64)
    layer.reset_state()
    spikes, grad_x = [], []
    for t in range(steps):
        xt = x[t].clone().requires_grad_(True)
        s = layer(xt)
        (s * delta[t]).sum().backward()
        spikes.append(s.detach())
        grad_x.append(xt.grad)
    want = reference(
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
        psi="b",
    )
    spikes = torch.stack(spikes)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= 1e-10
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= 1e-10
    assert (torch.stack(grad_x) - want["grad_x"]).abs().max() <= 1e-10


@pytest.mark.parametrize(
    "stride,padding,dilation,kernel",
    [(1, 1, 1, 3), (2, 1, 1, 3), (2, 0, 1, 3), (1, 2, 2, 3), (3, 1, 1, 5)],
)
def test_event_driven_conv_products_match_the_convolution(stride, padding, dilation, kernel):
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 4, 9, 11, generator=g) < 0.05).double()
    x = x * torch.rand(3, 4, 9, 11, generator=g, dtype=torch.float64)  # not only spikes
    x[1] = 0.0
    w = torch.randn(5, 4, kernel, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    ops = Conv2dOps((stride, stride), (padding, padding), (dilation, dilation))
    ev = conv_events(x, ops, (kernel, kernel))
    want = F.conv2d(x, w, b, stride, padding, dilation)
    assert ev.samples.index.tolist() == [0, 2]
    assert torch.allclose(events_conv_current(ev, w, b), want, rtol=0.0, atol=1e-12)
    a = torch.randn(want.shape, generator=g, dtype=torch.float64)
    want_grad = conv2d_weight(x, w.shape, a, stride, padding, dilation)
    got_grad = events_conv_weight_grad(ev, a, w.shape)
    assert torch.allclose(got_grad, want_grad, rtol=0.0, atol=1e-12)


def _very_sparse_input(steps, batch, channels, size, seed):
    """A few events per step (counts 1–3), well below CONV_EVENT_MAX_DENSITY."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(steps, batch, channels, size, size, dtype=torch.float64)
    for t in range(steps):
        for _ in range(6):
            b, c = (
                int(torch.randint(batch, (1,), generator=g)),
                int(torch.randint(channels, (1,), generator=g)),
            )
            i, j = torch.randint(size, (2,), generator=g).tolist()
            x[t, b, c, i, j] = float(torch.randint(1, 4, (1,), generator=g))
    return _silent_samples(x)


def test_conv_layer_on_events_matches_naive():
    """Inputs below CONV_EVENT_MAX_DENSITY take the event-driven current; against the
    per-sample loops (spikes, gradients of the weight, the bias and the input)."""
    torch.manual_seed(2)
    factors = [0.2, 0.75, -1.0, 1.0]
    lif = LIFParams(leak=0.0, threshold=0.6)
    layer = Conv2dSTLLR(
        4, 3, 3, padding=1, lif=lif, factors=STLLRFactors.from_list(factors), weight_std=False
    ).double()
    layer.event_inputs = "sparse"
    with torch.no_grad():
        layer.weight.normal_(0, 1.0)
        layer.bias.normal_(0.3, 0.1)
    x = _very_sparse_input(5, 3, 4, 20, seed=5)
    assert 0 < torch.count_nonzero(x[0]) <= CONV_EVENT_MAX_DENSITY * x[0].numel()
    kernel = tuple(layer.weight.shape[2:])
    assert isinstance(sparse_input(x[0], layer._ops, kernel), ConvEvents)
    assert sparse_input(torch.ones_like(x[0]), layer._ops, kernel) is None  # all active
    delta = torch.randn(5, 3, 3, 20, 20, dtype=torch.float64)
    layer.reset_state()
    spikes, grad_x = [], []
    for t in range(x.shape[0]):
        xt = x[t].clone().requires_grad_(True)
        s = layer(xt)
        (s * delta[t]).sum().backward()
        spikes.append(s.detach())
        grad_x.append(xt.grad)
    want = ref.conv_sequence(
        x,
        layer.weight.detach(),
        layer.bias.detach(),
        delta,
        stride=1,
        padding=1,
        gamma=lif.gamma,
        theta=lif.theta_eff,
        reset="soft",
        factors=factors,
        psi="b",
    )
    spikes = torch.stack(spikes)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, want["spikes"])
    assert (layer.weight.grad - want["grad_w"]).abs().max() <= 1e-10
    assert (layer.bias.grad - want["grad_b"]).abs().max() <= 1e-10
    assert (torch.stack(grad_x) - want["grad_x"]).abs().max() <= 1e-10


def _reference_vgg_step_grads(model: VGGSTLLR, x, y, window):
    """S-TLLR on ``model``'s parameters written with plain autograd, step by step.

    Every layer keeps ũ, P, Q as plain tensors (the LIF and traces of docs/rule.md); the
    spikes get the S-TLLR gradient through ``s + (z − z.detach())`` terms whose
    derivative is Ψ(v)·∂I/∂· for the current and the causal half (``conv(α_pre·P, Ŵ)``)
    and Q[t−1]·∂/∂Ŵ of ``conv(α_post·x, Ŵ)`` for the non-causal half; nothing flows
    through time. Returns the summed logits, the spikes of every layer and the gradients.
    """
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    f, lif = GESTURE_FACTORS, model.convs[0].lif
    psi = get_surrogate(model.convs[0].psi_name)
    steps, batch = x.shape[:2]
    states = [None] * len(model.convs)
    logits, spikes = 0.0, []
    for t in range(steps):
        graph = t >= steps - window
        with torch.set_grad_enabled(graph):
            h = x[t]
            for i in range(len(model.convs)):
                w_hat = standardize_weight_reference(
                    params[f"convs.{i}.weight"], params[f"convs.{i}.gain"]
                )
                b = params[f"convs.{i}.bias"]
                current = F.conv2d(h.detach(), w_hat.detach(), b.detach(), padding=1)
                if states[i] is None:
                    zeros = torch.zeros_like(current)
                    states[i] = (zeros, torch.zeros_like(h), zeros)
                u, p, q_prev = states[i]
                p = f.lambda_pre * p + h.detach()
                m = lif.gamma * u + current
                v = m - lif.theta_eff
                s = (v > 0).to(v.dtype)
                u = m - lif.theta_eff * s
                dpsi = psi(v)
                q = f.lambda_post * q_prev + dpsi
                states[i] = (u, p, q)
                spikes.append(s)
                if graph:
                    drive = F.conv2d(h, w_hat.detach(), b, padding=1)
                    causal = F.conv2d(f.alpha_pre * p, w_hat, None, padding=1)
                    acausal = F.conv2d(f.alpha_post * h.detach(), w_hat, None, padding=1)
                    s = s + (drive - drive.detach() + causal - causal.detach()) * dpsi
                    s = s + (acausal - acausal.detach()) * q_prev
                h = model.pools[i](s)
            out = F.linear(h.mean(dim=(2, 3)), params["head.weight"], params["head.bias"])
            if graph:
                F.cross_entropy(out, y).backward()
            logits = logits + out.detach()
    return logits, spikes, {n: p.grad for n, p in params.items()}


def _model_spikes(model):
    """A list that collects every conv layer's spikes in call order, and the hooks."""
    spikes = []

    def record(_module, _inputs, out):
        spikes.append(out.detach().clone())

    return spikes, [c.register_forward_hook(record) for c in model.convs]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_vgg_matches_an_autograd_reference_with_and_without_skipping(mode):
    torch.manual_seed(0)
    model = VGGSTLLR(input_shape=(2, 12, 12), channels=(3, 4, 4, 5, 5, 6, 6, 6)).double()
    with torch.no_grad():
        for conv in model.convs:
            conv.gain.fill_(3.0)
    set_event_inputs(model, mode)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(6, 4, 2, 12, 12, generator=g) < 0.3).double()
    x = _silent_samples(x)
    y = torch.randint(0, 11, (4,), generator=g)
    want_logits, want_spikes, want_grads = _reference_vgg_step_grads(model, x, y, window=3)

    spikes, handles = _model_spikes(model)
    res = train_batch(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), window=3)
    for h in handles:
        h.remove()
    assert len(spikes) == len(want_spikes) == 6 * 8
    assert all(s[1].sum() == 0 for s in spikes), "sample 1 stays silent"
    assert all(s[0].sum() > 0 for s in spikes[:8]), "sample 0 spikes in every layer at t = 0"
    for got, want in zip(spikes, want_spikes, strict=True):
        assert torch.equal(got, want)
    assert torch.allclose(res.logits, want_logits, rtol=1e-12, atol=1e-12)
    for name, p in model.named_parameters():
        want = want_grads[name]
        assert want.abs().max() > 0, name
        assert (p.grad - want).abs().max() <= 1e-10 * want.abs().max(), name


@pytest.mark.parametrize("rate", [0.2, 0.002])
def test_vgg_skipping_equals_dense_in_float32(rate):
    """Full-depth VGG at small widths in float32: identical spikes, gradients within
    1e-5 relative of the dense path (at 0.2 % input the first layer's current is
    event-driven)."""
    torch.manual_seed(0)
    dense = VGGSTLLR(input_shape=(2, 16, 16), channels=(8, 8, 16, 16, 16, 16, 16, 16))
    with torch.no_grad():
        for conv in dense.convs:
            conv.gain.fill_(2.0)
    auto = copy.deepcopy(dense)
    set_event_inputs(auto, "auto")
    g = torch.Generator().manual_seed(2)
    x = _silent_samples((torch.rand(8, 6, 2, 16, 16, generator=g) < rate).float())
    y = torch.randint(0, 11, (6,), generator=g)
    out = {}
    for name, model in (("dense", dense), ("auto", auto)):
        spikes, handles = _model_spikes(model)
        res = train_batch(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), window=3)
        for h in handles:
            h.remove()
        out[name] = (torch.cat([s.flatten() for s in spikes]), res.logits, model)
    assert torch.equal(out["auto"][0], out["dense"][0])
    assert torch.allclose(out["auto"][1], out["dense"][1], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(dense.named_parameters(), auto.parameters(), strict=True):
        assert (q.grad - p.grad).abs().max() <= 1e-5 * p.grad.abs().max(), name


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_vgg_no_graph_steps_equal_the_function_bitwise(mode):
    torch.manual_seed(3)
    model = VGGSTLLR(input_shape=(2, 8, 8), channels=(3, 4, 4, 4, 5, 5, 5, 5))
    with torch.no_grad():
        for conv in model.convs:
            conv.gain.fill_(3.0)
    set_event_inputs(model, mode)
    x = _silent_samples((torch.rand(7, 3, 2, 8, 8) < 0.3).float())
    model.reset_state()
    want = SpikingModel.forward_no_graph(model, x[:0])  # zeros
    for t in range(x.shape[0]):  # the Function (a graph at every step)
        want = want + model(x[t]).detach()
    want_states = [[t.clone() for t in c.state] for c in model.convs]
    model.reset_state()
    got = model.forward_no_graph(x)  # in-place no-graph steps
    assert torch.equal(got, want)
    for conv, states in zip(model.convs, want_states, strict=True):
        for a, b in zip(conv.state, states, strict=True):
            assert torch.equal(a, b)


def test_vgg_with_silent_deep_layers_matches_the_autograd_reference(monkeypatch):
    """Deep layers silent (gain 0.3 from layer 3 on): below their max pooling δ lies on
    the even lattice (stllr.conv_backward), and their pre-traces are zero or a few
    events. Float64 against the autograd reference: identical spikes, gradients within
    1e-10 relative (exactly zero where the reference's are)."""
    from stllr import conv_backward
    from stllr.functional import stllr_step

    lattices = []

    def spy(*args):
        lattices.append(conv_backward.even_lattice(*args))
        return lattices[-1]

    monkeypatch.setattr(stllr_step, "even_lattice", spy)
    torch.manual_seed(0)
    model = VGGSTLLR(input_shape=(2, 16, 16), channels=(3, 4, 4, 5, 5, 6, 6, 6)).double()
    with torch.no_grad():
        for i, conv in enumerate(model.convs):
            conv.gain.fill_(3.0 if i < 2 else 0.3)
    set_event_inputs(model, "sparse")
    g = torch.Generator().manual_seed(1)
    x = _silent_samples((torch.rand(6, 4, 2, 16, 16, generator=g) < 0.3).double())
    y = torch.randint(0, 11, (4,), generator=g)
    want_logits, want_spikes, want_grads = _reference_vgg_step_grads(model, x, y, window=3)
    spikes, handles = _model_spikes(model)
    res = train_batch(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), window=3)
    for h in handles:
        h.remove()
    assert sum(lat is not None for lat in lattices) >= 6  # layers 4 and 6 at 3 steps
    assert all(s.sum() == 0 for s in spikes[4::8]), "layer 5 is silent"
    for got, want in zip(spikes, want_spikes, strict=True):
        assert torch.equal(got, want)
    assert torch.allclose(res.logits, want_logits, rtol=1e-12, atol=1e-12)
    for name, p in model.named_parameters():
        want = want_grads[name]
        assert (p.grad - want).abs().max() <= 1e-10 * want.abs().max(), name
