"""Steps without a graph (outside the learning window, evaluation) give bitwise the results
of the autograd Functions: in-place twins of Ψ/LIF/traces, the recurrent layer's and the
readout's no-graph paths, the SHD model's one-loop ``forward_no_graph`` and ``train_batch``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stllr.factors import STLLRFactors, trace_step, trace_step_
from stllr.functional.readout import AccumulateStep
from stllr.functional.stllr_step import STLLRRecurrentStep, STLLRSpec
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.shd import SHDNetSTLLR
from stllr.neuron import LIFParams, heaviside, lif_step, lif_step_
from stllr.surrogates import SURROGATES, get_surrogate, in_place
from stllr.synapse_ops import DenseOps
from stllr.training import evaluate_batch, train_batch

DTYPES = [torch.float32, torch.float64]
FACTOR_SETS = [
    [0.5, 1.0, 1.0, 1.0],  # SHD
    [0.5, 0.8, -0.2, 1.0],  # code default
    [0.0, 0.6, 0.0, 1.0],  # OTTT-like
    [0.9, 0.3, -3.0, 0.4],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_in_place_surrogates_are_bitwise_equal(name, dtype):
    v = torch.randn(4097, dtype=dtype) * 2
    v[:6] = torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-9, -1e-9])
    psi = get_surrogate(name)
    got = in_place(psi)(v.clone())
    assert torch.equal(got, psi(v))


def test_unknown_surrogates_are_used_out_of_place():
    def double(v):
        return 2 * v

    assert in_place(double) is double


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_in_place_lif_and_traces_are_bitwise_equal(reset, dtype):
    torch.manual_seed(0)
    params = LIFParams(leak=1.3, threshold=0.6, reset=reset)
    current, u = torch.randn(513, dtype=dtype), torch.randn(513, dtype=dtype)
    s, v, u_next = lif_step(current, u, params)
    u2 = u.clone()
    s2, v2 = lif_step_(current.clone(), u2, params)
    assert torch.equal(s, s2) and torch.equal(v, v2) and torch.equal(u_next, u2)
    consts = [torch.tensor(c, dtype=dtype) for c in (params.gamma, params.theta_eff, 0.0)]
    u3 = u.clone()
    s3, v3 = lif_step_(current.clone(), u3, params, *consts)
    assert torch.equal(s, s3) and torch.equal(v, v3) and torch.equal(u_next, u3)
    assert torch.equal(heaviside(v), (v > 0).to(dtype))
    for decay in (1.0, 0.99, 0.5, 0.0):
        assert torch.equal(trace_step_(u.clone(), current, decay), trace_step(u, current, decay))


def _recurrent(factors, psi, reset, dtype, seed=0, n_in=6, n_out=5):
    torch.manual_seed(seed)
    layer = RecurrentLinearSTLLR(
        n_in,
        n_out,
        lif=LIFParams(leak=1.0, threshold=0.6, reset=reset),
        factors=STLLRFactors.from_list(factors),
        psi=psi,
    ).to(dtype)
    with torch.no_grad():
        layer.weight.normal_(0, 0.6)
        layer.weight_rec.normal_(0, 0.6)
        layer.bias.normal_(0, 0.2)
    return layer


def _function_sequence(layer, x):
    """The Function's forward at every step (the reference for the no-graph paths)."""
    with torch.no_grad():
        w, w_rec = layer.effective_weights()
    spec = STLLRSpec(DenseOps(), layer.lif, layer.factors, get_surrogate(layer.psi_name))
    z = x.new_zeros(x.shape[1], layer.out_features)
    u, p, r, q, s = z, torch.zeros_like(x[0]), z, z, z
    spikes = []
    for t in range(x.shape[0]):
        s, u, p, r, q = STLLRRecurrentStep.apply(x[t], s, w, w_rec, layer.bias, u, p, r, q, spec)
        spikes.append(s)
    return torch.stack(spikes), (u, p, r, q)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factors", FACTOR_SETS)
@pytest.mark.parametrize("psi,reset", [("a", "soft"), ("b", "hard"), ("c", "soft"), ("d", "soft")])
def test_recurrent_no_graph_paths_match_the_function(psi, reset, factors, dtype):
    layer = _recurrent(factors, psi, reset, dtype)
    x = torch.rand(9, 3, 6, dtype=dtype)
    want_s, want_state = _function_sequence(layer, x)
    assert 0 < want_s.sum() < want_s.numel()

    layer.reset_state()
    with torch.no_grad():
        got_s = torch.stack([layer(x[t]) for t in range(x.shape[0])])
    assert torch.equal(got_s, want_s)
    for got, want in zip(layer.state[:4], want_state, strict=True):
        assert torch.equal(got, want)

    layer.reset_state()
    with torch.no_grad():
        run = layer.no_graph_run(x[0])
        got_s = torch.stack([run.step(x[t]) for t in range(x.shape[0])])
        run.close()
    assert torch.equal(got_s, want_s)
    for got, want in zip(layer.state[:4], want_state, strict=True):
        assert torch.equal(got, want)
    assert torch.equal(layer.state.s, want_s[-1])


def test_no_graph_steps_never_overwrite_tensors_saved_for_backward():
    """A step with a graph, then steps without, then its backward: same gradients as
    the backward right after the step (the saved traces were copied, not overwritten)."""
    x = torch.rand(6, 3, 6, dtype=torch.float64)
    delta = torch.randn(3, 5, dtype=torch.float64)
    grads = []
    for late in (False, True):
        layer = _recurrent(FACTOR_SETS[0], "a", "soft", torch.float64)
        layer.reset_state()
        with torch.no_grad():
            for t in range(3):
                layer(x[t])
        s = layer(x[3])
        if not late:
            s.backward(delta)
        with torch.no_grad():
            layer(x[4])
            run = layer.no_graph_run(x[5])
            run.step(x[5])
            run.close()
        if late:
            s.backward(delta)
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_readout_no_graph_paths_match_the_function(dtype):
    torch.manual_seed(3)
    layer = AccumulateReadout(5, 4, leak=5.0, lambda_pre=0.99).to(dtype)
    h = (torch.rand(7, 3, 5) < 0.4).to(dtype)
    p, o = torch.zeros_like(h[0]), h.new_zeros(3, 4)
    want = []
    with torch.no_grad():
        for t in range(h.shape[0]):
            o, p = AccumulateStep.apply(h[t], layer.weight, layer.bias, p, o, layer.gamma, 0.99)
            want.append(o)
        layer.reset_state()
        assert torch.equal(torch.stack([layer(h[t]) for t in range(h.shape[0])]), torch.stack(want))
        assert torch.equal(layer.state[0], p)
        layer.reset_state()
        run = layer.no_graph_run(h[0])
        assert torch.equal(
            torch.stack([run.step(h[t]) for t in range(h.shape[0])]), torch.stack(want)
        )
        run.close()
    assert torch.equal(layer.state[0], p) and torch.equal(layer.state[1], o)


def _shd(dtype=torch.float32, seed=1, **kw):
    torch.manual_seed(seed)
    return SHDNetSTLLR(num_inputs=40, hidden=24, **kw).to(dtype)


def _spikes(steps=14, batch=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, 40, generator=g) < 0.3).to(dtype)
    return x, torch.randint(0, 20, (batch,), generator=g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shd_forward_no_graph_matches_per_step_calls(dtype):
    x, _ = _spikes(dtype=dtype)
    net = _shd(dtype)
    net.reset_state()
    got = net.forward_no_graph(x[:9])
    got_states = [t.clone() for t in (*net.rec.state, *net.readout.state)]
    net.reset_state()
    want = SpikingModel.forward_no_graph(net, x[:9])  # the generic loop of model(x[t])
    assert torch.equal(got, want)
    for a, b in zip(got_states, (*net.rec.state, *net.readout.state), strict=True):
        assert torch.equal(a, b)
    assert net.forward_no_graph(x[:0]).abs().sum() == 0


def test_shd_forward_no_graph_runs_forward_hooks():
    x, _ = _spikes()
    net = _shd()
    calls = []
    handle = net.rec.register_forward_hook(lambda m, args, out: calls.append(out))
    net.reset_state()
    net.forward_no_graph(x[:6])
    handle.remove()
    assert len(calls) == 6


def _old_train_batch(model, x, y, window):
    """``train_batch``'s loop before ``forward_no_graph``: ``model(x[t])`` under
    ``no_grad`` before the window, one backward per window step (no deferred WS)."""
    model.train()
    model.reset_state()
    model.zero_grad(set_to_none=True)
    logits = x.new_zeros(x.shape[1], model.num_classes)
    for t in range(x.shape[0]):
        if t < x.shape[0] - window:
            with torch.no_grad():
                logits += model(x[t])
            continue
        out = model(x[t], y)
        F.cross_entropy(out, y).backward()
        logits += out.detach()
    return logits


@pytest.mark.parametrize("feedback", ["BP", "DFA"])
@pytest.mark.parametrize("window", [1, 5, 14])
def test_train_batch_gradients_match_per_step_calls(window, feedback):
    x, y = _spikes(dtype=torch.float64)
    net = _shd(torch.float64, feedback=feedback)
    res = train_batch(net, x, y, torch.optim.SGD(net.parameters(), lr=0.0), window=window)
    got = {n: p.grad.clone() for n, p in net.named_parameters()}
    ref = _shd(torch.float64, feedback=feedback)
    want_logits = _old_train_batch(ref, x, y, window)
    assert torch.equal(res.logits, want_logits)
    for n, p in ref.named_parameters():
        assert (got[n] - p.grad).abs().max() <= 1e-12, n
    eval_logits = evaluate_batch(net, x).logits
    net.reset_state()
    with torch.no_grad():
        assert torch.equal(eval_logits, sum(net(x[t]) for t in range(x.shape[0])))
