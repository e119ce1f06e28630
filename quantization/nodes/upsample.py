"""Node kind ``Upsample2x``: fixed ×2 bilinear up-sampling of a graded map, exact in
integers (the coarser flow that the optical-flow network feeds into its next decoder
stage, docs/flow.md "Deployment").

PyTorch's ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)``
reads output row ``2i`` at input coordinate ``i − ¼`` and row ``2i + 1`` at ``i + ¼``,
clamping coordinates below 0 to 0 and indices past the end to the last row. Along one
axis, with ``x[−1] = x[0]`` and ``x[n] = x[n−1]`` (edge replication, the clamp)::

    y[2i]     = (3·x[i] + x[i−1]) / 4
    y[2i + 1] = (3·x[i] + x[i+1]) / 4

Both axes are separable, so the integer node computes, per time step and channel
(``x`` ``[(B,) C, H, W]`` → ``[(B,) C, 2H, 2W]``)::

    Y[2i+a, 2j+b] = Σ_{p,q ∈ {0,1}} k_p·k_q · x[i + d_a(p), j + d_b(q)]
                    k = (3, 1),  d_0 = (0, −1),  d_1 = (0, +1)   (indices clamped)

i.e. ``16 × bilinear(x)`` with no rounding: the output's float scale is the input's
divided by 16 (weights outer([1, 3, 3, 1]) of a depthwise transposed convolution with
kernel 4, stride 2, padding 1, except at the border, where the clamp replaces the zero
padding). No weights, no state.

A node with ``shift = k > 0`` then coarsens the result, ``y = round_shift(Y, k,
"nearest_up") = ⌊(Y + 2^(k−1)) / 2^k⌋``, at scale ``s_in · 2^k / 16``: the one rounding,
used where the map feeds a spiking layer next to spikes, whose threshold in weight LSBs
grows as the input's scale shrinks (docs/flow.md, "Deployment").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from quantization.backend import round_shift
from quantization.nodes.base import NodeKind, Quantized, Step, UnsupportedNodeError, register_kind

#: the integer output is ``UP_GAIN × bilinear(x)``
UP_GAIN = 16


@dataclass(frozen=True)
class Upsample2x:
    """``round_shift(16 × bilinear×2(x), shift)`` of a ``[C, H, W]`` map (module doc); its
    own float spec (the float graph: ``bilinear×2(x)``; ``out_scale`` there asks PTQ for
    the output scale, a power of two, which sets ``shift``)."""

    name: str
    inputs: tuple[str, ...]
    shift: int = 0
    out_scale: float | None = None


def _cat(parts, axis: int):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def _stack(parts, axis: int):
    if isinstance(parts[0], torch.Tensor):
        return torch.stack(parts, dim=axis)
    return np.stack(parts, axis=axis)


def _up_axis(x, axis: int):
    """``4 × linear×2`` along ``axis`` (negative), edges replicated (module doc)."""
    n = x.shape[axis]
    idx = [slice(None)] * x.ndim

    def take(sl):
        idx[axis] = sl
        return x[tuple(idx)]

    prev = _cat([take(slice(0, 1)), take(slice(0, n - 1))], axis)  # x[i−1], clamped
    nxt = _cat([take(slice(1, n)), take(slice(n - 1, n))], axis)  # x[i+1], clamped
    even, odd = 3 * x + prev, 3 * x + nxt
    ax = axis % x.ndim
    pair = _stack([even, odd], ax + 1)  # [..., n, 2, ...]: y[2i], y[2i+1] adjacent
    shape = list(x.shape)
    shape[ax] = 2 * n
    return pair.reshape(shape)


def upsample2x_int(x):
    """``16 × bilinear×2(x)`` for integer ``x`` ``[..., H, W]`` (numpy or torch)."""
    return _up_axis(_up_axis(x, -2), -1)


def forward(node: Upsample2x, state, inputs, host, step: int, index: int) -> Step:
    (x,) = inputs
    return Step(round_shift(upsample2x_int(x), node.shift, "nearest_up"), None)


def out_shape(node: Upsample2x, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"up-sampling needs a [C, H, W] input, got {shape}")
    return (shape[0], 2 * shape[1], 2 * shape[2])


def value_bound(node: Upsample2x, in_bounds, in_shapes) -> int:
    return ((in_bounds[0] * UP_GAIN) >> node.shift) + 1


def from_float(spec: Upsample2x, scales: dict, cfg) -> Quantized:
    """Output scale ``s_in / 16`` (exact), or ``spec.out_scale`` where that is coarser:
    ``shift = log2(out_scale · 16 / s_in)`` (a power of two, or a ValueError naming it)."""
    exact = scales[spec.inputs[0]] / UP_GAIN
    if spec.out_scale is None or spec.out_scale <= exact:
        return Quantized(Upsample2x(spec.name, spec.inputs), None, exact)
    k = math.log2(spec.out_scale / exact)
    if k != round(k):
        raise ValueError(f"up-sampling {spec.name}: out_scale {spec.out_scale} is not "
                         f"{exact} times a power of two")  # fmt: skip
    return Quantized(Upsample2x(spec.name, spec.inputs, int(k)), None, spec.out_scale)


KIND = register_kind(NodeKind(Upsample2x, forward, out_shape, value_bound,
                              float_spec=Upsample2x, from_float=from_float))  # fmt: skip
