"""Synaptic operators: the three products an S-TLLR layer needs, per connectivity.

For a connection with weight Ŵ, pre-synaptic activity ``x`` ``[B, *in]`` and a
post-synaptic quantity ``a`` ``[B, *out]``:

* ``current(x, Ŵ, b)``  — forward current, ``I = Ŵ x + b``;
* ``input_grad(a, Ŵ, x_shape)`` — ``Ŵᵀ a``, the gradient sent to the layer below;
* ``weight_grad(a, x, w_shape)`` — ``Σ_batch aᵀ x``, the batch-summed outer product
  (for a convolution: the correlation summed over batch and positions).

``weight_grad`` is linear in its batch dimension, so two terms can be fused into
one product by concatenating along the batch: ``wg(a1, x1) + wg(a2, x2) =
wg(cat[a1, a2], cat[x1, x2])``. New connectivities (transposed convolutions for
optical flow, say) plug in by subclassing :class:`SynapseOps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


class SynapseOps:
    """Interface of a connectivity (stateless; subclasses are frozen dataclasses)."""

    def current(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def input_grad(self, a: torch.Tensor, w: torch.Tensor, x_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def weight_grad(self, a: torch.Tensor, x: torch.Tensor, w_shape: torch.Size) -> torch.Tensor:
        raise NotImplementedError

    def bias_grad(self, a: torch.Tensor) -> torch.Tensor:
        """``Σ a`` over every dimension but the channel one (dim 1)."""
        dims = [d for d in range(a.dim()) if d != 1]
        return a.sum(dim=dims)


@dataclass(frozen=True)
class DenseOps(SynapseOps):
    """All-to-all connectivity, ``x`` ``[B, in]``, Ŵ ``[out, in]``."""

    def current(self, x, w, b):
        return F.linear(x, w, b)

    def input_grad(self, a, w, x_shape):
        return a.mm(w)

    def weight_grad(self, a, x, w_shape):
        return a.t().mm(x)


@dataclass(frozen=True)
class Conv2dOps(SynapseOps):
    """2-D convolution, ``x`` ``[B, C_in, H, W]``, Ŵ ``[C_out, C_in/groups, kH, kW]``."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def current(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def input_grad(self, a, w, x_shape):
        return conv2d_input(x_shape, w, a, self.stride, self.padding, self.dilation, self.groups)

    def weight_grad(self, a, x, w_shape):
        return conv2d_weight(x, w_shape, a, self.stride, self.padding, self.dilation, self.groups)
