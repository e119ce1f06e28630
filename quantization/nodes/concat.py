"""Node kind ``Concat``: channel concatenation of feature maps (skip paths of a U-Net-like
decoder, e.g. the optical-flow network's).

Per time step (integers; inputs ``[B, C_i, H, W]`` batched or ``[C_i, H, W]`` one sample,
the same ``H, W``)::

    y = [x_0 << shifts[0], x_1 << shifts[1], ...]   along the channel axis

The shifts put inputs of different power-of-two scales on the finest one, as ``Add``
does; the output's float scale is that finest scale. No weights, no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quantization.layer_quantization import shifts_to_finest
from quantization.nodes.base import NodeKind, Quantized, Step, UnsupportedNodeError, register_kind


@dataclass(frozen=True)
class Concat:
    """``[x_i << shifts[i]]`` concatenated along channels (``shifts`` empty: all 0)."""

    name: str
    inputs: tuple[str, ...]
    shifts: tuple[int, ...] = ()


def forward(node: Concat, state, inputs, host, step: int, index: int) -> Step:
    shifts = tuple(node.shifts) or (0,) * len(inputs)
    parts = [x << k if k else x for x, k in zip(inputs, shifts, strict=True)]
    if isinstance(parts[0], torch.Tensor):
        return Step(torch.cat(parts, dim=-3), None)
    return Step(np.concatenate(parts, axis=-3), None)


def out_shape(node: Concat, in_shapes) -> tuple[int, ...]:
    if len(in_shapes) < 2:
        raise UnsupportedNodeError(f"concatenation needs 2 or more inputs, got {len(in_shapes)}")
    if any(len(s) != 3 for s in in_shapes) or len({s[1:] for s in in_shapes}) != 1:
        raise UnsupportedNodeError(f"inputs must be [C, H, W] of one H, W, got {in_shapes}")
    shifts = tuple(node.shifts) or (0,) * len(in_shapes)
    if len(shifts) != len(in_shapes) or min(shifts) < 0:
        raise UnsupportedNodeError(f"shifts {node.shifts} must be one non-negative int per input")
    return (sum(s[0] for s in in_shapes), *in_shapes[0][1:])


def value_bound(node: Concat, in_bounds, in_shapes) -> int:
    shifts = node.shifts or (0,) * len(in_bounds)
    return max(b << k for b, k in zip(in_bounds, shifts, strict=True))


def from_float(spec: Concat, scales: dict, cfg) -> Quantized:
    """Shifts that put every input on the finest scale (powers of two apart, or an error)."""
    shifts, finest = shifts_to_finest(spec.name, spec.inputs, scales)
    return Quantized(Concat(spec.name, spec.inputs, shifts if any(shifts) else ()), None, finest)


KIND = register_kind(NodeKind(Concat, forward, out_shape, value_bound, float_spec=Concat,
                              from_float=from_float))  # fmt: skip
