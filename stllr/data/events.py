"""Common pieces of the event-camera pipelines: offline checks, binning, caching, batching.

Every event dataset of the toolkit (:mod:`~stllr.data.dvs_gesture`,
:mod:`~stllr.data.cifar10_dvs`, :mod:`~stllr.data.ncaltech101`,
:mod:`~stllr.data.custom_events`) is an :class:`EventFrameDataset`: a *recording source*
(files on disk, read through tonic 1.7.0) plus a deterministic ``to_samples`` function that
bins one recording into one or more frame stacks ``[T, C, H, W]``, plus an optional random
``augment`` applied after the cache.

Offline by design. tonic's dataset classes call ``download()`` whenever their
``_check_exists()`` fails (too few files, or the archive file missing), which offline ends in
a ``URLError`` after a long wait. This module therefore (1) checks the files itself with
:func:`check_offline`, raising a :class:`FileNotFoundError` that shows the expected tree,
and (2) builds tonic datasets through :func:`offline_tonic_class`, a same-named subclass whose
``_check_exists`` is always true and whose ``download`` raises. No code path downloads.

Frames are float32 throughout; :func:`pad_collate` stacks samples time-major
``[T_max, B, C, H, W]``, zero-padding shorter samples at the end.

This module only re-exports the public names of the modules that hold them:

* :mod:`~stllr.data.offline` — offline checks, never-downloading tonic classes, placeholders;
* :mod:`~stllr.data.binning` — event validation, binning, resizing and cropping of frames;
* :mod:`~stllr.data.recording_sources` — :class:`RecordingSource`, :class:`TonicSource`;
* :mod:`~stllr.data.frame_cache` — :func:`cache_key`, :class:`FrameCache`;
* :mod:`~stllr.data.frame_dataset` — :class:`EventFrameDataset`, :class:`FrameDatasetConfig`;
* :mod:`~stllr.data.batching` — :func:`pad_collate`, :func:`make_loader`.
"""

from __future__ import annotations

from stllr.data import offline
from stllr.data.batching import make_loader, pad_collate
from stllr.data.binning import (
    CropAugment,
    events_to_frames,
    random_crop,
    resize_frames,
    slice_by_time,
    validate_events,
)
from stllr.data.frame_cache import CACHE_FORMAT, FrameCache, cache_key
from stllr.data.frame_dataset import (
    AugmentFn,
    EventFrameDataset,
    FrameDatasetConfig,
    SamplesFn,
)
from stllr.data.offline import (
    STANDIN_MARKER,
    check_offline,
    natural_key,
    offline_tonic_class,
    warn_if_incomplete,
    write_placeholder_archive,
)
from stllr.data.recording_sources import RecordingSource, TonicSource, file_identity

__all__ = [
    "CACHE_FORMAT",
    "STANDIN_MARKER",
    "AugmentFn",
    "CropAugment",
    "EventFrameDataset",
    "FrameCache",
    "FrameDatasetConfig",
    "RecordingSource",
    "SamplesFn",
    "TonicSource",
    "cache_key",
    "check_offline",
    "events_to_frames",
    "file_identity",
    "make_loader",
    "natural_key",
    "offline_tonic_class",
    "pad_collate",
    "random_crop",
    "resize_frames",
    "slice_by_time",
    "validate_events",
    "warn_if_incomplete",
    "write_placeholder_archive",
]


def __getattr__(name: str) -> type:
    """Resolve ``_Offline<ClassName>`` tonic classes pickled under this module's name before
    they moved to :mod:`~stllr.data.offline`."""
    if name.startswith("_Offline"):
        return getattr(offline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
