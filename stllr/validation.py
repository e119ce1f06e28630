"""Input checks with errors that name the argument and the expected value.

These run on user-facing entry points (layer ``forward``, sequence-level training
and evaluation). They raise ``ValueError``/``TypeError``, never ``assert``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from stllr.errors import UserError


def check_float_tensor(name: str, x: object) -> torch.Tensor:
    """``x`` must be a floating-point ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating-point dtype (e.g. torch.float32), got {x.dtype}; "
            f"convert spikes/counts with {name}.float()"
        )
    return x


def check_shape(name: str, x: torch.Tensor, expected: Sequence[int | None], layout: str) -> None:
    """``x.shape`` must match ``expected`` (``None`` = any size); ``layout`` names the dims."""
    if x.dim() != len(expected):
        raise UserError(
            f"{name} must have {len(expected)} dimensions {layout}, got shape {tuple(x.shape)}"
        )
    for axis, (got, want) in enumerate(zip(x.shape, expected, strict=True)):
        if want is not None and got != want:
            exp = tuple("*" if e is None else e for e in expected)
            raise UserError(
                f"{name} has size {got} in dimension {axis} but {want} was expected: "
                f"expected shape {exp} {layout}, got {tuple(x.shape)}"
            )


def check_finite(name: str, x: torch.Tensor) -> None:
    """``x`` must contain no NaN or ±inf.

    A finite sum implies finite elements (NaN and ±inf propagate), which costs one
    reduction; only a non-finite sum (or an overflow) runs the exact element check.
    """
    if math.isfinite(float(x.sum())):
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise UserError(f"{name} contains {bad} NaN/inf value(s); all values must be finite")


def check_sequence(name: str, x: object, step_shape: Sequence[int | None], layout: str):
    """A time-major sequence ``[T, B, *step_shape]`` with T ≥ 1, float, finite."""
    x = check_float_tensor(name, x)
    check_shape(name, x, [None, None, *step_shape], layout)
    if x.shape[0] == 0:
        raise UserError(f"{name} has T = 0 time steps; at least 1 is required {layout}")
    if x.shape[1] == 0:
        raise UserError(f"{name} has batch size 0; at least 1 sample is required {layout}")
    check_finite(name, x)
    return x


def check_labels(name: str, y: object, batch: int, num_classes: int) -> torch.Tensor:
    """Integer class labels ``[B]`` in ``[0, num_classes)``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices (torch.long), got {y.dtype}")
    check_shape(name, y, [batch], "[B]")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(
            f"{name} has labels in [{int(y.min())}, {int(y.max())}] "
            f"but the model has {num_classes} classes (expected 0..{num_classes - 1})"
        )
    return y.long()
