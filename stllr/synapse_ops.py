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


@dataclass(frozen=True)
class ConvTranspose2dOps(SynapseOps):
    """2-D transposed convolution (the decoder's up-sampling synapse).

    Ŵ is stored **output-channel first**, ``[C_out, C_in, kH, kW]``, like a convolution's,
    so that weight standardisation and the gain are per output channel as in every other
    layer; PyTorch's ``conv_transpose2d`` wants ``[C_in, C_out, kH, kW]``, hence the
    transposes below. Element-wise (``x`` ``[B, C_in, H, W]``)::

        I[o, i·s − p + a, j·s − p + c] += Ŵ[o, ci, a, c] · x[ci, i, j]

    The input gradient is the forward convolution with the same Ŵ, stride and padding,
    and the weight gradient is the correlation ``Σ a[o, i·s − p + a', …] · x[ci, i, j]``.
    """

    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (1, 1)
    output_padding: tuple[int, int] = (0, 0)

    def current(self, x, w, b):
        return F.conv_transpose2d(
            x, w.transpose(0, 1), b, self.stride, self.padding, self.output_padding
        )

    def input_grad(self, a, w, x_shape):
        g = F.conv2d(a, w.transpose(0, 1), None, self.stride, self.padding)
        return g[..., : x_shape[-2], : x_shape[-1]]

    def weight_grad(self, a, x, w_shape):
        # conv_transpose2d(x, W) is the adjoint of conv2d(·, W): ⟨a, convT(x, W)⟩ =
        # ⟨conv2d(a, W), x⟩, so ∂/∂W is conv2d's weight gradient with input a, output x.
        c_out, c_in, kh, kw = w_shape
        g = conv2d_weight(a, (c_in, c_out, kh, kw), x, self.stride, self.padding)
        return g.transpose(0, 1).contiguous()
