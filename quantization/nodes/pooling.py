"""Node kinds without weights or state: ``Pool``, ``GlobalSumPool`` and ``Add``.

Per time step (integers; inputs ``[B, C, H, W]`` batched or ``[C, H, W]`` one sample)::

    Pool           max or sum over non-overlapping k×k windows
    GlobalSumPool  Σ over H, W:  [C, H, W] → [C]
    Add            Σ_i x_i << shifts[i]     (residual blocks; shifts put inputs of
                                             different power-of-two scales on the finest)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantization.backend import int_max_pool2d, int_sum_pool2d
from quantization.kernels import add_shifted, global_sum_pool
from quantization.nodes.base import NodeKind, Step, UnsupportedNodeError, register_kind


@dataclass(frozen=True)
class Pool:
    """``max`` or ``sum`` over non-overlapping ``kernel × kernel`` windows."""

    name: str
    inputs: tuple[str, ...]
    mode: str  # "max" | "sum"
    kernel: int


@dataclass(frozen=True)
class GlobalSumPool:
    """Sum over every spatial position, ``[B, C, H, W] → [B, C]``."""

    name: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Add:
    """Elementwise sum ``Σ_i x_i << shifts[i]`` of the inputs (``shifts`` empty: all 0).

    The shifts put inputs of different power-of-two scales on the finest one (a
    residual block adding spikes, scale 1, to a 2×2 sum-pool of spikes, scale 1/4).
    """

    name: str
    inputs: tuple[str, ...]
    shifts: tuple[int, ...] = ()


def _zeros(shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


def pool_forward(node: Pool, state, inputs, host, step: int, index: int) -> Step:
    (x,) = inputs
    fn = int_max_pool2d if node.mode == "max" else int_sum_pool2d
    return Step(fn(x, node.kernel), None)


def pool_out_shape(node: Pool, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"pooling needs a [C, H, W] input, got {shape}")
    if node.mode not in ("max", "sum"):
        raise UnsupportedNodeError(f"pool mode {node.mode!r} is not supported (max or sum)")
    return pool_forward(node, None, [_zeros(shape)], None, 0, 0).out.shape


def pool_bound(node: Pool, in_bounds, in_shapes) -> int:
    return in_bounds[0] * (node.kernel**2 if node.mode == "sum" else 1)


def gsum_forward(node: GlobalSumPool, state, inputs, host, step: int, index: int) -> Step:
    (x,) = inputs
    return Step(global_sum_pool(x), None)


def gsum_out_shape(node: GlobalSumPool, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"global pooling needs a [C, H, W] input, got {shape}")
    return global_sum_pool(_zeros(shape)).shape


def gsum_bound(node: GlobalSumPool, in_bounds, in_shapes) -> int:
    h, w = in_shapes[0][-2:]
    return in_bounds[0] * h * w


def add_forward(node: Add, state, inputs, host, step: int, index: int) -> Step:
    return Step(add_shifted(inputs, node.shifts), None)


def add_out_shape(node: Add, in_shapes) -> tuple[int, ...]:
    if len(in_shapes) != 2:
        raise UnsupportedNodeError(f"AddProcess adds exactly 2 inputs, got {len(in_shapes)}")
    if in_shapes[0] != in_shapes[1]:
        raise UnsupportedNodeError(f"input shapes differ: {in_shapes}")
    shifts = tuple(node.shifts) or (0, 0)
    if len(shifts) != 2 or min(shifts) < 0:
        raise UnsupportedNodeError(f"shifts {node.shifts} must be two non-negative ints")
    return in_shapes[0]


def add_bound(node: Add, in_bounds, in_shapes) -> int:
    shifts = node.shifts or (0,) * len(in_bounds)
    return sum(b << k for b, k in zip(in_bounds, shifts, strict=True))


POOL = register_kind(NodeKind(Pool, pool_forward, pool_out_shape, pool_bound))
GLOBAL_SUM_POOL = register_kind(NodeKind(GlobalSumPool, gsum_forward, gsum_out_shape, gsum_bound))
ADD = register_kind(NodeKind(Add, add_forward, add_out_shape, add_bound))
