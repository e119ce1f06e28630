"""What every stllr model offers the training loop.

A model is called once per time step, ``logits = model(x[t], target=y)``, with
``x[t]`` ``[B, *input_shape]`` and returns ``[B, num_classes]``. ``target`` is
only needed for DFA/sDFA feedback. ``reset_state()`` starts a new sequence.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from stllr.feedback import FeedbackContext


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

    def feedback_context(self, target: torch.Tensor | None) -> FeedbackContext | None:
        """A per-step DFA context, or ``None`` without a target."""
        if target is None:
            return None
        return FeedbackContext(F.one_hot(target, self.num_classes).to(torch.get_default_dtype()))
