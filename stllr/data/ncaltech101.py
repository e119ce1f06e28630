"""N-Caltech101 through tonic 1.7.0 ``NCALTECH101`` (``.bin`` files), read offline.

Pipeline of the reference (docs/rule.md §11c): tonic shifts ``x`` and ``y`` of every recording
to start at 0, then ``ToFrame(sensor_size=(240, 180, 2), time_window=30 ms)`` counts
``[T, 2, 180, 240]`` (complete windows from the first event, ``T ≈ 10`` for the 300 ms
saccades) → torchvision ``Resize([45, 60])`` (bilinear, antialias, rounded back to integer
counts as torchvision does for int16 input) → cache. No augmentation.

Labels: tonic's targets are class-folder names; they map to indices in ``sorted()`` order of
the class folders found (Python string order, upper case first: ``BACKGROUND_Google``,
``Faces_easy``, ``Leopards``, ``Motorbikes``, ``accordion``, …). The reference used a
hand-written dictionary in a different order; only the label numbering differs.

Split: ``torch.utils.data.random_split`` 90/10 with ``torch.Generator().manual_seed(42)``
over all recordings in a fixed order (class, then natural file order). The reference split
tonic's ``os.walk`` order, which depends on the file system, so its exact membership cannot
be reproduced; the proportions and the seed are the same.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tonic
import torch

from stllr.data.binning import events_to_frames, resize_frames
from stllr.data.frame_dataset import EventFrameDataset, FrameDatasetConfig
from stllr.data.offline import check_offline, natural_key, offline_tonic_class, warn_if_incomplete
from stllr.data.recording_sources import TonicSource
from stllr.errors import UserError

SENSOR_SIZE = (240, 180, 2)
EVENT_BYTES = 5
FULL_SIZE = 8709

LAYOUT = """\
<root>/
└── NCALTECH101/
    ├── N-Caltech101-archive.zip   (optional here; plain tonic needs this file, 0 bytes is fine)
    └── Caltech101/
        ├── accordion/
        │   ├── image_0001.bin      40-bit events: x, y, p|t[22:16], t[15:8], t[7:0] (µs)
        │   └── …
        ├── airplanes/
        └── …                       101 class folders (BACKGROUND_Google included), 8709 files
(the N-Caltech101 release: Caltech101.zip extracted into Caltech101/)"""

EXPECTED_FORMAT = "an N-Caltech101 .bin file (5 bytes per event)"


@dataclass(frozen=True)
class NCaltech101Config:
    """N-Caltech101 loading options (defaults = the reference pipeline).

    Attributes:
        root: data root; files live in ``<root>/NCALTECH101/Caltech101/<class>/``.
        split: ``"train"`` (90 %) or ``"test"`` (10 %).
        frame_us: frame length in µs (30 ms).
        size: output ``(height, width)`` (``Resize([45, 60])``).
        antialias: antialiased bilinear resize.
        round_resized: round the resized counts to integers (torchvision on int16 input).
        train_fraction: share of recordings in the train split (``int(n·0.9)``).
        split_seed: seed of the ``random_split`` generator (42).
        cache, cache_dir, progress: see :class:`~stllr.data.frame_dataset.FrameDatasetConfig`;
            ``cache_dir=None`` means ``<root>/cache``.
    """

    root: str
    split: Literal["train", "test"] = "train"
    frame_us: int = 30_000
    size: tuple[int, int] = (45, 60)
    antialias: bool = True
    round_resized: bool = True
    train_fraction: float = 0.9
    split_seed: int = 42
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True


def ncaltech_frames(events: np.ndarray, where: str, config: NCaltech101Config) -> list[np.ndarray]:
    """Cached pipeline: one stack ``[T, 2, 45, 60]`` float32 (rounded counts)."""
    counts = events_to_frames(events, SENSOR_SIZE, where, time_window=config.frame_us)
    resized = resize_frames(
        torch.from_numpy(counts),
        tuple(config.size),
        antialias=config.antialias,
        round_to_int=config.round_resized,
    )
    return [resized.numpy()]


def _check_bin(path: str) -> None:
    size = os.path.getsize(path)
    if size == 0 or size % EVENT_BYTES:
        raise UserError(
            f"{path}: {size} bytes is not a positive multiple of {EVENT_BYTES} (truncated or "
            f"not an N-Caltech101 file); expected {EXPECTED_FORMAT}"
        )


def split_indices(n: int, split: str, train_fraction: float, seed: int) -> list[int]:
    """Indices of ``split`` from ``random_split(range(n), [int(n·f), n − int(n·f)], seed)``."""
    n_train = int(n * train_fraction)
    parts = torch.utils.data.random_split(
        range(n), [n_train, n - n_train], generator=torch.Generator().manual_seed(seed)
    )
    return list(parts[0].indices if split == "train" else parts[1].indices)


def ncaltech101_dataset(config: NCaltech101Config) -> EventFrameDataset:
    """Build the train or test split described by ``config``.

    The dataset gets ``class_names`` (index → folder name) and ``num_classes`` attributes.

    Raises:
        FileNotFoundError: ``NCALTECH101/Caltech101`` is missing or has no ``.bin`` files
            (the message shows :data:`LAYOUT`); nothing is downloaded.
        ValueError: bad split name, or an unreadable/truncated/empty recording, or events
            outside the 240×180 sensor (the message names the file).
    """
    if config.split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {config.split!r}")
    if not 0.0 < config.train_fraction < 1.0:
        raise UserError(f"train_fraction must be in (0, 1), got {config.train_fraction}")
    base = check_offline(config.root, "NCALTECH101", LAYOUT, subdir="Caltech101", suffix=".bin")
    cls = offline_tonic_class(tonic.datasets.NCALTECH101, LAYOUT)
    ds = cls(save_to=str(config.root))
    warn_if_incomplete(base, len(ds.data), FULL_SIZE, ".bin recordings")
    class_names = sorted(set(ds.targets))
    index = {name: i for i, name in enumerate(class_names)}
    ordered = sorted(
        range(len(ds.data)), key=lambda j: (index[ds.targets[j]], natural_key(ds.data[j]))
    )
    chosen = split_indices(len(ordered), config.split, config.train_fraction, config.split_seed)
    order = [ordered[k] for k in chosen]
    source = TonicSource(
        ds, order, [index[ds.targets[j]] for j in order], "NCALTECH101", EXPECTED_FORMAT, _check_bin
    )
    params = {
        "split": config.split,
        "train_fraction": config.train_fraction,
        "split_seed": config.split_seed,
        "frame_us": config.frame_us,
        "size": list(config.size),
        "antialias": config.antialias,
        "round_resized": config.round_resized,
    }
    cache_dir = None
    if config.cache:
        cache_dir = config.cache_dir or str(Path(config.root).expanduser() / "cache")
    frame_config = FrameDatasetConfig(
        name=f"ncaltech101-{config.split}", cache_dir=cache_dir, progress=config.progress
    )
    dataset = EventFrameDataset(
        source, functools.partial(ncaltech_frames, config=config), params, frame_config
    )
    dataset.class_names = class_names
    dataset.num_classes = len(class_names)
    return dataset


def ncaltech101_splits(root: str | os.PathLike, **options) -> tuple[EventFrameDataset, ...]:
    """``(train, test)`` datasets with the same options (``NCaltech101Config`` fields)."""
    root = str(root)
    train = ncaltech101_dataset(NCaltech101Config(root=root, split="train", **options))
    test = ncaltech101_dataset(NCaltech101Config(root=root, split="test", **options))
    return train, test
