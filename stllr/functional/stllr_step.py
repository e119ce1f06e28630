"""One S-TLLR time step as an autograd Function (fast, batched form).

Forward at step t (under ``no_grad``; shapes ``[B, *in]`` → ``[B, *out]``)::

    P[t]   = λ_pre · P[t−1] + x[t]
    I[t]   = Ŵ x[t] + b  (+ Ŵ_rec s[t−1] for a recurrent layer)
    s, v, ũ = lif_step(I[t], ũ[t−1])           (see :mod:`stllr.neuron`)
    Q[t]   = λ_post · Q[t−1] + Ψ(v[t])
    R[t+1] = λ_pre · R[t] + s[t]               (recurrent pre-trace, carried)

Backward at step t, with δ = ∂L_t/∂s[t] arriving from above at the same t::

    g        = Ψ(v[t]) ⊙ δ
    ∂/∂x     = Ŵᵀ g                             (same step only: no path through time)
    ∂/∂Ŵ     = α_pre Σ_b gᵀ P[t]  +  α_post Σ_b (δ ⊙ Q[t−1])ᵀ x[t]
    ∂/∂Ŵ_rec = α_pre Σ_b gᵀ R[t]  +  α_post Σ_b (δ ⊙ Q[t−1])ᵀ s[t−1]
    ∂/∂b     = Σ_b g                            (no traces)

Both weight terms are computed as one matmul/correlation over the batch-stacked
operands, never as per-sample ``[B, out, in]`` tensors. Nothing is kept after the
step's backward, so memory does not grow with T.

Steps that need no graph (outside the learning window, evaluation) can skip the
autograd Function: :func:`recurrent_step_` runs the recurrent forward with the
state updated in place, bitwise equal to :class:`STLLRRecurrentStep`'s forward.

The recurrent step may take its inputs as events (:class:`EventOperands`,
:mod:`stllr.spike_events`): then ``Ŵ x[t]`` (or ``Ŵ_rec s[t−1]``) is a sum of the
columns of Ŵ where the input is non-zero, and the matching non-causal half of the
weight gradient, ``α_post Σ_b (δ ⊙ Q[t−1])ᵀ x[t]``, a sum over the same entries; the
causal half ``α_pre Σ_b gᵀ P[t]`` stays a dense product (the trace P is dense).
Results equal the dense step's up to float rounding (docs/event_driven.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from stllr.conv_backward import even_lattice, feature_map_weight_grad
from stllr.conv_backward import input_grad as conv_input_grad
from stllr.conv_events import ConvEvents, events_conv_current
from stllr.factors import STLLRFactors, trace_step, trace_step_
from stllr.neuron import LIFParams, lif_step_
from stllr.sample_skip import ActiveSamples, subset_current
from stllr.spike_events import RowEvents, events_current, events_weight_grad_t
from stllr.surrogates import Surrogate, in_place
from stllr.synapse_ops import DenseOps, SynapseOps


@dataclass(frozen=True)
class STLLRSpec:
    """Everything constant about an S-TLLR layer's step."""

    ops: SynapseOps
    lif: LIFParams
    factors: STLLRFactors
    psi: Surrogate
    #: feature maps: the backward may leave out exact zeros (:mod:`stllr.conv_backward`:
    #: samples or events of P, δ on the even lattice); set by the layer's ``event_inputs``
    skip_zeros: bool = False


class EventOperands(NamedTuple):
    """Inputs of a dense recurrent step given as events (:mod:`stllr.spike_events`).

    ``x`` / ``s``: the events of x[t] / s[t−1], or None for a dense product; ``w_t`` /
    ``w_rec_t``: Ŵᵀ / Ŵ_recᵀ as contiguous ``[in, out]`` tensors (the rows the event-driven
    current sums), given where the matching events are.
    """

    x: RowEvents | None = None
    s: RowEvents | None = None
    w_t: torch.Tensor | None = None
    w_rec_t: torch.Tensor | None = None


class STLLRStep(torch.autograd.Function):
    """Feed-forward S-TLLR step: ``(x, Ŵ, b, ũ, P, Q) → (s, ũ', P', Q')``; ``ev``
    (:class:`DenseOps` only): x as events (:class:`EventOperands` with ``x`` and ``w_t``);
    or (any synapse) the samples of x with a non-zero entry
    (:class:`~stllr.sample_skip.ActiveSamples`): the products skip the others; or (a
    convolution) x as events (:class:`~stllr.conv_events.ConvEvents`): the current and the
    non-causal half of the weight gradient are summed over them."""

    @staticmethod
    def forward(ctx, x, w, b, u_prev, p_prev, q_prev, spec: STLLRSpec, ev=None):
        f = spec.factors
        p = trace_step(p_prev, x, f.lambda_pre)
        ctx.x_rows = ctx.conv_ev = None
        current = feed_forward_current(x, w, b, spec.ops, ev, u_prev.shape)
        if isinstance(ev, ActiveSamples):
            ctx.x_rows, ev = ev, None
        elif isinstance(ev, ConvEvents):
            ctx.conv_ev, ev = ev, None
        # the in-place operations of feature_map_step_, on a copy of ũ (bitwise equal)
        u = u_prev.clone()
        s, v = lif_step_(current, u, spec.lif)
        psi = in_place(spec.psi)(v)
        q = trace_step(q_prev, psi, f.lambda_post)
        # Ŵ is only needed for the input gradient (the first layer needs none).
        ctx.save_for_backward(x, w if ctx.needs_input_grad[0] else None, p, q_prev, psi)
        ctx.w_shape = w.shape
        ctx.spec = spec
        ctx.x_ev = None if ev is None else ev.x
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(u, p, q)
        ctx.set_materialize_grads(False)  # no zero tensors for the state outputs' gradients
        return s, u, p, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        if delta is None:
            return (None,) * 8
        x, w, p, q_prev, psi = ctx.saved_tensors
        spec: STLLRSpec = ctx.spec
        grad_w = None
        if ctx.x_ev is not None and isinstance(spec.ops, DenseOps):
            # x given as events: the non-causal half summed over them (as the recurrent step)
            g, post = _post_operand(spec.factors, psi, delta, q_prev)
            if ctx.needs_input_grad[1]:
                grad_w = _dense_weight_grad(spec.factors, post, p, x, ctx.x_ev)
        elif spec.skip_zeros:  # zeros of x, P and δ left out (stllr.conv_backward)
            g = psi * delta
            lattice = even_lattice(spec.ops, delta, psi, tuple(ctx.w_shape[2:]))
            if ctx.needs_input_grad[1]:
                x_in = ctx.x_rows if ctx.conv_ev is None else ctx.conv_ev
                grad_w = feature_map_weight_grad(
                    spec.ops, lattice, spec.factors, g, delta, q_prev, p, x, x_in, ctx.w_shape
                )
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = conv_input_grad(spec.ops, lattice, g, w, x.shape)
            grad_b = spec.ops.bias_grad(g) if ctx.has_bias and ctx.needs_input_grad[2] else None
            return grad_x, grad_w, grad_b, None, None, None, None, None
        else:
            g = psi * delta
            if ctx.needs_input_grad[1]:
                post, pre = stacked_operands(spec.factors, g, delta, q_prev, p, x)
                grad_w = spec.ops.weight_grad(post, pre, ctx.w_shape)
        grad_x = spec.ops.input_grad(g, w, x.shape) if ctx.needs_input_grad[0] else None
        grad_b = spec.ops.bias_grad(g) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


class STLLRRecurrentStep(torch.autograd.Function):
    """Recurrent dense S-TLLR step.

    ``(x, s_prev, Ŵ, Ŵ_rec, b, ũ, P, R, Q) → (s, ũ', P', R', Q')``; no gradient
    flows into ``s_prev`` (the recurrent input). ``ev`` (dense operands only): the inputs
    as events, for the event-driven products (module docstring).
    """

    @staticmethod
    def forward(ctx, x, s_prev, w, w_rec, b, u_prev, p_prev, r, q_prev, spec: STLLRSpec, ev=None):
        f = spec.factors
        p = trace_step(p_prev, x, f.lambda_pre)
        u = u_prev.clone()
        s, psi = _recurrent_membrane_(x, s_prev, w, w_rec, b, u, spec, ev)
        q = trace_step(q_prev, psi, f.lambda_post)
        r_next = trace_step(r, s, f.lambda_pre)
        ctx.save_for_backward(x, s_prev, w if ctx.needs_input_grad[0] else None, p, r, q_prev, psi)
        ctx.w_shape = w.shape
        ctx.spec = spec
        ctx.ev = ev
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(u, p, r_next, q)
        ctx.set_materialize_grads(False)  # no zero tensors for the state outputs' gradients
        return s, u, p, r_next, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        if delta is None:
            return (None,) * 11
        x, s_prev, w, p, r, q_prev, psi = ctx.saved_tensors
        spec: STLLRSpec = ctx.spec
        f = spec.factors
        n_out, n_in = ctx.w_shape
        if isinstance(spec.ops, DenseOps):
            # Both matrices share the post-synaptic operand (built once, in place) and get
            # one matmul each: contiguous results that accumulate straight into the
            # gradients (no concatenation of the pre-synaptic operands, no split copies);
            # an input given as events gets its non-causal half summed over the events.
            ev = ctx.ev or EventOperands()
            g, post = _post_operand(f, psi, delta, q_prev)
            grad_w = _dense_weight_grad(f, post, p, x, ev.x)
            grad_w_rec = _dense_weight_grad(f, post, r, s_prev, ev.s)
        else:
            g = psi * delta
            post, pre = stacked_operands(f, g, delta, q_prev, p, x)
            _, pre_rec = stacked_operands(f, g, delta, q_prev, r, s_prev)
            grad_w = spec.ops.weight_grad(post, pre, ctx.w_shape)
            grad_w_rec = spec.ops.weight_grad(post, pre_rec, (n_out, n_out))
        grad_x = spec.ops.input_grad(g, w, x.shape) if ctx.needs_input_grad[0] else None
        grad_b = spec.ops.bias_grad(g) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return grad_x, None, grad_w, grad_w_rec, grad_b, None, None, None, None, None, None


def needs_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd would record a step on ``tensors``: grad mode is on and one of
    them requires grad. Steps for which it is False may skip the autograd Functions."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class StepConstants(NamedTuple):
    """The numbers of a no-graph step as operands: 0-dim tensors of the state's dtype and
    device (:func:`step_constants` with ``like``) or Python floats. An operation with a
    Python number first converts it into a tensor (several µs on the CPU), which a loop
    over many steps avoids by converting once; the values and results are the same."""

    gamma: float | torch.Tensor
    theta: float | torch.Tensor
    zero: float | torch.Tensor
    lambda_pre: float | torch.Tensor | None  # None: a decay of 1 (not multiplied)
    lambda_post: float | torch.Tensor | None


def step_constants(spec: STLLRSpec, like: torch.Tensor | None = None) -> StepConstants:
    """``spec``'s constants as Python floats, or as 0-dim tensors shaped for ``like``."""

    def c(value: float) -> float | torch.Tensor:
        return value if like is None else torch.tensor(value, dtype=like.dtype, device=like.device)

    f, lif = spec.factors, spec.lif
    return StepConstants(
        c(lif.gamma),
        c(lif.theta_eff),
        c(0.0),
        None if f.lambda_pre == 1.0 else c(f.lambda_pre),
        None if f.lambda_post == 1.0 else c(f.lambda_post),
    )


def recurrent_step_(
    x,
    s_prev,
    w,
    w_rec,
    b,
    u,
    p,
    r,
    q,
    spec: STLLRSpec,
    k: StepConstants | None = None,
    ev: EventOperands | None = None,
) -> torch.Tensor:
    """:class:`STLLRRecurrentStep`'s forward without autograd, the state updated in place.

    ``u``, ``p``, ``r``, ``q`` (ũ[t−1], P[t−1], R[t], Q[t−1]) are overwritten with
    ũ[t], P[t], R[t+1], Q[t]; returns the new spikes s[t]. The same operations in the
    same order as the Function (in-place twins of them), so the results are bitwise
    equal; for steps that need no graph (no backward, nothing saved), where it avoids
    the Function's bookkeeping and the allocation of a new state at every step.
    ``k``: the constants (:func:`step_constants`; default: Python floats); ``ev``: the
    inputs as events (as for the Function).
    """
    if k is None:
        k = step_constants(spec)
    trace_step_(p, x, k.lambda_pre)
    current = recurrent_current(x, s_prev, w, w_rec, b, spec.ops, ev)
    s, v = lif_step_(current, u, spec.lif, k.gamma, k.theta, k.zero)
    trace_step_(q, in_place(spec.psi)(v), k.lambda_post)
    trace_step_(r, s, k.lambda_pre)
    return s


def feed_forward_current(x, w, b, ops: SynapseOps, ev, out_shape) -> torch.Tensor:
    """``I = Ŵx + b`` (a new tensor): dense, from the events of x (``ev``:
    :class:`EventOperands`, dense synapses; :class:`~stllr.conv_events.ConvEvents`, a
    convolution) or on the samples of x with a non-zero entry (``ev``:
    :class:`~stllr.sample_skip.ActiveSamples`; ``out_shape``: I's shape)."""
    if isinstance(ev, ActiveSamples):
        return subset_current(ops, x, w, b, ev, out_shape)
    if isinstance(ev, ConvEvents):
        return events_conv_current(ev, w, b)
    if ev is None or ev.x is None:
        return ops.current(x, w, b)
    return events_current(ev.x, ev.w_t, b)


def feature_map_step_(
    x, w, b, u, p, q, spec: STLLRSpec, k: StepConstants | None = None, rows=None
) -> torch.Tensor:
    """:class:`STLLRStep`'s forward without autograd, the state updated in place.

    ``u``, ``p``, ``q`` (ũ[t−1], P[t−1], Q[t−1]) are overwritten with ũ[t], P[t], Q[t];
    returns the new spikes s[t]. The Function's operations in the same order (it runs
    the same in-place ones on a copy of ũ), so the results are bitwise equal; for steps
    that need no graph, where it saves the Function's bookkeeping and a new state per
    step. ``k``: :func:`step_constants`; ``rows``: the samples of ``x`` with a non-zero
    entry (:class:`~stllr.sample_skip.ActiveSamples`; None: all).
    """
    if k is None:
        k = step_constants(spec)
    trace_step_(p, x, k.lambda_pre)
    current = feed_forward_current(x, w, b, spec.ops, rows, u.shape)
    s, v = lif_step_(current, u, spec.lif, k.gamma, k.theta, k.zero)
    trace_step_(q, in_place(spec.psi)(v), k.lambda_post)
    return s


def recurrent_current(x, s_prev, w, w_rec, b, ops: SynapseOps, ev: EventOperands | None = None):
    """``I = Ŵx + b + Ŵ_rec s_prev`` (a new tensor), each product dense or, where ``ev``
    has the events of its input, event-driven."""
    ev = ev or EventOperands()
    if ev.x is None:
        current = ops.current(x, w, b)
    else:
        current = events_current(ev.x, ev.w_t, b)
    if ev.s is None:
        current += ops.current(s_prev, w_rec, None)
    else:
        current += events_current(ev.s, ev.w_rec_t, None)
    return current


def _recurrent_membrane_(x, s_prev, w, w_rec, b, u, spec: STLLRSpec, ev=None):
    """``I = Ŵx + b + Ŵ_rec s_prev`` and the LIF step with ``u`` (ũ[t−1] → ũ[t]) updated
    in place; returns ``(s[t], Ψ(v[t]))``, both new tensors."""
    current = recurrent_current(x, s_prev, w, w_rec, b, spec.ops, ev)
    s, v = lif_step_(current, u, spec.lif)
    return s, in_place(spec.psi)(v)


def _dense_weight_grad(f: STLLRFactors, post, trace, x, x_ev: RowEvents | None):
    """``Σ_b postᵀ·[trace ; x]`` (:func:`_post_operand`'s ``post``): one matmul, or, with
    the events of ``x``, the non-causal half summed over the events into a transposed
    ``[in, out]`` buffer that the causal half's matmul then adds to in place (one new
    weight-sized tensor per step, as the dense product); returned as its ``[out, in]``
    view."""
    if x_ev is None or f.alpha_post == 0.0:
        return post.t().mm(_pre_operand(f, trace, x))
    batch = trace.shape[0]
    grad_t = events_weight_grad_t(post[batch:], x_ev)
    return grad_t.addmm_(trace.t(), post[:batch]).t()


def _post_operand(f: STLLRFactors, psi, delta, q_prev):
    """``(g, post)`` with ``g = Ψ⊙δ`` and ``post = cat[α_pre·g, α_post·(δ⊙Q[t−1])]`` (just
    ``α_pre·g`` when α_post = 0), the values of :func:`stacked_operands`, written into
    one buffer; a factor of 1 is not multiplied (exact either way)."""
    batch = delta.shape[0]
    if f.alpha_post == 0.0:
        g = psi * delta
        return g, (g if f.alpha_pre == 1.0 else f.alpha_pre * g)
    post = delta.new_empty((2 * batch, *delta.shape[1:]))
    causal, acausal = post[:batch], post[batch:]
    if f.alpha_pre == 1.0:
        g = torch.mul(psi, delta, out=causal)
    else:
        g = psi * delta
        torch.mul(g, f.alpha_pre, out=causal)
    torch.mul(delta, q_prev, out=acausal)
    if f.alpha_post != 1.0:
        acausal.mul_(f.alpha_post)
    return g, post


def _pre_operand(f: STLLRFactors, trace, x):
    """The pre-synaptic operand matching :func:`_post_operand`: ``cat[trace, x]``."""
    return trace if f.alpha_post == 0.0 else torch.cat([trace, x], dim=0)


def stacked_operands(f: STLLRFactors, g, delta, q_prev, trace, x):
    """Batch-stacked operands of ``α_pre gᵀ·trace + α_post (δ⊙Q[t−1])ᵀ·x``.

    Returns ``(post, pre)`` such that ``Σ_batch postᵀ·pre`` is the weight
    gradient; the non-causal half is dropped when ``α_post == 0``.
    """
    if f.alpha_post == 0.0:
        return f.alpha_pre * g, trace
    post = torch.cat([f.alpha_pre * g, f.alpha_post * (delta * q_prev)], dim=0)
    return post, torch.cat([trace, x], dim=0)
