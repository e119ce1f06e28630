"""S-TLLR eligibility of the current-based and adaptive neurons (docs/neurons.md §3).

The pre-synaptic trace of an input ``x_j`` (``[B, in]``) follows the path from the input
to the voltage with layer-wide decays, so that it is shared by every post-synaptic
neuron::

    current-based (CuLIF, PCuLIF, CuAdLIF):
        P[t]   = λ_pre · P[t−1] + P^i[t−1]        the voltage reads the previous current
        P^i[t] = λ_syn · P^i[t−1] + x[t]
    direct (AdLIF):
        P[t]   = λ_pre · P[t−1] + x[t]

With ``λ_pre = α`` and ``λ_syn = β`` (one value per layer) ``(1 − α_i)·P_j[t]`` is the
exact ``∂v_i[t]/∂W_ij`` of a CuLIF with the reset's derivative dropped; the adaptation's
path (``w`` depends on ``v``) is left out of the eligibility. The weight update at step t,
with ``δ = ∂L_t/∂s[t]``, ``Ψ = Ψ(v[t] − θ)`` and the per-neuron input gain ``κ_i = 1 − α_i``::

    g          = κ ⊙ Ψ ⊙ δ
    ∂L/∂Ŵ     += α_pre · Σ_b gᵀ P[t]  +  α_post · Σ_b (δ ⊙ Q[t−1])ᵀ x[t]
    ∂L/∂Ŵ_rec += the same with P → R[t] (the trace of s[t−1]) and x → s[t−1]
    ∂L/∂b     += Σ_b g          ∂L/∂x[t] = Ŵᵀ g  (same step only)
    Q[t]       = λ_post · Q[t−1] + Ψ(v[t] − θ)

For the toolkit's one-state LIF (κ = 1, direct drive) these are the equations of
docs/rule.md §3, §5.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from stllr.factors import trace_step
from stllr.functional.stllr_step import stacked_operands


class PreTrace(NamedTuple):
    """The pre-synaptic traces of one input, ``[B, in]``: ``p`` (what the eligibility
    reads) and ``p_i`` (the current's trace; ``None`` for a direct-drive neuron)."""

    p: torch.Tensor
    p_i: torch.Tensor | None


def zero_pre_trace(like: torch.Tensor, current_based: bool) -> PreTrace:
    """The traces at step 0 (zeros shaped like ``like``)."""
    return PreTrace(torch.zeros_like(like), torch.zeros_like(like) if current_based else None)


def pre_trace_step(
    trace: PreTrace, x: torch.Tensor, lambda_pre: float, lambda_syn: float
) -> PreTrace:
    """One step of the module docstring's recursion (new tensors)."""
    if trace.p_i is None:
        return PreTrace(trace_step(trace.p, x, lambda_pre), None)
    return PreTrace(
        trace_step(trace.p, trace.p_i, lambda_pre), trace_step(trace.p_i, x, lambda_syn)
    )


class EligibilityGrad(torch.autograd.Function):
    """Identity on the spikes whose backward applies the module docstring's update.

    ``(s, x, s_prev, Ŵ, Ŵ_rec, b, Ψ, κ, Q[t−1], P[t], R[t], factors, traces, *π) → s``;
    the spikes and every operand come from the no-graph forward step. ``x``, ``Ŵ``,
    ``Ŵ_rec`` and ``b`` receive the update above; each neuron parameter ``π`` (``[N]`` or
    0-dim, in the graph of the population's logits) receives ``Σ δ ⊙ Ψ ⊙ κ_π`` with its
    trace ``κ_π`` from ``traces`` (aligned with ``π``; :mod:`stllr.neurons.parameter_traces`).
    ``s_prev`` and the states receive nothing.
    """

    @staticmethod
    def forward(ctx, s, x, s_prev, w, w_rec, b, psi, gain, q_prev, p, r, factors, traces, *params):
        w_saved = w if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(x, s_prev, w_saved, psi, gain, q_prev, p, r, *traces)
        ctx.factors = factors
        ctx.has_bias = b is not None
        ctx.param_dims = [prm.dim() for prm in params]
        ctx.set_materialize_grads(False)
        return s.clone()

    @staticmethod
    def backward(ctx, delta):
        n_params = len(ctx.param_dims)
        if delta is None:
            return (None,) * (13 + n_params)
        x, s_prev, w, psi, gain, q_prev, p, r, *traces = ctx.saved_tensors
        f = ctx.factors
        needs = ctx.needs_input_grad
        psi_delta = psi * delta
        g = gain * psi_delta
        post, pre = stacked_operands(f, g, delta, q_prev, p, x)
        grad_w = post.t().mm(pre) if needs[3] else None
        grad_w_rec = None
        if needs[4]:
            post, pre_rec = stacked_operands(f, g, delta, q_prev, r, s_prev)
            grad_w_rec = post.t().mm(pre_rec)
        grad_b = g.sum(0) if ctx.has_bias and needs[5] else None
        grad_x = g.mm(w) if needs[1] else None
        grad_params = []
        for k, (kappa, dim) in enumerate(zip(traces, ctx.param_dims, strict=True)):
            if not needs[13 + k]:
                grad_params.append(None)
                continue
            grad = (psi_delta * kappa).sum(0)
            grad_params.append(grad.sum() if dim == 0 else grad)
        head = (None, grad_x, None, grad_w, grad_w_rec, grad_b)
        return (*head, None, None, None, None, None, None, None, *grad_params)
