"""Read SHD-layout hdf5 files (real or :mod:`stllr.data.shd_standin`) into count frames.

Binning reproduces the reference S-TLLR SHD pipeline, tonic 1.7.0's
``SlicedDataset(SHD, SliceByTime(time_window=1_000_000))`` followed by
``ToFrame(sensor_size=(700, 1, 1), time_window=10_000)``. What tonic does there (read from
``tonic/datasets/hsd.py``, ``tonic/slicers.py`` and ``tonic/functional/to_frame.py``):

1. ``SHD.__getitem__`` converts the times to integer microseconds by *truncation*:
   ``t_us = int(float64(t_s) * 1e6)`` (a float32 ``0.01`` becomes 9999 µs, not 10000).
2. ``SliceByTime`` without ``include_incomplete`` makes ``max(floor((d - W) / W) + 1, 1)``
   slices with ``d = t_us[-1] - t_us[0]`` and ``W`` = 1 s; slice ``i`` holds the events with
   ``t0 + i·W <= t_us < t0 + (i+1)·W`` where ``t0 = t_us[0]`` is the *first spike*, not 0.
   A recording shorter than 2 s gives one slice: the events before ``t0 + 1 s``.
   (One of 2 s or more would give several samples; this reader keeps only the first.)
3. ``ToFrame(time_window=w)`` (``include_incomplete=False``, no start/end time) repeats this
   on the slice with its own first and last spike: ``n = max(floor((d' - w) / w) + 1, 1)``
   frames, which is ``max(floor(d' / w), 1)``, frame ``k`` counting the events with
   ``t0 + k·w <= t_us < t0 + (k+1)·w``. So the frames start at the first spike and the
   last, *partial* frame is dropped together with its spikes: the last spike itself is
   always dropped unless the whole slice is shorter than ``w`` (then one frame holds all).

``align="first_spike"`` (the default) is exactly that. ``align="zero"`` is the plain
alternative: frame ``k`` counts the spikes with ``k·dt <= t < (k+1)·dt`` (``t`` in integer
microseconds as in step 1), only ``t < max_time_s`` is kept, and the frame holding the last
kept spike is the last frame (``floor(t_last / dt) + 1`` frames; no spike is dropped).

Frames are float32 ``[T_i, num_channels]`` per recording; :func:`pad_batch` stacks them
time-major ``[T_max, B, num_channels]`` (tonic's ``PadTensors`` then a transpose).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import h5py
import numpy as np
import torch

from stllr.data.binning import frame_count_first_spike
from stllr.data.shd_standin import (
    TEST_FILE,
    TRAIN_FILE,
    ShdStandinConfig,
    generate_shd_standin,
    read_standin_attrs,
    standin_attrs,
)
from stllr.errors import UserError

REQUIRED_KEYS = ("spikes/times", "spikes/units", "labels")
US_PER_S = 1_000_000

Align = Literal["first_spike", "zero"]


class ShdFrameSplits(NamedTuple):
    """Both splits as per-recording frames ``[T_i, C]`` (float32) and labels ``[N]`` (long)."""

    train_frames: list[torch.Tensor]
    train_labels: torch.Tensor
    test_frames: list[torch.Tensor]
    test_labels: torch.Tensor


def seconds_to_us(times_s: np.ndarray) -> np.ndarray:
    """Spike times in seconds → int64 microseconds, truncated like tonic's SHD reader."""
    return (np.asarray(times_s).astype(np.float64) * 1e6).astype(np.int64)


def _duration_to_us(name: str, value_s: float) -> int:
    """A positive duration in seconds → whole microseconds (rounded)."""
    value_us = round(float(value_s) * US_PER_S)
    if not value_us >= 1:
        raise UserError(f"{name} must be at least 1 µs (given in seconds), got {value_s!r}")
    return value_us


def bin_events(
    t_us: np.ndarray,
    units: np.ndarray,
    dt_us: int,
    max_time_us: int,
    num_channels: int,
    align: Align = "first_spike",
) -> np.ndarray:
    """Count frames ``[T, num_channels]`` (float32) of one recording.

    Args:
        t_us: spike times ``[S]``, int64 microseconds, ascending, ``S ≥ 1``.
        units: channel of each spike ``[S]``, integers in ``[0, num_channels)``.
        dt_us: frame length in microseconds.
        max_time_us: slice length in microseconds (see the module docstring for ``align``).
        num_channels: channels per frame.
        align: ``"first_spike"`` (tonic's semantics) or ``"zero"``.
    """
    if align == "first_spike":
        rel = t_us - t_us[0]
        in_slice = rel < max_time_us
        rel, units = rel[in_slice], units[in_slice]
        n_frames = frame_count_first_spike(int(rel[-1]), dt_us)
    elif align == "zero":
        in_slice = t_us < max_time_us
        rel, units = t_us[in_slice], units[in_slice]
        n_frames = int(rel[-1]) // dt_us + 1 if rel.size else 1
    else:
        raise UserError(f"align must be 'first_spike' or 'zero', got {align!r}")
    frame = rel // dt_us
    keep = frame < n_frames
    flat = frame[keep] * num_channels + units[keep].astype(np.int64)
    counts = np.bincount(flat, minlength=n_frames * num_channels)
    return counts.reshape(n_frames, num_channels).astype(np.float32)


def _check_recording(
    path: Path, i: int, times: np.ndarray, units: np.ndarray, num_channels: int
) -> None:
    where = f"{path}: recording {i}"
    if times.shape != units.shape:
        raise UserError(
            f"{where}: 'spikes/times' has {times.size} entries but 'spikes/units' has "
            f"{units.size}; expected one channel per spike time"
        )
    if times.size == 0:
        raise UserError(f"{where} is empty: 'spikes/times' has no spikes; expected ≥ 1")
    if not np.all(np.isfinite(times)) or times.min() < 0:
        raise UserError(f"{where}: 'spikes/times' must be finite and ≥ 0 seconds")
    if np.any(np.diff(times) < 0):
        raise UserError(f"{where}: 'spikes/times' must be sorted ascending (as in SHD)")
    if not np.issubdtype(units.dtype, np.integer):
        raise UserError(f"{where}: 'spikes/units' must be integers, got dtype {units.dtype}")
    if units.min() < 0 or units.max() >= num_channels:
        raise UserError(
            f"{where}: 'spikes/units' has channels in [{units.min()}, {units.max()}]; "
            f"expected 0..{num_channels - 1}"
        )


def _read_dataset(path: Path, f: h5py.File, key: str) -> np.ndarray:
    if key not in f:
        raise UserError(
            f"{path}: missing dataset '{key}'; an SHD file needs {', '.join(REQUIRED_KEYS)}"
        )
    obj = f[key]
    if not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
        raise UserError(f"{path}: '{key}' must be a 1-d dataset (one entry per recording)")
    is_vlen = h5py.check_vlen_dtype(obj.dtype) is not None
    if key.startswith("spikes/") and not is_vlen:
        raise UserError(
            f"{path}: '{key}' must be a variable-length dataset (one array per recording), "
            f"got dtype {obj.dtype}"
        )
    return obj[()]


def read_shd_file(
    h5_path: str | os.PathLike, num_classes: int = 20, num_channels: int = 700
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Validated raw recordings: ``(times [S_i] s, units [S_i], labels [N] int64)``.

    Raises:
        FileNotFoundError: no file at ``h5_path``.
        ValueError: not an HDF5 file, a key missing, lengths that disagree, labels outside
            ``[0, num_classes)``, units outside ``[0, num_channels)``, an empty recording,
            unsorted/negative/non-finite times. The message names the file and the key.
    """
    path = Path(h5_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SHD file (expected an .h5 file)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: cannot be opened as an HDF5 file ({err})") from err
    with f:
        times_col, units_col, labels = (_read_dataset(path, f, k) for k in REQUIRED_KEYS)
    lengths = {"spikes/times": len(times_col), "spikes/units": len(units_col)}
    for key, length in lengths.items():
        if length != len(labels):
            raise UserError(
                f"{path}: '{key}' has {length} recording(s) but 'labels' has {len(labels)}; "
                "expected the same number"
            )
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: 'labels' must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{path}: 'labels' has values in [{labels.min()}, {labels.max()}]; "
            f"expected 0..{num_classes - 1}"
        )
    times = [np.asarray(t) for t in times_col]
    units = [np.asarray(u) for u in units_col]
    for i, (t, u) in enumerate(zip(times, units, strict=True)):
        _check_recording(path, i, t, u, num_channels)
    return times, units, labels.astype(np.int64)


def load_shd_frames(
    h5_path: str | os.PathLike,
    dt_s: float = 0.01,
    max_time_s: float = 1.0,
    num_classes: int = 20,
    num_channels: int = 700,
    align: Align = "first_spike",
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Count frames of every recording of an SHD-layout file.

    Args:
        h5_path: an SHD-layout ``.h5`` file.
        dt_s: frame length in seconds (10 ms in the reference).
        max_time_s: slice length in seconds (1 s in the reference).
        num_classes: labels must be in ``[0, num_classes)``.
        num_channels: units must be in ``[0, num_channels)``; frame width.
        align: ``"first_spike"`` (tonic's semantics, see the module docstring) or ``"zero"``.

    Returns:
        ``(frames, labels)``: a list of float32 ``[T_i, num_channels]`` spike counts (with
        ``1 ≤ T_i ≤ max_time_s / dt_s``) and a long tensor ``[N]``.
    """
    dt_us = _duration_to_us("dt_s", dt_s)
    max_us = _duration_to_us("max_time_s", max_time_s)
    if max_us < dt_us:
        raise UserError(f"max_time_s ({max_time_s}) must be ≥ dt_s ({dt_s})")
    if align not in ("first_spike", "zero"):
        raise UserError(f"align must be 'first_spike' or 'zero', got {align!r}")
    times, units, labels = read_shd_file(h5_path, num_classes, num_channels)
    frames = [
        torch.from_numpy(bin_events(seconds_to_us(t), u, dt_us, max_us, num_channels, align))
        for t, u in zip(times, units, strict=True)
    ]
    return frames, torch.from_numpy(labels)


def read_speakers(h5_path: str | os.PathLike) -> list[int] | None:
    """The speaker of every recording (``extra/speaker``, which SHD and its stand-in
    record), or ``None`` when the file has no such key."""
    with h5py.File(Path(h5_path), "r") as f:
        if "extra/speaker" not in f:
            return None
        return [int(v) for v in np.asarray(f["extra/speaker"][()]).reshape(-1)]


def pad_batch(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Zero-pad ``[T_i, C]`` frames at the end and stack time-major: ``[T_max, B, C]``."""
    if len(frames) == 0:
        raise ValueError("pad_batch needs at least one [T_i, C] tensor, got an empty list")
    shapes = [tuple(f.shape) for f in frames]
    if any(len(s) != 2 for s in shapes) or len({s[1] for s in shapes}) != 1:
        raise ValueError(f"pad_batch needs [T_i, C] tensors with one C, got shapes {shapes}")
    t_max = max(s[0] for s in shapes)
    out = frames[0].new_zeros((t_max, len(frames), shapes[0][1]))
    for b, f in enumerate(frames):
        out[: f.shape[0], b] = f
    return out


def _ensure_standin(folder: Path, expected: dict[str, dict], **generate_kwargs) -> None:
    """Generate the stand-in unless both files exist with exactly these parameters."""
    current = True
    for name, attrs in expected.items():
        path = folder / name
        if not path.exists():
            current = False
            continue
        stored = read_standin_attrs(path)
        if stored is None:
            raise UserError(
                f"{path} exists but is not a generated stand-in (no 'stllr_standin' "
                "attribute); refusing to overwrite it, use another folder"
            )
        current = current and stored == attrs
    if not current:
        generate_shd_standin(folder, **generate_kwargs)


def standin_shd_tensors(
    folder: str | os.PathLike,
    n_train: int = 1000,
    n_test: int = 400,
    seed: int = 0,
    config: ShdStandinConfig | None = None,
    dt_s: float = 0.01,
    max_time_s: float = 1.0,
    num_classes: int = 20,
    num_channels: int = 700,
    duration_s: float = 1.0,
    align: Align = "first_spike",
) -> ShdFrameSplits:
    """Generate the stand-in in ``folder`` if missing (or made with other parameters), then
    load both splits with :func:`load_shd_frames`."""
    folder = Path(folder)
    cfg = ShdStandinConfig() if config is None else config
    common = (seed, num_classes, num_channels, duration_s, cfg)
    expected = {
        TRAIN_FILE: standin_attrs("train", n_train, *common),
        TEST_FILE: standin_attrs("test", n_test, *common),
    }
    # JSON turns tuples into lists; compare in the stored form.
    expected = {k: _json_roundtrip(v) for k, v in expected.items()}
    _ensure_standin(
        folder,
        expected,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        num_classes=num_classes,
        num_channels=num_channels,
        duration_s=duration_s,
        config=cfg,
    )
    load = dict(
        dt_s=dt_s,
        max_time_s=max_time_s,
        num_classes=num_classes,
        num_channels=num_channels,
        align=align,
    )
    train = load_shd_frames(folder / TRAIN_FILE, **load)
    test = load_shd_frames(folder / TEST_FILE, **load)
    return ShdFrameSplits(train[0], train[1], test[0], test[1])


def _json_roundtrip(value: dict) -> dict:
    return json.loads(json.dumps(value, sort_keys=True))
