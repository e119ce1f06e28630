"""CIFAR10-DVS through tonic 1.7.0 ``CIFAR10DVS`` (aedat4 files), read offline.

Pipeline of the reference (docs/rule.md §11b, the OTTT/spikingjelly code), per recording:

1. ``ToFrame(n_event_bins=10)``: 10 frames of equal event count, counts ``[10, 2, 128, 128]``
   (tonic drops the last ``N mod 10`` events; spikingjelly put them in the last frame).
2. Per frame, the reference's ``ToPILImage`` on float counts computes
   ``(255·c).byte()``: with ``uint8_wrap=True`` (default) this is reproduced exactly as
   ``(255·c) mod 256``, i.e. 0 → 0, 1 → 255, 2 → 254, …, ``c`` → ``256 − c`` (wrap-around);
   ``uint8_wrap=False`` saturates instead (``min(255·c, 255)``). The two channels become a
   PIL ``"LA"`` image (L = polarity 0, A = polarity 1).
3. ``Resize(48)``. ``resize_mode="pil"`` (default) reproduces Pillow's ``LA`` bilinear resize
   bit for bit (checked against Pillow in the tests): L is premultiplied by A
   (``L·A/255`` rounded as Pillow's ``MULDIV255``), both bands are resampled with Pillow's
   8-bit fixed-point separable filter (22 fractional bits, horizontal pass then vertical
   pass, each rounded and clipped to 0..255), then L is un-premultiplied
   (``min(255·L // A, 255)`` where ``0 < A < 255``). ``resize_mode="torch"`` is the plain
   alternative: ``F.interpolate(bilinear, antialias=True)`` per channel in float, rounded
   to 0..255 — the same filter up to rounding but *without* the premultiplication (channel
   0 then differs a lot where channel 1 is empty).
4. Frame cache (values ``v/255`` in [0, 1], float32 ``[10, 2, 48, 48]``).
5. Train only: ``Pad(4)`` with zeros and ``RandomCrop(48)``, one crop for all frames.
6. ``ToTensor`` + ``Normalize(mean=(0.2728, 0.1295), std=(0.2225, 0.1290))``. These
   constants were computed on the wrapped values, hence the default ``uint8_wrap=True``.

Split: per class, files sorted by the integer in their name; the first
``floor(0.9·n_class)`` are train (indices 0–899 of 1000), the rest test (900–999).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tonic
import torch
import torch.nn.functional as F

from stllr.data.binning import events_to_frames, random_crop
from stllr.data.frame_dataset import EventFrameDataset, FrameDatasetConfig
from stllr.data.offline import check_offline, natural_key, offline_tonic_class, warn_if_incomplete
from stllr.data.recording_sources import TonicSource
from stllr.errors import UserError

SENSOR_SIZE = (128, 128, 2)
CLASS_NAMES = tuple(tonic.datasets.CIFAR10DVS.classes)  # airplane … truck, labels 0..9
NUM_CLASSES = 10
FULL_SIZE = 10_000
MEAN = (0.2728, 0.1295)
STD = (0.2225, 0.1290)

LAYOUT = """\
<root>/
└── CIFAR10DVS/
    ├── CIFAR10DVS.zip            (optional here; plain tonic needs this file, 0 bytes is fine)
    ├── airplane/
    │   ├── cifar10_airplane_0.aedat4     (any names; sorted by the integer they contain)
    │   ├── …
    │   └── cifar10_airplane_999.aedat4
    ├── automobile/ bird/ cat/ deer/ dog/ frog/ horse/ ship/ truck/
    └── …                         one folder per class, 1000 .aedat4 recordings each
(tonic's figshare aedat4 re-encoding of CIFAR10-DVS, all class zips extracted)"""

EXPECTED_FORMAT = "an AEDAT 4 file (#!AER-DAT4.0) with one polarity-event stream"

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit resampling


@dataclass(frozen=True)
class Cifar10DVSConfig:
    """CIFAR10-DVS loading options (defaults = the reference pipeline).

    Attributes:
        root: data root; files live in ``<root>/CIFAR10DVS/<class>/`` (see :data:`LAYOUT`).
        train: train split (first 90 % per class) or test split.
        n_frames: frames of equal event count (10).
        size: output height = width (``Resize(48)``).
        uint8_wrap: reproduce ``ToPILImage``'s uint8 wrap-around of ``255·count``.
        resize_mode: ``"pil"`` (exact Pillow ``LA`` resize) or ``"torch"`` (interpolate).
        crop_padding: zero padding before the random crop (train only).
        augment: random crop for the train split.
        train_fraction: per-class fraction of files in the train split.
        mean, std: per-channel normalisation of the [0, 1] values.
        cache, cache_dir, progress, seed: see :class:`~stllr.data.frame_dataset.FrameDatasetConfig`;
            ``cache_dir=None`` means ``<root>/cache``.
    """

    root: str
    train: bool = True
    n_frames: int = 10
    size: int = 48
    uint8_wrap: bool = True
    resize_mode: Literal["pil", "torch"] = "pil"
    crop_padding: int = 4
    augment: bool = True
    train_fraction: float = 0.9
    mean: tuple[float, float] = MEAN
    std: tuple[float, float] = STD
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True
    seed: int = 0


# --------------------------------------------------------------------------- per-frame math


def counts_to_uint8(counts: np.ndarray, wrap: bool = True) -> np.ndarray:
    """Event counts → uint8 as the reference's ``ToPILImage`` (``(255·c).byte()``).

    ``wrap=True``: ``(255·c) mod 256`` (what torch's float→uint8 cast does on CPU, so
    ``c`` ≥ 1 gives ``256 − c mod 256``); ``wrap=False``: ``min(255·c, 255)``.
    """
    scaled = np.asarray(counts).astype(np.int64) * 255
    if wrap:
        return (scaled % 256).astype(np.uint8)
    return np.clip(scaled, 0, 255).astype(np.uint8)


@functools.cache
def pil_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's 8-bit bilinear resampling weights as an int64 matrix ``[out, in]``.

    Same arithmetic as Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``:
    ``scale = in/out``, support ``max(scale, 1)``, window ``[int(c − s + 0.5),
    int(c + s + 0.5))`` around ``c = (o + 0.5)·scale``, triangle weights
    ``1 − |(x − c + 0.5)/max(scale, 1)|`` normalised to sum 1, then scaled by ``2**22`` and
    rounded half away from zero.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    for o in range(out_size):
        center = (o + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        k = []
        for x in range(xmin, xmax):
            d = abs((x - center + 0.5) / filterscale)
            k.append(1.0 - d if d < 1.0 else 0.0)
        total = sum(k)
        for x, w in zip(range(xmin, xmax), k, strict=True):
            w = w / total if total != 0.0 else w
            fixed = w * (1 << PRECISION_BITS)
            weights[o, x] = int(fixed - 0.5) if fixed < 0 else int(fixed + 0.5)
    return weights


def _pil_pass(img: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """One Pillow fixed-point pass along ``axis`` (−1 = width, −2 = height), uint8 → uint8."""
    x = np.moveaxis(img, axis, -1).astype(np.float64)
    # float64 BLAS is exact here: products < 2**30 and sums < 2**38 stay below 2**53
    acc = (x @ weights.T.astype(np.float64)).astype(np.int64) + (1 << (PRECISION_BITS - 1))
    out = np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def pil_resize_uint8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow ``Image.resize(BILINEAR)`` of 8-bit bands ``[..., H, W]`` to ``size = (h, w)``.

    Horizontal pass first, then vertical, each rounded and clipped to uint8 (Pillow's
    ``ImagingResample`` for 8-bit images). Sizes that do not change skip their pass.
    """
    h, w = size
    out = np.asarray(img, dtype=np.uint8)
    if out.shape[-1] != w:
        out = _pil_pass(out, pil_bilinear_matrix(out.shape[-1], w), -1)
    if out.shape[-2] != h:
        out = _pil_pass(out, pil_bilinear_matrix(out.shape[-2], h), -2)
    return out


def pil_la_resize(la: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's resize of ``"LA"`` images ``[..., 2, H, W]`` (uint8): premultiply L by A,
    resample both bands, un-premultiply (see the module docstring). Pillow returns a plain
    copy when the size does not change, and so does this function."""
    la = np.asarray(la, dtype=np.uint8)
    if tuple(la.shape[-2:]) == tuple(size):
        return la.copy()
    lum, alpha = la[..., 0, :, :].astype(np.int64), la[..., 1, :, :].astype(np.int64)
    tmp = lum * alpha + 128
    pre = ((tmp >> 8) + tmp) >> 8  # MULDIV255
    both = np.stack([pre, alpha], axis=-3).astype(np.uint8)
    res = pil_resize_uint8(both, size).astype(np.int64)
    lum_r, alpha_r = res[..., 0, :, :], res[..., 1, :, :]
    unpre = np.clip(255 * lum_r // np.maximum(alpha_r, 1), 0, 255)
    keep = (alpha_r == 0) | (alpha_r == 255)
    lum_out = np.where(keep, lum_r, unpre)
    return np.stack([lum_out, alpha_r], axis=-3).astype(np.uint8)


def torch_resize_uint8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Channel-wise ``F.interpolate(bilinear, antialias=True)`` of uint8 ``[..., C, H, W]``,
    rounded and clipped to 0..255 (no alpha premultiplication)."""
    x = torch.from_numpy(np.asarray(img, dtype=np.float32))
    lead = x.shape[:-2]
    y = F.interpolate(
        x.reshape(1, -1, *x.shape[-2:]),
        size=size,
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    y = torch.round(y).clamp(0, 255).reshape(*lead, *size)
    return y.numpy().astype(np.uint8)


def cifar_frames(events: np.ndarray, where: str, config: Cifar10DVSConfig) -> list[np.ndarray]:
    """Cached part of the pipeline: ``[n_frames, 2, size, size]`` float32 in [0, 1]."""
    if 0 < events.size < config.n_frames:
        raise UserError(
            f"{where}: {events.size} events cannot fill {config.n_frames} frames of equal "
            f"event count; expected at least {config.n_frames} events"
        )
    counts = events_to_frames(events, SENSOR_SIZE, where, n_event_bins=config.n_frames)
    img = counts_to_uint8(counts, wrap=config.uint8_wrap)
    size = (config.size, config.size)
    if config.resize_mode == "pil":
        small = pil_la_resize(img, size)
    elif config.resize_mode == "torch":
        small = torch_resize_uint8(img, size)
    else:
        raise UserError(f"resize_mode must be 'pil' or 'torch', got {config.resize_mode!r}")
    return [small.astype(np.float32) / 255.0]


@dataclass(frozen=True)
class CifarAugmentNormalize:
    """After the cache: optional pad + random crop (one for all frames), then normalise."""

    size: int
    padding: int
    crop: bool
    mean: tuple[float, float]
    std: tuple[float, float]

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop:
            frames = random_crop(frames, (self.size, self.size), self.padding, generator)
        mean = torch.tensor(self.mean, dtype=frames.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=frames.dtype).view(1, -1, 1, 1)
        return (frames - mean) / std


def _check_aedat4(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(14)
    if head != b"#!AER-DAT4.0\r\n":
        raise UserError(
            f"{path}: not an AEDAT 4 file (starts with {head[:14]!r}); expected {EXPECTED_FORMAT}"
        )


def split_indices(
    labels: list[int], files: list[str], train: bool, train_fraction: float
) -> list[int]:
    """Per class, files in natural order; the first ``floor(fraction·n)`` are train."""
    chosen = []
    for c in sorted(set(labels)):
        members = sorted(
            (j for j, y in enumerate(labels) if y == c), key=lambda j: natural_key(files[j])
        )
        n_train = math.floor(train_fraction * len(members) + 1e-9)
        chosen.extend(members[:n_train] if train else members[n_train:])
    return chosen


def cifar10_dvs_dataset(config: Cifar10DVSConfig) -> EventFrameDataset:
    """Build the train or test split described by ``config``.

    Raises:
        FileNotFoundError: the ``CIFAR10DVS`` folder is missing or has no ``.aedat4`` files
            (the message shows :data:`LAYOUT`); nothing is downloaded.
        ValueError: an unknown class folder, or an unreadable/empty recording (the message
            names the file).
    """
    if not 0.0 < config.train_fraction < 1.0:
        raise UserError(f"train_fraction must be in (0, 1), got {config.train_fraction}")
    base = check_offline(config.root, "CIFAR10DVS", LAYOUT, suffix=".aedat4")
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if any(folder.glob("*.aedat4")) and folder.name not in CLASS_NAMES:
            raise UserError(
                f"{folder}: unknown class folder '{folder.name}'; expected one of {CLASS_NAMES}"
            )
    cls = offline_tonic_class(tonic.datasets.CIFAR10DVS, LAYOUT)
    try:
        ds = cls(save_to=str(config.root))
    except KeyError as err:  # a nested folder of .aedat4 files with a non-class name
        raise UserError(
            f"{base}: .aedat4 files in a folder named {err} that is not a class; expected "
            f"one of {CLASS_NAMES}"
        ) from err
    warn_if_incomplete(base, len(ds.data), FULL_SIZE, ".aedat4 recordings")
    files = [str(p) for p in ds.data]
    order = split_indices(list(ds.targets), files, config.train, config.train_fraction)
    source = TonicSource(
        ds, order, [ds.targets[j] for j in order], "CIFAR10DVS", EXPECTED_FORMAT, _check_aedat4
    )
    params = {
        "split": "train" if config.train else "test",
        "train_fraction": config.train_fraction,
        "n_frames": config.n_frames,
        "size": config.size,
        "uint8_wrap": config.uint8_wrap,
        "resize_mode": config.resize_mode,
    }
    augment = CifarAugmentNormalize(
        config.size,
        config.crop_padding,
        config.train and config.augment,
        tuple(config.mean),
        tuple(config.std),
    )
    cache_dir = None
    if config.cache:
        cache_dir = config.cache_dir or str(Path(config.root).expanduser() / "cache")
    frame_config = FrameDatasetConfig(
        name=f"cifar10dvs-{params['split']}",
        cache_dir=cache_dir,
        progress=config.progress,
        seed=config.seed,
    )
    return EventFrameDataset(
        source,
        functools.partial(cifar_frames, config=config),
        params,
        frame_config,
        augment=augment,
    )


def cifar10_dvs_splits(root: str | os.PathLike, **options) -> tuple[EventFrameDataset, ...]:
    """``(train, test)`` datasets with the same options (``Cifar10DVSConfig`` fields)."""
    root = str(root)
    train = cifar10_dvs_dataset(Cifar10DVSConfig(root=root, train=True, **options))
    test = cifar10_dvs_dataset(Cifar10DVSConfig(root=root, train=False, **options))
    return train, test
