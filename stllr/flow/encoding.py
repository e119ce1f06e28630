"""Spike-FlowNet's split coding and its on-disk cache (docs/flow.md §2).

Interval k of a sequence holds the events e with ``image_ts[k] ≤ t_e < image_ts[k+1]``
(index range ``event_inds[k]+1 … event_inds[k+1]`` since ``event_inds =
searchsorted(t, image_ts) − 1``). Its N events, in time order, are split into ``bins``
groups of ``n = N // bins`` consecutive events (the last ``N mod bins`` are dropped) and
counted per pixel and polarity::

    counts[k, b, c, y, x] = #{ e in group b : (x_e, y_e) = (x, y), c = 0 if p_e > 0 else 1 }

A window from image i to image i + dt is the ``dt·bins`` groups of intervals
``i … i+dt−1`` in order. Two ways to feed them to the network (unverified which one FSFN
used; option ``flow_encoding``):

* ``"2x10"``: T = dt·bins steps of 2 channels (ON, OFF): step t is group t;
* ``"4x5"`` (Spike-FlowNet): T = dt·bins/2 steps of 4 channels: step t is
  (ON, OFF) of group t of the first half followed by (ON, OFF) of group t of the second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from stllr.errors import UserError
from stllr.files import atomic_write
from stllr.flow.mvsec_files import EVENTS, SequenceInfo

ENCODINGS = ("2x10", "4x5")
COUNT_DTYPE = np.uint8  # what Spike-FlowNet stores; counts above 255 saturate


def split_counts(events: np.ndarray, bins: int, height: int, width: int) -> np.ndarray:
    """Counts ``[bins, 2, H, W]`` (int64) of ``events`` ``[N, 4]`` (x, y, t, p), in time
    order, split into ``bins`` equal-count groups (remainder dropped; zeros if N < bins)."""
    out = np.zeros((bins, 2, height, width), dtype=np.int64)
    n = len(events) // bins
    if n == 0:
        return out
    ev = events[: n * bins]
    group = np.arange(n * bins) // n
    x = ev[:, 0].astype(np.int64)
    y = ev[:, 1].astype(np.int64)
    c = (ev[:, 3] <= 0).astype(np.int64)
    if x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height:
        raise UserError(
            f"event coordinates outside the {width}×{height} sensor (x in [{x.min()}, "
            f"{x.max()}], y in [{y.min()}, {y.max()}])"
        )
    flat = ((group * 2 + c) * height + y) * width + x
    out.reshape(-1)[:] = np.bincount(flat, minlength=out.size)
    return out


def interval_slice(info: SequenceInfo, k: int) -> slice:
    """Event index range of interval k (between images k and k + 1)."""
    return slice(int(info.event_inds[k]) + 1, int(info.event_inds[k + 1]) + 1)


def cache_path(cache_dir: Path, info: SequenceInfo, bins: int) -> Path:
    """One file per sequence and bin count; the name carries a digest of the data file's
    size, modification time and the number of events, so a changed file is re-encoded."""
    st = info.files.data.stat()
    key = f"{info.files.data.resolve()}|{st.st_size}|{st.st_mtime_ns}|{info.num_events}|{bins}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{info.files.name}_b{bins}_{digest}.npy"


def encoded_counts(info: SequenceInfo, bins: int, cache_dir: Path) -> np.ndarray:
    """The counts ``[M−1, bins, 2, H, W]`` (uint8) of every interval, memory-mapped from
    the cache, encoded on first use (streamed interval by interval, written atomically)."""
    path = cache_path(cache_dir, info, bins)
    if not path.is_file():
        _encode_to(path, info, bins)
    return np.load(path, mmap_mode="r")


def _encode_to(path: Path, info: SequenceInfo, bins: int) -> None:
    import h5py

    n = len(info.image_ts) - 1
    shape = (n, bins, 2, info.height, info.width)

    def write(f) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(COUNT_DTYPE)),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(f, header)
        with h5py.File(info.files.data, "r") as h:
            ev = h[EVENTS]
            for k in range(n):
                counts = split_counts(ev[interval_slice(info, k)], bins, info.height, info.width)
                f.write(np.minimum(counts, 255).astype(COUNT_DTYPE).tobytes())

    atomic_write(path, write, durable=False)


def window_frames(counts: np.ndarray, i: int, dt: int, encoding: str) -> np.ndarray:
    """Input frames ``[T, C, H, W]`` (float32) of the window from image i to i + dt."""
    if encoding not in ENCODINGS:
        raise UserError(f"flow_encoding must be one of {ENCODINGS}, got {encoding!r}")
    groups = np.asarray(counts[i : i + dt], dtype=np.float32)  # [dt, bins, 2, H, W]
    groups = groups.reshape(-1, *groups.shape[2:])  # [dt·bins, 2, H, W]
    if encoding == "2x10":
        return groups
    half = groups.shape[0] // 2
    return np.concatenate([groups[:half], groups[half : 2 * half]], axis=1)
