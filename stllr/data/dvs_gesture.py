"""DVS128 Gesture through tonic 1.7.0 ``DVSGesture`` (official split), read offline.

Pipeline of the reference (docs/rule.md §11a), all sizes configurable in :class:`GestureConfig`:

* **train**: ``SliceByTime(1.575 s)`` without the partial last slice (slices start at the
  first event), each slice → ``ToFrame(time_window=75 ms)`` counts ``[T, 2, 128, 128]``
  (complete windows only, so ``T ≤ 20``; 20 for slices that last ≥ 1.5 s) → torchvision
  ``Resize(32)`` (bilinear, antialias; the int16 counts are interpolated in float32 and
  rounded back to integers, as torchvision does for integer tensors) → frame cache →
  ``RandomCrop(32, padding=4)`` with one crop for all frames of a sample (seeded).
* **test**: whole recordings, not sliced (``T ≈ 80`` for 6 s), same frames and resize, no
  crop; batches are zero-padded to the longest sample by :func:`~stllr.data.batching.pad_collate`.

Frames are float32 ``[T, 2, 32, 32]`` (channel 0 = OFF/``p=0``, 1 = ON). Labels are
0..10 (10 = "other gestures"). Every recording also carries its ``user`` (1..29) and
``lighting`` (e.g. ``"fluorescent_led"``), exposed per recording and per sample for
held-out-user experiments; ``GestureConfig.users`` keeps only some users.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tonic
import torch

from stllr.data.binning import (
    CropAugment,
    events_to_frames,
    resize_frames,
    slice_by_time,
    validate_events,
)
from stllr.data.frame_dataset import EventFrameDataset, FrameDatasetConfig
from stllr.data.offline import check_offline, offline_tonic_class, warn_if_incomplete
from stllr.data.recording_sources import TonicSource
from stllr.errors import UserError

SENSOR_SIZE = (128, 128, 2)
NUM_CLASSES = 11
FULL_TRAIN, FULL_TEST = 1077, 264  # recordings in tonic's pre-cut release
CLASS_NAMES = tuple(tonic.datasets.DVSGesture.classes)

LAYOUT = """\
<root>/
└── DVSGesture/
    ├── ibmGestureTrain.tar.gz     (optional here; plain tonic needs this file, 0 bytes is fine)
    ├── ibmGestureTest.tar.gz      (idem)
    ├── ibmGestureTrain/
    │   ├── user01_fluorescent/
    │   │   ├── 0.npy              one recording per gesture, file name = label 0..10
    │   │   ├── …                  each an (N, 4) integer array [x, y, p, t_ms] (numpy.save)
    │   │   └── 10.npy
    │   ├── user01_fluorescent_led/
    │   └── …                      userNN_<lighting>/, users 1–23
    └── ibmGestureTest/
        └── user24_fluorescent/ …  users 24–29
(tonic's pre-cut figshare version: ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz, extracted)"""

EXPECTED_FORMAT = "an (N, 4) integer .npy array with columns [x, y, p, t in ms]"


@dataclass(frozen=True)
class GestureConfig:
    """DVS Gesture loading options (defaults = the reference pipeline).

    Attributes:
        root: data root; files live in ``<root>/DVSGesture/`` (see :data:`LAYOUT`).
        train: the official train split (users 1–23) or test split (users 24–29).
        slice_us: training slice length in µs (1.575 s); ``None`` keeps whole recordings.
            Ignored for the test split, which is never sliced (reference behaviour).
        frame_us: frame length in µs (75 ms).
        size: output height = width in pixels (``Resize(32)``).
        antialias: antialiased bilinear resize.
        round_resized: round the resized counts to integers (torchvision on int16 input).
        crop_padding: zero padding of the random crop, pixels (train only).
        augment: random crop for the train split; never applied to the test split.
        users: keep only recordings of these users (``None`` = all).
        cache: keep binned frames on disk (else in memory).
        cache_dir: cache folder; ``None`` means ``<root>/cache``.
        progress: tqdm bar while binning.
        seed: augmentation seed.
    """

    root: str
    train: bool = True
    slice_us: int | None = 1_575_000
    frame_us: int = 75_000
    size: int = 32
    antialias: bool = True
    round_resized: bool = True
    crop_padding: int = 4
    augment: bool = True
    users: tuple[int, ...] | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True
    seed: int = 0


class GestureDataset(EventFrameDataset):
    """:class:`~stllr.data.frame_dataset.EventFrameDataset` with per-recording metadata.

    Attributes:
        recording_users: user number (1..29) of every recording.
        recording_lighting: lighting condition of every recording.
        recording_files: ``.npy`` path of every recording.
    """

    recording_users: list[int]
    recording_lighting: list[str]
    recording_files: list[str]

    @property
    def sample_users(self) -> list[int]:
        """User of every sample."""
        return [self.recording_users[r] for r in self.sample_recording]

    @property
    def sample_lighting(self) -> list[str]:
        """Lighting of every sample."""
        return [self.recording_lighting[r] for r in self.sample_recording]


def gesture_frames(events: np.ndarray, where: str, config: GestureConfig) -> list[np.ndarray]:
    """The cached part of the pipeline: frame stacks ``[T, 2, size, size]`` of one recording.

    Training recordings give one stack per complete 1.575 s slice; test recordings one
    stack for the whole recording.
    """
    pieces = [events]
    if config.train and config.slice_us is not None:
        # checked whole, before slicing: tonic's slicer assumes sorted times, so unsorted
        # ones would be cut into pieces silently (or dropped with the partial last slice)
        validate_events(events, SENSOR_SIZE, where)
        pieces = slice_by_time(events, config.slice_us)
    out = []
    for piece in pieces:
        counts = events_to_frames(piece, SENSOR_SIZE, where, time_window=config.frame_us)
        resized = resize_frames(
            torch.from_numpy(counts),
            (config.size, config.size),
            antialias=config.antialias,
            round_to_int=config.round_resized,
        )
        out.append(resized.numpy())
    return out


def _check_npy(path: str) -> None:
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: empty file (0 bytes); expected {EXPECTED_FORMAT}")


def dvs_gesture_dataset(config: GestureConfig) -> GestureDataset:
    """Build the train or test split described by ``config``.

    Raises:
        FileNotFoundError: the ``DVSGesture`` folder or the split's folder is missing or has
            no ``.npy`` files (the message shows :data:`LAYOUT`); nothing is downloaded.
        ValueError: a file name is not a label 0..10, a recording is empty or unreadable
            (the message names the file).
    """
    folder = "ibmGestureTrain" if config.train else "ibmGestureTest"
    base = check_offline(config.root, "DVSGesture", LAYOUT, subdir=folder, suffix=".npy")
    cls = offline_tonic_class(tonic.datasets.DVSGesture, LAYOUT)
    try:
        ds = cls(save_to=str(config.root), train=config.train)
    except ValueError as err:  # a folder not named userNN_<lighting>, a file not <int>.npy
        raise UserError(
            f"{base / folder}: unexpected folder or file name ({err}); expected\n{LAYOUT}"
        ) from err
    full = FULL_TRAIN if config.train else FULL_TEST
    warn_if_incomplete(base, len(ds.data), full, f"{folder} recordings")
    for path, label in zip(ds.data, ds.targets, strict=True):
        if not 0 <= label < NUM_CLASSES:
            raise UserError(
                f"{path}: label {label} (from the file name) out of range; expected "
                f"0..{NUM_CLASSES - 1} ({NUM_CLASSES} gesture classes)"
            )
    order = sorted(range(len(ds.data)), key=lambda j: (ds.users[j], ds.lighting[j], ds.targets[j]))
    if config.users is not None:
        keep = set(config.users)
        order = [j for j in order if ds.users[j] in keep]
        if not order:
            raise UserError(
                f"{Path(ds.location_on_system) / folder}: no recording of users "
                f"{sorted(keep)}; users present: {sorted(set(ds.users))}"
            )
    source = TonicSource(
        ds,
        order,
        [ds.targets[j] for j in order],
        "DVSGesture",
        EXPECTED_FORMAT,
        check=_check_npy,
    )
    sliced = config.train and config.slice_us is not None
    params = {
        "split": folder,
        "slice_us": config.slice_us if sliced else None,
        "frame_us": config.frame_us,
        "size": config.size,
        "antialias": config.antialias,
        "round_resized": config.round_resized,
    }
    augment = None
    if config.train and config.augment:
        augment = CropAugment((config.size, config.size), config.crop_padding)
    cache_dir = None
    if config.cache:
        cache_dir = config.cache_dir or str(Path(config.root).expanduser() / "cache")
    frame_config = FrameDatasetConfig(
        name=f"dvsgesture-{'train' if config.train else 'test'}",
        cache_dir=cache_dir,
        progress=config.progress,
        seed=config.seed,
    )
    dataset = GestureDataset(
        source,
        functools.partial(gesture_frames, config=config),
        params,
        frame_config,
        augment=augment,
    )
    dataset.recording_users = [int(ds.users[j]) for j in order]
    dataset.recording_lighting = [str(ds.lighting[j]) for j in order]
    dataset.recording_files = list(source.files)
    return dataset


def dvs_gesture_splits(root: str, **options) -> tuple[GestureDataset, GestureDataset]:
    """``(train, test)`` datasets with the same options (``GestureConfig`` fields)."""
    train = dvs_gesture_dataset(GestureConfig(root=root, train=True, **options))
    test = dvs_gesture_dataset(GestureConfig(root=root, train=False, **options))
    return train, test
