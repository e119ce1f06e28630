"""The MVSEC hdf5 layout (docs/flow.md §1): where the files lie and what they hold.

``<seq>_data.hdf5``::

    davis/left/events                float64 [N, 4]  (x, y, t seconds, p ∈ {−1, +1}), t sorted
    davis/left/image_raw             uint8   [M, H, W]  (260 × 346 on the real sensor)
    davis/left/image_raw_ts          float64 [M]     increasing, seconds
    davis/left/image_raw_event_inds  int64   [M]     searchsorted(t, image_ts) − 1

``<seq>_gt.hdf5``::

    davis/left/flow_dist             float [Ngt, 2, H, W]  (x, y) displacement in pixels
                                     from flow_dist_ts[k] to flow_dist_ts[k+1]
    davis/left/flow_dist_ts          float64 [Ngt]

A sequence's files lie in ``<root>/<seq>_{data,gt}.hdf5`` or in the official release's
``<root>/<scene>/<seq>_{data,gt}.hdf5`` (scene = the name without its digit, e.g.
``indoor_flying``). Anything else is a :class:`~stllr.errors.UserError` that names the
file, the field and what was expected. :func:`write_sequence` writes the same layout
(the stand-in uses it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.errors import UserError

EVENTS = "davis/left/events"
IMAGES = "davis/left/image_raw"
IMAGE_TS = "davis/left/image_raw_ts"
EVENT_INDS = "davis/left/image_raw_event_inds"
FLOW = "davis/left/flow_dist"
FLOW_TS = "davis/left/flow_dist_ts"


@dataclass(frozen=True)
class SequenceFiles:
    """The two files of one recording."""

    name: str
    data: Path
    gt: Path


def expected_layout(root: str | Path, name: str) -> str:
    scene = re.sub(r"\d+$", "", name)
    return (
        f"{root}/{name}_data.hdf5 and {root}/{name}_gt.hdf5 "
        f"(or {root}/{scene}/{name}_data.hdf5 and ..._gt.hdf5)"
    )


def find_sequence(root: str | Path, name: str) -> SequenceFiles:
    """The files of sequence ``name`` under ``root`` (either layout of the module doc)."""
    root = Path(root)
    scene = re.sub(r"\d+$", "", name)
    for folder in (root, root / scene):
        data, gt = folder / f"{name}_data.hdf5", folder / f"{name}_gt.hdf5"
        if data.is_file() and gt.is_file():
            return SequenceFiles(name, data, gt)
    raise UserError(
        f"MVSEC sequence {name!r} not found under {root}: expected {expected_layout(root, name)}"
    )


def _field(f, path: Path, key: str, ndim: int, kinds: str, shape_text: str):
    if key not in f:
        raise UserError(f"{path}: missing field {key!r} (expected {shape_text})")
    d = f[key]
    if d.ndim != ndim or d.dtype.kind not in kinds:
        raise UserError(
            f"{path}: field {key!r} is {d.dtype} {tuple(d.shape)}, expected {shape_text}"
        )
    return d


@dataclass(frozen=True)
class SequenceInfo:
    """What :func:`check_sequence` read: sizes and the (small) timestamp arrays."""

    files: SequenceFiles
    height: int
    width: int
    image_ts: np.ndarray  # [M] float64
    event_inds: np.ndarray  # [M] int64
    flow_ts: np.ndarray  # [Ngt] float64
    num_events: int


def check_sequence(files: SequenceFiles) -> SequenceInfo:
    """Open both files, check every field's shape and dtype, return the timestamps."""
    import h5py

    try:
        with h5py.File(files.data, "r") as f:
            ev = _field(f, files.data, EVENTS, 2, "f", "float64 [N, 4] (x, y, t, p)")
            if ev.shape[1] != 4:
                raise UserError(
                    f"{files.data}: field {EVENTS!r} has {ev.shape[1]} columns, expected 4"
                )
            im = _field(f, files.data, IMAGES, 3, "u", "uint8 [M, H, W]")
            ts = _field(f, files.data, IMAGE_TS, 1, "f", "float64 [M]")[()]
            inds = _field(f, files.data, EVENT_INDS, 1, "iu", "int64 [M]")[()].astype(np.int64)
            n_images, height, width = im.shape
            num_events = ev.shape[0]
        with h5py.File(files.gt, "r") as f:
            fl = _field(f, files.gt, FLOW, 4, "f", "float [Ngt, 2, H, W]")
            flow_ts = _field(f, files.gt, FLOW_TS, 1, "f", "float64 [Ngt]")[()]
            flow_shape = fl.shape
    except OSError as exc:
        raise UserError(f"{files.data} / {files.gt}: not readable as hdf5 ({exc})") from None
    if len(ts) != n_images or len(inds) != n_images:
        raise UserError(
            f"{files.data}: {IMAGE_TS!r} and {EVENT_INDS!r} must have one entry per image "
            f"({n_images}), got {len(ts)} and {len(inds)}"
        )
    if n_images < 2 or np.any(np.diff(ts) <= 0):
        raise UserError(f"{files.data}: {IMAGE_TS!r} must hold ≥ 2 increasing timestamps")
    if flow_shape[1:] != (2, height, width) or len(flow_ts) != flow_shape[0]:
        raise UserError(
            f"{files.gt}: field {FLOW!r} is {tuple(flow_shape)}, expected "
            f"[{len(flow_ts)}, 2, {height}, {width}] (one per {FLOW_TS!r} entry, images' size)"
        )
    return SequenceInfo(files, height, width, ts, inds, flow_ts, num_events)


def write_sequence(
    folder: Path,
    name: str,
    events: np.ndarray,
    images: np.ndarray,
    image_ts: np.ndarray,
    flow: np.ndarray,
    flow_ts: np.ndarray,
) -> SequenceFiles:
    """Write ``<folder>/<name>_{data,gt}.hdf5`` in the layout of the module doc (each file
    atomically: written beside its target, then renamed)."""
    import h5py

    from stllr.files import atomic_write

    events = np.asarray(events, dtype=np.float64)
    inds = np.searchsorted(events[:, 2], image_ts) - 1
    files = SequenceFiles(name, folder / f"{name}_data.hdf5", folder / f"{name}_gt.hdf5")

    def data(f) -> None:
        with h5py.File(f, "w") as h:
            h.create_dataset(EVENTS, data=events)
            h.create_dataset(IMAGES, data=images.astype(np.uint8), chunks=(1, *images.shape[1:]))
            h.create_dataset(IMAGE_TS, data=np.asarray(image_ts, dtype=np.float64))
            h.create_dataset(EVENT_INDS, data=inds.astype(np.int64))

    def gt(f) -> None:
        with h5py.File(f, "w") as h:
            h.create_dataset(FLOW, data=np.asarray(flow, dtype=np.float32))
            h.create_dataset(FLOW_TS, data=np.asarray(flow_ts, dtype=np.float64))

    atomic_write(files.data, data, durable=False)
    atomic_write(files.gt, gt, durable=False)
    return files
