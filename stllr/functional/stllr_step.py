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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stllr.factors import STLLRFactors, trace_step
from stllr.neuron import LIFParams, lif_step
from stllr.surrogates import Surrogate
from stllr.synapse_ops import DenseOps, SynapseOps


@dataclass(frozen=True)
class STLLRSpec:
    """Everything constant about an S-TLLR layer's step."""

    ops: SynapseOps
    lif: LIFParams
    factors: STLLRFactors
    psi: Surrogate


class STLLRStep(torch.autograd.Function):
    """Feed-forward S-TLLR step: ``(x, Ŵ, b, ũ, P, Q) → (s, ũ', P', Q')``."""

    @staticmethod
    def forward(ctx, x, w, b, u_prev, p_prev, q_prev, spec: STLLRSpec):
        f = spec.factors
        p = trace_step(p_prev, x, f.lambda_pre)
        s, v, u = lif_step(spec.ops.current(x, w, b), u_prev, spec.lif)
        psi = spec.psi(v)
        q = trace_step(q_prev, psi, f.lambda_post)
        # Ŵ is only needed for the input gradient (the first layer needs none).
        ctx.save_for_backward(x, w if ctx.needs_input_grad[0] else None, p, q_prev, psi)
        ctx.w_shape = w.shape
        ctx.spec = spec
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(u, p, q)
        return s, u, p, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        x, w, p, q_prev, psi = ctx.saved_tensors
        spec: STLLRSpec = ctx.spec
        g = psi * delta
        grad_x = spec.ops.input_grad(g, w, x.shape) if ctx.needs_input_grad[0] else None
        post, pre = _stacked_operands(spec.factors, g, delta, q_prev, p, x)
        grad_w = spec.ops.weight_grad(post, pre, ctx.w_shape) if ctx.needs_input_grad[1] else None
        grad_b = spec.ops.bias_grad(g) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None


class STLLRRecurrentStep(torch.autograd.Function):
    """Recurrent dense S-TLLR step.

    ``(x, s_prev, Ŵ, Ŵ_rec, b, ũ, P, R, Q) → (s, ũ', P', R', Q')``; no gradient
    flows into ``s_prev`` (the recurrent input).
    """

    @staticmethod
    def forward(ctx, x, s_prev, w, w_rec, b, u_prev, p_prev, r, q_prev, spec: STLLRSpec):
        f = spec.factors
        ops = spec.ops
        p = trace_step(p_prev, x, f.lambda_pre)
        current = ops.current(x, w, b) + ops.current(s_prev, w_rec, None)
        s, v, u = lif_step(current, u_prev, spec.lif)
        psi = spec.psi(v)
        q = trace_step(q_prev, psi, f.lambda_post)
        r_next = trace_step(r, s, f.lambda_pre)
        ctx.save_for_backward(x, s_prev, w if ctx.needs_input_grad[0] else None, p, r, q_prev, psi)
        ctx.w_shape = w.shape
        ctx.spec = spec
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(u, p, r_next, q)
        return s, u, p, r_next, q

    @staticmethod
    def backward(ctx, delta, *_unused):
        x, s_prev, w, p, r, q_prev, psi = ctx.saved_tensors
        spec: STLLRSpec = ctx.spec
        g = psi * delta
        grad_x = spec.ops.input_grad(g, w, x.shape) if ctx.needs_input_grad[0] else None
        post, pre = _stacked_operands(spec.factors, g, delta, q_prev, p, x)
        _, pre_rec = _stacked_operands(spec.factors, g, delta, q_prev, r, s_prev)
        n_out, n_in = ctx.w_shape
        if isinstance(spec.ops, DenseOps):
            # One matmul for both matrices: [out, in + out].
            both = post.t().mm(torch.cat([pre, pre_rec], dim=1))
            grad_w, grad_w_rec = both.split([n_in, n_out], dim=1)
        else:
            grad_w = spec.ops.weight_grad(post, pre, ctx.w_shape)
            grad_w_rec = spec.ops.weight_grad(post, pre_rec, (n_out, n_out))
        grad_b = spec.ops.bias_grad(g) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return grad_x, None, grad_w, grad_w_rec, grad_b, None, None, None, None, None


def _stacked_operands(f: STLLRFactors, g, delta, q_prev, trace, x):
    """Batch-stacked operands of ``α_pre gᵀ·trace + α_post (δ⊙Q[t−1])ᵀ·x``.

    Returns ``(post, pre)`` such that ``Σ_batch postᵀ·pre`` is the weight
    gradient; the non-causal half is dropped when ``α_post == 0``.
    """
    if f.alpha_post == 0.0:
        return f.alpha_pre * g, trace
    post = torch.cat([f.alpha_pre * g, f.alpha_post * (delta * q_prev)], dim=0)
    return post, torch.cat([trace, x], dim=0)
