"""Node kind ``Flatten``: a feature map read as a vector, for a dense layer after the
convolutions (the recurrent FC layer of the convolutional first-spike networks,
docs/first_spike.md, "Networks").

Per time step (integers; input ``[B, C, H, W]`` batched or ``[C, H, W]`` one sample)::

    y[c·H·W + h·W + w] = x[c, h, w]          output [B, C·H·W] or [C·H·W]

the row-major order of PyTorch's ``flatten(1)``, which the float model applies before its
``Linear``, so the dense weight's columns need no permutation. No weights, no state; the
output keeps the input's scale and bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quantization.nodes.base import NodeKind, Quantized, Step, UnsupportedNodeError, register_kind


@dataclass(frozen=True)
class Flatten:
    """``[C, H, W] → [C·H·W]`` (row-major) per sample."""

    name: str
    inputs: tuple[str, ...]


def forward(node: Flatten, state, inputs, host, step: int, index: int) -> Step:
    """The last three axes (C, H, W) become one; a leading batch axis stays."""
    (x,) = inputs
    if isinstance(x, torch.Tensor):
        return Step(x.flatten(-3), None)
    x = np.asarray(x)
    return Step(x.reshape(*x.shape[:-3], -1), None)


def out_shape(node: Flatten, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"flatten needs a [C, H, W] input, got {shape}")
    return (int(shape[0]) * int(shape[1]) * int(shape[2]),)


def value_bound(node: Flatten, in_bounds, in_shapes) -> int:
    return in_bounds[0]


def from_float(spec: Flatten, scales: dict, cfg) -> Quantized:
    """The same reshape; the output has the input's scale."""
    return Quantized(spec, None, scales[spec.inputs[0]])


KIND = register_kind(NodeKind(Flatten, forward, out_shape, value_bound, float_spec=Flatten,
                              from_float=from_float))  # fmt: skip
