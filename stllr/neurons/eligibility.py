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

from stllr.factors import STLLRFactors, trace_step
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

    ``(s, x, s_prev, Ŵ, Ŵ_rec, b, κΨ, Q[t−1], P[t], R[t], factors) → s``; the spikes and
    every operand come from the no-graph forward step; only ``x``, ``Ŵ``, ``Ŵ_rec`` and
    ``b`` receive gradients (``s_prev`` and the states none).
    """

    @staticmethod
    def forward(ctx, s, x, s_prev, w, w_rec, b, gain_psi, q_prev, p, r, factors: STLLRFactors):
        ctx.save_for_backward(
            x, s_prev, w if ctx.needs_input_grad[1] else None, gain_psi, q_prev, p, r
        )
        ctx.factors = factors
        ctx.has_bias = b is not None
        ctx.set_materialize_grads(False)
        return s.clone()

    @staticmethod
    def backward(ctx, delta):
        if delta is None:
            return (None,) * 11
        x, s_prev, w, gain_psi, q_prev, p, r = ctx.saved_tensors
        f = ctx.factors
        g = gain_psi * delta
        post, pre = stacked_operands(f, g, delta, q_prev, p, x)
        grad_w = post.t().mm(pre) if ctx.needs_input_grad[3] else None
        grad_w_rec = None
        if ctx.needs_input_grad[4]:
            post, pre_rec = stacked_operands(f, g, delta, q_prev, r, s_prev)
            grad_w_rec = post.t().mm(pre_rec)
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[5] else None
        grad_x = g.mm(w) if ctx.needs_input_grad[1] else None
        return None, grad_x, None, grad_w, grad_w_rec, grad_b, None, None, None, None, None
