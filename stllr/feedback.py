"""Learning signals injected at hidden layers: BP, DFA and sign-DFA.

A :class:`FeedbackHook` sits at a hidden layer's output. Its forward is the
identity. Its backward depends on the mode:

* ``"BP"``   — pass the true gradient through (δ = Wᵀ(Ψ ⊙ δ_above) at the same step);
* ``"DFA"``  — discard it and inject ``δ = (softmax(o[t]) − onehot(y)) · B``;
* ``"sDFA"`` — inject ``δ = sign(softmax(o[t]) − onehot(y)) · B``.

``B`` is a fixed random matrix ``[K, *layer_shape]`` initialised with
``kaiming_uniform_`` (fan-in = ∏ layer_shape) and never trained. The DFA signal is
*not* divided by the batch size (unlike the mean-reduced CE at the output).
``o[t]`` are the logits of the same step, set by the model through
:meth:`FeedbackContext.set_output` after its forward.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FEEDBACK_MODES: tuple[str, ...] = ("BP", "DFA", "sDFA")


class FeedbackContext:
    """Per-step holder of the one-hot target and the step's softmax output."""

    def __init__(self, onehot: torch.Tensor | None):
        self.onehot = onehot
        self.probs: torch.Tensor | None = None

    def set_output(self, logits: torch.Tensor) -> None:
        self.probs = torch.softmax(logits.detach(), dim=1)

    def error(self) -> torch.Tensor:
        """``softmax(o[t]) − onehot(y)``, ``[B, K]``."""
        if self.probs is None or self.onehot is None:
            raise RuntimeError(
                "DFA feedback needs the step's output and one-hot target: call the model with "
                "target=... during training and FeedbackContext.set_output(logits) after forward"
            )
        return self.probs - self.onehot


class _HookFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, feedback: torch.Tensor, fb_ctx: FeedbackContext, mode: str):
        ctx.feedback = feedback
        ctx.fb_ctx = fb_ctx
        ctx.mode = mode
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_out):
        err = ctx.fb_ctx.error()
        if ctx.mode == "sDFA":
            err = torch.sign(err)
        b = ctx.feedback
        delta = err.mm(b.reshape(b.shape[0], -1)).view(grad_out.shape)
        return delta, None, None, None


class FeedbackHook(nn.Module):
    """Identity in forward; injects the mode's learning signal in backward."""

    def __init__(self, num_classes: int, layer_shape: tuple[int, ...], mode: str = "BP"):
        super().__init__()
        if mode not in FEEDBACK_MODES:
            raise ValueError(f"feedback mode must be one of {FEEDBACK_MODES}, got {mode!r}")
        self.mode = mode
        self.layer_shape = tuple(layer_shape)
        if mode == "BP":
            self.register_buffer("feedback", None)
        else:
            b = torch.empty(num_classes, *self.layer_shape)
            nn.init.kaiming_uniform_(b.view(num_classes, -1), a=0.0)
            # kaiming_uniform_ on [K, prod(shape)] uses fan_in = prod(shape) as the reference.
            self.register_buffer("feedback", b)

    def forward(self, x: torch.Tensor, fb_ctx: FeedbackContext | None) -> torch.Tensor:
        if self.mode == "BP" or not x.requires_grad:
            return x
        if fb_ctx is None:
            raise RuntimeError(f"{self.mode} training needs a target: call model(x_t, target=y)")
        return _HookFn.apply(x, self.feedback.to(x.dtype), fb_ctx, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, layer_shape={self.layer_shape}"


def kaiming_uniform_bound(fan_in: int) -> float:
    """Bound of ``kaiming_uniform_(a=0)``: ``sqrt(6 / fan_in)``."""
    return math.sqrt(6.0 / fan_in)
