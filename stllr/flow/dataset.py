"""Windows of an MVSEC(-format) sequence as training / evaluation samples (docs/flow.md §2, §4).

Sample i of a sequence is the window from image i to image i + dt:

* ``x`` ``[T, C, h, w]`` float32: the split-coded event counts (:mod:`stllr.flow.encoding`);
* ``gray0``, ``gray1`` ``[1, h, w]`` float32 in [0, 1]: images i and i + dt (/255);
* ``flow`` ``[2, h, w]`` float32: ground truth from ``image_ts[i]`` to ``image_ts[i+dt]``
  (:func:`stllr.flow.ground_truth.flow_between`), pixels;
* ``events`` ``[h, w]`` bool: pixels with at least one event in the window.

``h × w`` is a crop: the centre crop for evaluation (MVSEC: 256² at rows 2…257,
columns 45…300 of 260 × 346), a random crop plus random horizontal / vertical flips for
training (a flip mirrors the events and images and negates the matching flow
component), drawn from a generator reseeded every epoch (:meth:`WindowDataset.reseed`).
Windows ``skip ≤ i < M − dt − skip`` are used, and evaluation drops windows without
events, as Spike-FlowNet does.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from stllr.errors import UserError
from stllr.flow.encoding import encoded_counts, window_frames
from stllr.flow.ground_truth import flow_between
from stllr.flow.mvsec_files import FLOW, IMAGES, SequenceFiles, check_sequence


class FlowSample(NamedTuple):
    """One window (shapes in the module doc); batched, every field gains a batch dim
    (``x`` becomes ``[T, B, C, h, w]``)."""

    x: torch.Tensor
    gray0: torch.Tensor
    gray1: torch.Tensor
    flow: torch.Tensor
    events: torch.Tensor


def centre_crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """Top-left corner of the centred ``crop × crop`` window (MVSEC 260×346, 256: (2, 45))."""
    if crop > height or crop > width:
        raise UserError(f"flow crop {crop} is larger than the {height}×{width} frames")
    return (height - crop) // 2, (width - crop) // 2


class WindowDataset:
    """The windows of one sequence (module doc). ``train=True``: random crop and flips."""

    def __init__(
        self,
        files: SequenceFiles,
        cache_dir: Path,
        *,
        dt: int = 1,
        bins: int = 10,
        encoding: str = "2x10",
        crop: int = 256,
        skip: int = 20,
        train: bool = False,
        seed: int = 0,
    ):
        self.info = check_sequence(files)
        self.files = files
        self.dt, self.encoding, self.crop, self.train = dt, encoding, crop, train
        self.counts = encoded_counts(self.info, bins, cache_dir)
        n_img = len(self.info.image_ts)
        first, last = skip, n_img - dt - skip  # windows first ≤ i < last
        if last <= first:
            raise UserError(
                f"{files.data}: {n_img} images leave no window with dt={dt} after skipping "
                f"{skip} at each end"
            )
        idx = np.arange(first, last)
        if not train:
            has_events = np.array([self.counts[i : i + dt].any() for i in idx])
            idx = idx[has_events]
        gt_ts = self.info.flow_ts
        inside = (self.info.image_ts[idx] >= gt_ts[0]) & (self.info.image_ts[idx + dt] <= gt_ts[-1])
        self.indices = idx[inside]
        if len(self.indices) == 0:
            raise UserError(
                f"{files.data}: no window with events inside the ground truth's time range"
            )
        self.offsets = centre_crop_offsets(self.info.height, self.info.width, crop)
        self._rng = np.random.default_rng(seed)
        self._h5 = None

    def reseed(self, seed: int) -> None:
        """Draw this epoch's crops and flips from ``seed``."""
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def _files(self):
        if self._h5 is None:
            import h5py

            self._h5 = (h5py.File(self.files.data, "r"), h5py.File(self.files.gt, "r"))
        return self._h5

    def __getitem__(self, index: int) -> FlowSample:
        i = int(self.indices[index])
        data, gt = self._files()
        ts = self.info.image_ts
        x = window_frames(self.counts, i, self.dt, self.encoding)
        gray0 = data[IMAGES][i].astype(np.float32)[None] / 255.0
        gray1 = data[IMAGES][i + self.dt].astype(np.float32)[None] / 255.0
        flow = flow_between(gt[FLOW], self.info.flow_ts, ts[i], ts[i + self.dt])
        c = self.crop
        if self.train:
            top = int(self._rng.integers(0, self.info.height - c + 1))
            left = int(self._rng.integers(0, self.info.width - c + 1))
        else:
            top, left = self.offsets
        rows, cols = slice(top, top + c), slice(left, left + c)
        x, gray0, gray1, flow = (a[..., rows, cols] for a in (x, gray0, gray1, flow))
        if self.train:
            if self._rng.random() < 0.5:  # horizontal flip: x → −x
                x, gray0, gray1, flow = (a[..., ::-1] for a in (x, gray0, gray1, flow))
                flow = flow * np.array([-1.0, 1.0], dtype=np.float32)[:, None, None]
            if self._rng.random() < 0.5:  # vertical flip: y → −y
                x, gray0, gray1, flow = (a[..., ::-1, :] for a in (x, gray0, gray1, flow))
                flow = flow * np.array([1.0, -1.0], dtype=np.float32)[:, None, None]
        events = x.sum(axis=(0, 1)) > 0
        return FlowSample(
            *(torch.from_numpy(np.ascontiguousarray(a)) for a in (x, gray0, gray1, flow, events))
        )


class ConcatWindows:
    """Several sequences' windows as one dataset (training on more than one sequence)."""

    def __init__(self, parts: list[WindowDataset]):
        self.parts = parts
        self.sizes = np.cumsum([0] + [len(p) for p in parts])

    def reseed(self, seed: int) -> None:
        for k, p in enumerate(self.parts):
            p.reseed(seed * 31 + k)

    def __len__(self) -> int:
        return int(self.sizes[-1])

    def __getitem__(self, index: int) -> FlowSample:
        k = int(np.searchsorted(self.sizes, index, side="right")) - 1
        return self.parts[k][index - int(self.sizes[k])]


def collate(samples: list[FlowSample]) -> FlowSample:
    """Stack samples: ``x`` ``[T, B, C, h, w]``, the rest ``[B, ...]``."""
    x = torch.stack([s.x for s in samples], dim=1)
    rest = (torch.stack([getattr(s, f) for s in samples]) for f in FlowSample._fields[1:])
    return FlowSample(x, *rest)
