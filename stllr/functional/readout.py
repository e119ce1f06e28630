"""The SHD accumulate readout as an autograd Function (``STLLRAccumulationGrad``).

A leaky integrator whose membrane is the logit, with raw (unstandardised)
weights. Shapes: h ``[B, in]``, W ``[K, in]``, o ``[B, K]``::

    P_o[t] = λ · P_o[t−1] + h[t]               (λ = 0.99 in the SHD model)
    o[t]   = γ · o[t−1] (detached) + W h[t] + b

Backward with δ = ∂L_t/∂o[t]::

    ∂/∂h = δ W        ∂/∂W = Σ_b δᵀ P_o[t]        ∂/∂b = Σ_b δ
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stllr.factors import trace_step


class AccumulateStep(torch.autograd.Function):
    """``(h, W, b, P_o, o_prev, γ, λ) → (o, P_o')``."""

    @staticmethod
    def forward(ctx, h, w, b, p_prev, o_prev, gamma: float, lambda_pre: float):
        p = trace_step(p_prev, h, lambda_pre)
        o = gamma * o_prev + F.linear(h, w, b)
        ctx.save_for_backward(w, p)
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(p)
        ctx.set_materialize_grads(False)  # no zero tensor for the trace output's gradient
        return o, p

    @staticmethod
    def backward(ctx, delta, _unused):
        if delta is None:
            return (None,) * 7
        w, p = ctx.saved_tensors
        grad_h = delta.mm(w) if ctx.needs_input_grad[0] else None
        grad_w = delta.t().mm(p) if ctx.needs_input_grad[1] else None
        grad_b = delta.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b, None, None, None, None
