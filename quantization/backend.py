"""The few array operations the integer kernels need, for numpy arrays and torch tensors.

Kernels are written once against this namespace (DESIGN.md principle 3) so that the
torch emulator and the Lava ``fixed_pt`` process models run the same code. Python
operators (``+ - * >> <<``, comparisons) already behave alike on integer numpy
arrays and torch tensors; the functions below cover what does not.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

_NUMPY = SimpleNamespace(
    name="numpy",
    sign=np.sign,
    abs=np.abs,
    where=np.where,
    clip=np.clip,
    int64=lambda x: np.asarray(x).astype(np.int64),
    int32=lambda x: np.asarray(x).astype(np.int32),
    zeros_like=np.zeros_like,
)

_TORCH = SimpleNamespace(
    name="torch",
    sign=torch.sign,
    abs=torch.abs,
    where=torch.where,
    clip=torch.clamp,
    int64=lambda x: x.to(torch.int64),
    int32=lambda x: x.to(torch.int32),
    zeros_like=torch.zeros_like,
)


def xp_of(x) -> SimpleNamespace:
    """The operation namespace for ``x`` (a numpy array or a torch tensor)."""
    if isinstance(x, torch.Tensor):
        return _TORCH
    if isinstance(x, (np.ndarray, np.generic, int)):
        return _NUMPY
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
