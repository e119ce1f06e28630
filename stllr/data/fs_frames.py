"""Fixed-length count frames of the first-spike coding datasets (docs/data.md, "First-spike
coding datasets").

A :class:`Recording` holds integer microsecond times ``t`` ``[N]`` (ascending), addresses
(``[N]`` channels, or ``[N, 3]`` ``[x, y, p]``) and a label. :func:`fixed_bins` makes
``T + T_empty`` frames of ``dt`` µs as the reference repository does:

``slice_then_shift`` (N-TIDIGITS, DVS Gesture)
    keep the events with ``0 ≤ t < T·dt`` (file time), then count from the first kept event:
    ``t' = t − t_first``;
``shift_then_slice`` (DVSPlane)
    ``t' = t − t[0]`` (the recording's first event), then keep ``t' < T·dt``.

Frame ``k`` (``0 ≤ k < T``) counts the events with ``k·dt ≤ t' < (k+1)·dt``; ``T_empty``
zero frames follow. Audio frames are ``[T + T_empty, C]`` (channel = address), camera frames
``[T + T_empty, 2, H/ds, W/ds]`` at ``[p, y // ds, x // ds]``. A window without events gives
zero frames (the reference stops with an IndexError there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

Alignment = Literal["slice_then_shift", "shift_then_slice"]


class Recording(NamedTuple):
    """One recording: times ``[N]`` int64 µs, addresses ``[N]`` or ``[N, 3]``, label."""

    t: np.ndarray
    addr: np.ndarray
    label: int


@dataclass(frozen=True)
class BinSpec:
    """``steps`` frames of ``dt_us`` µs, ``empty`` zero frames after them; ``shape`` of one
    frame (``(C,)`` audio, ``(2, H, W)`` camera after the ``ds`` downsampling)."""

    steps: int
    dt_us: int
    shape: tuple[int, ...]
    ds: int = 1
    empty: int = 0
    align: Alignment = "slice_then_shift"


def window(t: np.ndarray, spec: BinSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(index of the kept events, their bin k)`` for times ``t`` (module docstring)."""
    t = np.asarray(t, dtype=np.int64)
    span = spec.steps * spec.dt_us
    if spec.align == "shift_then_slice":
        shifted = t - t[0] if t.size else t
        keep = np.flatnonzero(shifted < span)
        return keep, shifted[keep] // spec.dt_us
    keep = np.flatnonzero((t >= 0) & (t < span))
    shifted = t[keep] - (t[keep][0] if keep.size else 0)
    return keep, shifted // spec.dt_us


def fixed_bins(rec: Recording, spec: BinSpec) -> np.ndarray:
    """float32 count frames ``[steps + empty, *shape]`` of one recording."""
    frames = np.zeros((spec.steps + spec.empty, *spec.shape), dtype=np.float32)
    keep, k = window(rec.t, spec)
    addr = np.asarray(rec.addr)[keep]
    if addr.ndim == 1:
        np.add.at(frames, (k, addr.astype(np.int64)), 1.0)
    else:
        x, y, p = (addr[:, i].astype(np.int64) for i in range(3))
        np.add.at(frames, (k, p, y // spec.ds, x // spec.ds), 1.0)
    return frames


class BinnedDataset:
    """``(frames [T + T_empty, *shape], label)`` per recording, binned on access."""

    def __init__(self, recordings: list[Recording], spec: BinSpec):
        self.recordings = recordings
        self.spec = spec

    def __len__(self) -> int:
        return len(self.recordings)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rec = self.recordings[index]
        return torch.from_numpy(fixed_bins(rec, self.spec)), int(rec.label)
