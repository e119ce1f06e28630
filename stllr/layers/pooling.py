"""2 × 2 max pooling whose steps without a graph take two pairwise maxima.

``nn.MaxPool2d(2)`` on the CPU always computes the argmax indices of its windows
(``max_pool2d_with_indices``), which only a backward needs; the S-TLLR steps outside the
learning window (and evaluation) have none. For those, :func:`max_pool_2x2` gives the
window maxima as ``max(max(x[2i, 2j], x[2i, 2j+1]), max(x[2i+1, 2j], x[2i+1, 2j+1]))``
written as two ``torch.maximum`` passes over strided views: the same values (a maximum
is exact in any order; NaN propagates as in ``max_pool2d``), measured ~4× faster on the
``[16, 128, 32, 32]`` spikes of VGG-9's first pooling (docs/event_driven.md §6). A zero
maximum may differ in sign where a window holds both −0.0 and +0.0 (spikes never hold
−0.0).
"""

from __future__ import annotations

import torch
from torch import nn


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for ``x`` ``[..., H, W]`` (odd sizes cropped), without
    indices; a new contiguous tensor."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    cols = torch.maximum(x[..., 0::2], x[..., 1::2])  # [..., h, w/2]
    return torch.maximum(cols[..., 0::2, :], cols[..., 1::2, :])


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``; a call that autograd does not record (grad mode off, or an
    input that does not require grad) takes :func:`max_pool_2x2`."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        return max_pool_2x2(x)
