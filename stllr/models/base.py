"""What every stllr model offers the training loop.

A model is called once per time step, ``logits = model(x[t], target=y)``, with
``x[t]`` ``[B, *input_shape]`` and returns ``[B, num_classes]``. ``target`` is
only needed for DFA/sDFA feedback. ``reset_state()`` starts a new sequence.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as module_hooks

from stllr.feedback import FeedbackContext
from stllr.padding import masked_step


class SpikingModel(nn.Module):
    """Base class: state reset over all sub-modules and the DFA context."""

    #: ``"stllr"`` for models built from S-TLLR layers, ``"bptt"`` for BPTT twins.
    family: str = "stllr"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def reset_state(self) -> None:
        """Zero every layer's state (one call per batch, before step 0)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_state"):
                m.reset_state()

    def batch_summed_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradient is a batch *sum* (driven by DFA signals, which are
        not batch-averaged); every other gradient is a batch mean. Data-parallel
        training sums the former over ranks and averages the latter."""
        return []

    def forward_no_graph(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``Σ_t model(x[t])`` over the steps of ``x`` ``[n, B, *input_shape]`` under
        ``no_grad``, the state advancing as with those n calls (the steps outside the
        learning window, evaluation). Returns ``[B, num_classes]`` (zeros for n = 0).

        ``mask`` ``[n, B]`` (0/1 in ``x``'s dtype, :func:`stllr.padding.step_mask`) counts
        sample b's output at step t only where ``mask[t, b]`` is 1: the steps of its own
        length in a zero-padded batch. The sum is then ``Σ_t mask[t]·o[t]``, in the same
        order, so a sample's total equals the one it gets alone.

        Models may override it with a faster loop that gives the same results (see
        :meth:`stllr.models.shd.SHDNetSTLLR.forward_no_graph`); an override should
        defer to this one while :meth:`has_forward_hooks`.
        """
        total = x.new_zeros(x.shape[1], self.num_classes)
        with torch.no_grad():
            for t in range(x.shape[0]):
                total += masked_step(self(x[t]), mask, t)
        return total

    def has_forward_hooks(self) -> bool:
        """Whether a forward (pre-)hook is registered on any module, or globally."""
        if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())

    def feedback_context(self, target: torch.Tensor | None) -> FeedbackContext | None:
        """A per-step DFA context, or ``None`` without a target."""
        if target is None:
            return None
        return FeedbackContext(F.one_hot(target, self.num_classes).to(torch.get_default_dtype()))
