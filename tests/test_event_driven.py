"""The event-driven path of the dense S-TLLR layers (docs/event_driven.md).

References: the event products against loops over the non-zero entries written here; the
SHD model's sparse path against its dense path (gradients within 1e-5 relative, identical
spikes, logits); the sparse no-graph steps against the sparse Function bitwise; the switch
against the density computed by hand.
"""

from __future__ import annotations

import copy

import pytest
import torch

from stllr.config import ExperimentConfig, check_training
from stllr.errors import UserError
from stllr.factors import STLLRFactors
from stllr.layers.stllr_layers import LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.factory import build_model
from stllr.models.shd import SHDNetSTLLR
from stllr.neuron import LIFParams
from stllr.spike_events import (
    DENSITY_SAMPLE,
    MIN_EVENT_MACS,
    SPARSE_MAX_DENSITY,
    density,
    events_current,
    events_weight_grad_t,
    row_events,
    set_event_inputs,
    transposed,
    use_events,
)
from stllr.training import evaluate_batch, train_batch


def _sparse_input(b, n, rate, seed, counts=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, n, generator=g) < rate).double()
    if counts:  # event counts and a negative value: not only spikes
        x = x * torch.randint(1, 4, (b, n), generator=g).double()
        x[0, x[0].nonzero()[0, 0]] = -1.5
    x[1] = 0.0  # a sample without events
    return x


@pytest.mark.parametrize("counts", [False, True])
def test_event_products_match_loops_over_the_events(counts):
    x = _sparse_input(5, 11, 0.3, 0, counts)
    g = torch.Generator().manual_seed(1)
    w, bias, a = (
        torch.randn(*s, generator=g, dtype=torch.float64) for s in ((7, 11), (7,), (5, 7))
    )
    want_current = bias.repeat(5, 1)
    want_grad_t = torch.zeros(11, 7, dtype=torch.float64)
    for b in range(5):
        for j in range(11):
            if x[b, j] != 0:
                want_current[b] += x[b, j] * w[:, j]
                want_grad_t[j] += x[b, j] * a[b]
    ev = row_events(x, binary=False)
    assert ev.rows.numel() == int((x != 0).sum())
    assert torch.allclose(events_current(ev, transposed(w), bias), want_current, atol=1e-12)
    assert torch.allclose(events_current(ev, transposed(w), None), want_current - bias)
    assert torch.allclose(events_weight_grad_t(a, ev), want_grad_t, atol=1e-12)
    if not counts:  # spikes: the values need not be gathered
        evb = row_events(x, binary=True)
        assert evb.values is None
        assert torch.allclose(events_current(evb, transposed(w), bias), want_current)
        assert torch.allclose(events_weight_grad_t(a, evb), want_grad_t, atol=1e-12)


def test_event_products_of_an_input_without_events_are_zero():
    x = torch.zeros(4, 6)
    ev = row_events(x, binary=True)
    assert torch.equal(events_current(ev, transposed(torch.ones(3, 6)), None), torch.zeros(4, 3))
    assert torch.equal(events_weight_grad_t(torch.ones(4, 3), ev), torch.zeros(6, 3))


def test_the_switch_follows_the_measured_density_and_the_product_size():
    x = torch.zeros(80, 100)  # fewer elements than DENSITY_SAMPLE: all counted
    x[:, : int(100 * SPARSE_MAX_DENSITY)] = 1.0  # exactly at the threshold
    assert density(x, binary=True) == pytest.approx(SPARSE_MAX_DENSITY)
    assert density(x) == pytest.approx(SPARSE_MAX_DENSITY)
    big = -(-MIN_EVENT_MACS // x.numel())  # the fewest outputs for MIN_EVENT_MACS
    assert use_events("auto", x, big) and use_events("auto", x, big, binary=True)
    assert not use_events("auto", x, big - 1)  # a smaller product stays dense
    x[:, int(100 * SPARSE_MAX_DENSITY)] = 1.0  # one more event per sample: above
    assert not use_events("auto", x, big) and not use_events("auto", x, big, binary=True)
    assert use_events("sparse", x, 1) and not use_events("dense", torch.zeros(3, 3), 10**9)
    # a non-binary operand's density is estimated from its first DENSITY_SAMPLE elements
    tail = torch.cat([torch.zeros(DENSITY_SAMPLE), torch.full((DENSITY_SAMPLE,), 2.0)])
    assert density(tail) == 0.0 and density(tail, binary=True) == 1.0


def test_the_switch_is_set_per_layer_from_the_config():
    model, _ = build_model(ExperimentConfig(hidden=16), (30,), 4)
    assert model.rec.event_inputs == "auto"  # the config's default
    model, _ = build_model(ExperimentConfig(hidden=16, event_inputs="sparse"), (30,), 4)
    assert model.rec.event_inputs == "sparse"
    assert set_event_inputs(model, "dense") == 1 and model.rec.event_inputs == "dense"
    with pytest.raises(ValueError, match="event_inputs"):
        model.rec.event_inputs = "fast"
    with pytest.raises(UserError, match="event_inputs must be one of"):
        check_training(ExperimentConfig(event_inputs="fast"))


def _pair(dtype, n_in, hidden, factors=None, feedback="BP"):
    torch.manual_seed(0)
    kw = {"factors": factors} if factors is not None else {}
    dense = SHDNetSTLLR(num_inputs=n_in, hidden=hidden, num_classes=5, feedback=feedback, **kw)
    dense = dense.to(dtype)
    sparse = copy.deepcopy(dense)
    set_event_inputs(sparse, "sparse")
    assert dense.rec.event_inputs == "dense"
    return dense, sparse


def _hidden_spikes(model, x):
    model.reset_state()
    with torch.no_grad():
        return torch.stack([model.rec(x[t]) for t in range(x.shape[0])])


def _train(model, x, y, window):
    res = train_batch(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), window=window)
    return res.logits, {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same_training(dense, sparse, x, y, window, rtol):
    assert torch.equal(_hidden_spikes(dense, x), _hidden_spikes(sparse, x))
    logits_d, grads_d = _train(dense, x, y, window)
    logits_s, grads_s = _train(sparse, x, y, window)
    assert torch.allclose(logits_s, logits_d, rtol=rtol, atol=0.0)
    for name, want in grads_d.items():
        err = (grads_s[name] - want).abs().max() / want.abs().max()
        assert err <= rtol, (name, float(err))


@pytest.mark.parametrize(
    "factors,feedback",
    [
        (None, "BP"),  # the SHD factors
        (STLLRFactors(0.5, 0.8, -0.2, 1.0), "DFA"),
        (STLLRFactors(0.0, 0.6, 0.0, 1.0), "BP"),  # α_post = 0: no event-driven gradient
    ],
)
def test_shd_sparse_path_matches_dense_float64(factors, feedback):
    dense, sparse = _pair(torch.float64, 120, 64, factors, feedback)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(30, 16, 120, generator=g) < 0.05).double()
    y = torch.randint(0, 5, (16,), generator=g)
    _assert_same_training(dense, sparse, x, y, window=8, rtol=1e-10)


def _max_rel(got: dict, want: dict) -> dict:
    return {n: float((got[n].double() - w).abs().max() / w.abs().max()) for n, w in want.items()}


def test_shd_sparse_path_matches_dense_float32_at_full_width():
    """700 → 450 → 20 in float32 at 3 % input spikes: identical spikes, and the sparse
    gradients as close to the float64 ones as the dense float32 gradients are (within
    1e-5 more). Both float32 paths are ~6e-5 off float64 here (Ψ (a) is steep: rounding
    of the membrane moves Ψ), so sparse vs dense is compared through that reference."""
    dense, sparse = _pair(torch.float32, 700, 450)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(25, 32, 700, generator=g) < 0.03).float()
    y = torch.randint(0, 5, (32,), generator=g)
    assert torch.equal(_hidden_spikes(dense, x), _hidden_spikes(sparse, x))
    _, grads_64 = _train(copy.deepcopy(dense).double(), x.double(), y, 10)
    logits_d, grads_d = _train(dense, x, y, 10)
    logits_s, grads_s = _train(sparse, x, y, 10)
    assert torch.allclose(logits_s, logits_d, rtol=1e-5, atol=1e-5)
    err_d, err_s = _max_rel(grads_d, grads_64), _max_rel(grads_s, grads_64)
    for name in grads_64:
        assert err_s[name] <= err_d[name] + 1e-5, (name, err_s[name], err_d[name])
    auto = copy.deepcopy(dense)
    set_event_inputs(auto, "auto")
    want = evaluate_batch(dense, x).logits
    assert torch.allclose(evaluate_batch(auto, x).logits, want, rtol=1e-5, atol=1e-5)


def test_sparse_no_graph_steps_match_the_sparse_function_bitwise():
    torch.manual_seed(0)
    lif = LIFParams(leak=2.0, threshold=0.6)
    layer = RecurrentLinearSTLLR(40, 24, lif=lif, factors=STLLRFactors(0.5, 0.8, -0.2, 1.0))
    layer.event_inputs = "sparse"
    x = (torch.rand(12, 6, 40) < 0.2).float() * torch.rand(12, 6, 40)  # non-binary inputs
    want = []
    layer.reset_state()
    for t in range(x.shape[0]):  # the Function (with a graph)
        want.append(layer(x[t]).detach())
    want_state = [t.clone() for t in layer.state]
    layer.reset_state()
    with torch.no_grad():
        run = layer.no_graph_run(x[0])
        got = [run.step(x[t]) for t in range(x.shape[0])]
        run.close()
    assert 0 < torch.stack(want).sum() < torch.stack(want).numel()
    assert torch.equal(torch.stack(got), torch.stack(want))
    for a, b in zip(layer.state, want_state, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "factors", [STLLRFactors(0.5, 0.8, -0.2, 1.0), STLLRFactors(0.0, 0.6, 0.0, 1.0)]
)
def test_feed_forward_layers_sparse_path_matches_dense(factors):
    """Two LinearSTLLR layers (the second fed by spikes), a random loss at every step:
    the sparse path's spikes and gradients equal the dense path's (float64)."""
    torch.manual_seed(0)
    lif = LIFParams(leak=2.0, threshold=0.3)
    make = [
        LinearSTLLR(120, 64, lif=lif, factors=factors),
        LinearSTLLR(64, 32, lif=lif, factors=factors),
    ]
    dense = torch.nn.Sequential(*make).double()
    sparse = copy.deepcopy(dense)
    for layer in sparse:
        layer.event_inputs = "sparse"
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(10, 8, 120, generator=g) < 0.1).double() * 2.0
    r = torch.randn(10, 8, 32, generator=g, dtype=torch.float64)
    outs = {}
    for name, net in (("dense", dense), ("sparse", sparse)):
        for layer in net:
            layer.reset_state()
        spikes = []
        for t in range(x.shape[0]):
            h = net[0](x[t])
            out = net[1](h)
            (out * r[t]).sum().backward()
            spikes.append(torch.cat([h.detach(), out.detach()], dim=1))
        outs[name] = torch.stack(spikes), {n: p.grad for n, p in net.named_parameters()}
    assert 0 < outs["dense"][0].sum() < outs["dense"][0].numel()
    assert torch.equal(outs["sparse"][0], outs["dense"][0])
    for name, want in outs["dense"][1].items():
        got = outs["sparse"][1][name]
        assert (got - want).abs().max() <= 1e-10 * want.abs().max(), name
