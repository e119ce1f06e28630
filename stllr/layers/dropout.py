"""DropoutLIF: one dropout mask per sequence, applied to spikes at every step.

The reference code draws ``mask = trunc(bernoulli(1−p) / (1−p))`` at
``reset_states``; for p < 0.5 the ``trunc`` removes the 1/(1−p) rescaling, so
the kept spikes are *not* rescaled. ``rescale=True`` gives inverted dropout
instead (an option, not the default). In eval mode the mask is all ones.
"""

from __future__ import annotations

import torch
from torch import nn


class DropoutLIF(nn.Module):
    """``y[t] = mask ⊙ x[t]`` with ``mask ~ Bernoulli(1−p)`` drawn once per sequence."""

    def __init__(self, p: float = 0.0, rescale: bool = False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropoutLIF p must be in [0, 1), got {p}")
        self.p = p
        self.rescale = rescale
        self.mask: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape != x.shape:
            keep = torch.bernoulli(torch.full_like(x, 1.0 - self.p))
            self.mask = keep / (1.0 - self.p) if self.rescale else keep
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}, rescale={self.rescale}"
