"""Where tensors live: the ``device`` setting ("auto" | "cpu" | "cuda" | "cuda:N").

One home for turning the setting into a :class:`torch.device` (:func:`resolve_device`),
for moving a batch there (:func:`to_device`) and for the collective backend that fits it
(:func:`backend_for`). ``auto`` means CUDA when available, else the CPU; under torchrun
``auto`` and ``cuda`` mean this process's own GPU, ``cuda:$LOCAL_RANK``.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from stllr.errors import UserError

if TYPE_CHECKING:  # a config check (and `stllr --help`) must not import torch
    import torch

#: the spellings of the setting
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_spec(spec: str, where: str = "device") -> str:
    """``spec`` if it is one of :data:`DEVICE_CHOICES`, else a one-line ``UserError``."""
    if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
        raise UserError(f"{where} must be one of {', '.join(DEVICE_CHOICES)}, got {spec!r}")
    return spec


def resolve_device(spec: str = "auto", where: str = "device") -> torch.device:
    """The :class:`torch.device` of a setting; ``UserError`` for CUDA on a host without it.

    ``where`` names the setting in the error (a config file and key, or ``--device``).
    """
    import torch

    spec = check_device_spec(spec, where)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"{where} is {spec!r} but CUDA is not available here; use cpu or auto")
    if spec in ("auto", "cuda"):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    index = int(spec.split(":")[1])
    if index >= torch.cuda.device_count():
        raise UserError(
            f"{where} is {spec!r} but this host has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(spec)


def backend_for(device: torch.device) -> str:
    """The collective backend whose tensors live on ``device``: NCCL on CUDA, else gloo."""
    return "nccl" if device.type == "cuda" else "gloo"


def to_device(tensors, device: torch.device | None):
    """``tensors`` (a tuple of tensors) on ``device``; asynchronous from pinned memory."""
    if device is None:
        return tensors
    return tuple(t.to(device, non_blocking=t.is_pinned()) for t in tensors)
