"""Bring-your-own event data: one HDF5 file, read into count frames with tonic ``ToFrame``.

File format (all names fixed)::

    my_data.h5
    ├── events/                  group with one dataset per recording, named 0, 1, …, N−1
    │   ├── 0                    1-d structured array of events, sorted by t
    │   │                          cameras: fields x, y, t, p  (x < W, y < H, p < P)
    │   │                          audio:   fields t, x, p     (x = channel < W; H = 1)
    │   │                          x, y, p integers (p may be bool), t integer µs
    │   └── …
    ├── labels                   integer [N], 0 ≤ label < num_classes
    ├── split                    strings [N], "train" or "test"
    └── attributes: sensor_size = (W, H, P), num_classes = int

Frames are ``ToFrame(sensor_size, time_window=…)`` (complete windows from the first event) or
``ToFrame(sensor_size, n_time_bins=…)`` (``n`` windows of ``floor(duration / n)`` µs, so the
last event is dropped) counts, float32 ``[T, P, H, W]`` (``H = 1`` for audio); see
:func:`stllr.data.binning.events_to_frames`. :func:`write_custom_events` writes the format.
Every error names the file and the key or field.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from stllr.data.binning import events_to_frames
from stllr.data.frame_dataset import EventFrameDataset, FrameDatasetConfig
from stllr.data.recording_sources import file_identity
from stllr.errors import UserError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class CustomEventsConfig:
    """Options for :func:`custom_events_dataset`.

    Attributes:
        path: the ``.h5`` file.
        split: ``"train"`` or ``"test"``.
        time_window_us: frame length in µs; or
        n_time_bins: a fixed number of frames per recording (exactly one of the two).
        cache: keep binned frames on disk (next to the file, ``<file dir>/cache``) or memory.
        cache_dir: cache folder instead of ``<file dir>/cache``.
        progress: tqdm bar while binning.
    """

    path: str
    split: str = "train"
    time_window_us: int | None = None
    n_time_bins: int | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class CustomFileInfo:
    """Validated header of a custom events file."""

    sensor_size: tuple[int, int, int]
    num_classes: int
    labels: np.ndarray  # int64 [N]
    splits: tuple[str, ...]  # [N]


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a custom events .h5 file)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise UserError(
            f"{path}: cannot be opened as HDF5 (truncated or corrupt file?): {err}"
        ) from err


def _attr(path: Path, f: h5py.File, name: str) -> np.ndarray:
    if name not in f.attrs:
        raise UserError(f"{path}: missing file attribute '{name}'")
    return np.asarray(f.attrs[name])


def read_header(path: str | os.PathLike) -> CustomFileInfo:
    """Check the file's structure (keys, attributes, label range, splits, dtypes, emptiness).

    Raises:
        FileNotFoundError: no file.
        ValueError: not HDF5, or a key/attribute/field is missing or wrong; names the file
            and the key.
    """
    path = Path(path)
    with _open(path) as f:
        size = _attr(path, f, "sensor_size")
        if size.shape != (3,) or size.dtype.kind not in "iu" or np.any(size < 1):
            raise UserError(
                f"{path}: attribute 'sensor_size' = {size.tolist()}; expected 3 positive "
                "integers (W, H, P)"
            )
        n_classes = _attr(path, f, "num_classes")
        if n_classes.shape != () or n_classes.dtype.kind not in "iu" or int(n_classes) < 1:
            raise UserError(
                f"{path}: attribute 'num_classes' = {n_classes!r}; expected a positive integer"
            )
        for key in ("events", "labels", "split"):
            if key not in f:
                raise UserError(f"{path}: missing key '{key}' (see stllr.data.custom_events)")
        if not isinstance(f["events"], h5py.Group):
            raise UserError(f"{path}: 'events' must be a group of per-recording datasets")
        labels = f["labels"][()]
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise UserError(
                f"{path}: 'labels' must be a 1-d integer array, got dtype {labels.dtype} "
                f"shape {labels.shape}"
            )
        splits = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in f["split"][()])
        n = labels.size
        if len(splits) != n:
            raise UserError(f"{path}: 'split' has {len(splits)} entries, 'labels' has {n}")
        bad = sorted({s for s in splits if s not in SPLITS})
        if bad:
            raise UserError(f"{path}: 'split' has values {bad}; expected 'train' or 'test'")
        if n and (labels.min() < 0 or labels.max() >= int(n_classes)):
            i = int(np.argmax((labels < 0) | (labels >= int(n_classes))))
            raise UserError(
                f"{path}: 'labels'[{i}] = {int(labels[i])} out of range; expected "
                f"0..{int(n_classes) - 1} (num_classes = {int(n_classes)})"
            )
        group = f["events"]
        names = set(group.keys())
        expected = {str(i) for i in range(n)}
        if names != expected:
            missing = sorted(expected - names, key=int)[:5]
            extra = sorted(names - expected)[:5]
            raise UserError(
                f"{path}: 'events' must hold datasets named 0..{n - 1} (one per label); "
                f"missing {missing}, unexpected {extra}"
            )
        fields = ("x", "y", "t", "p") if int(size[1]) > 1 else ("t", "x", "p")
        for i in range(n):
            _check_recording_dtype(path, group[str(i)], i, fields)
    return CustomFileInfo(
        tuple(int(v) for v in size), int(n_classes), labels.astype(np.int64), splits
    )


def _check_recording_dtype(path: Path, ds: h5py.Dataset, i: int, fields: tuple[str, ...]):
    where = f"{path}: 'events/{i}'"
    if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
        raise UserError(
            f"{where} must be a structured dataset with fields {fields}; got "
            f"{getattr(ds, 'dtype', type(ds).__name__)}"
        )
    for field in fields:
        if field not in ds.dtype.names:
            raise UserError(f"{where} lacks field '{field}' (has {ds.dtype.names})")
        kind = ds.dtype[field].kind
        if kind not in ("iu" if field == "t" else "iub"):
            raise UserError(
                f"{where} field '{field}' has dtype {ds.dtype[field]}; expected "
                + ("integer microseconds" if field == "t" else "integers")
            )
    if ds.shape is None or len(ds.shape) != 1 or ds.shape[0] == 0:
        raise UserError(f"{where} is empty or not 1-d (shape {ds.shape}); expected ≥ 1 event")


class CustomSource:
    """:class:`~stllr.data.recording_sources.RecordingSource` over one split of a custom file."""

    def __init__(self, path: str | os.PathLike, split: str):
        if split not in SPLITS:
            raise UserError(f"split must be 'train' or 'test', got {split!r}")
        self.path = Path(path)
        self.info = read_header(self.path)
        self.indices = [i for i, s in enumerate(self.info.splits) if s == split]
        self.labels = [int(self.info.labels[i]) for i in self.indices]
        self.split = split

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self, i: int) -> str:
        return f"{self.path}: 'events/{self.indices[i]}'"

    def identity(self) -> list[str]:
        return [*file_identity([self.path]), f"split={self.split}", f"n={len(self)}"]

    def load(self, i: int) -> np.ndarray:
        try:
            with h5py.File(self.path, "r") as f:
                return f["events"][str(self.indices[i])][()]
        except OSError as err:
            raise UserError(f"{self.describe(i)}: cannot be read ({err})") from err


def custom_frames(
    events: np.ndarray,
    where: str,
    sensor_size: tuple[int, int, int],
    time_window_us: int | None,
    n_time_bins: int | None,
) -> list[np.ndarray]:
    """One stack ``[T, P, H, W]`` of counts (float32) per recording."""
    frames = events_to_frames(
        events, sensor_size, where, time_window=time_window_us, n_time_bins=n_time_bins
    )
    return [frames.astype(np.float32)]


def custom_events_dataset(config: CustomEventsConfig) -> EventFrameDataset:
    """Frames of one split of a custom events file (see the module docstring).

    The dataset gets ``sensor_size`` and ``num_classes`` attributes.

    Raises:
        ValueError: not exactly one of ``time_window_us``/``n_time_bins``, or a format
            problem (names the file and key/field).
    """
    if (config.time_window_us is None) == (config.n_time_bins is None):
        raise UserError(
            "give exactly one of time_window_us (µs per frame) or n_time_bins (frames per "
            f"recording); got time_window_us={config.time_window_us}, "
            f"n_time_bins={config.n_time_bins}"
        )
    source = CustomSource(config.path, config.split)
    params = {
        "split": config.split,
        "time_window_us": config.time_window_us,
        "n_time_bins": config.n_time_bins,
        "sensor_size": list(source.info.sensor_size),
    }
    cache_dir = None
    if config.cache:
        cache_dir = config.cache_dir or str(Path(config.path).expanduser().parent / "cache")
    frame_config = FrameDatasetConfig(
        name=f"custom-{Path(config.path).stem}-{config.split}",
        cache_dir=cache_dir,
        progress=config.progress,
    )
    to_samples = functools.partial(
        custom_frames,
        sensor_size=source.info.sensor_size,
        time_window_us=config.time_window_us,
        n_time_bins=config.n_time_bins,
    )
    dataset = EventFrameDataset(source, to_samples, params, frame_config)
    dataset.sensor_size = source.info.sensor_size
    dataset.num_classes = source.info.num_classes
    return dataset


def write_custom_events(
    path: str | os.PathLike,
    recordings: Sequence[np.ndarray],
    labels: Sequence[int],
    splits: Sequence[str],
    sensor_size: tuple[int, int, int],
    num_classes: int,
) -> Path:
    """Write ``recordings`` (structured arrays, fields x, y, t, p or t, x, p) in the format.

    Raises:
        ValueError: lengths disagree, a split name is not train/test, or a recording is not
            a structured array.
    """
    path = Path(path)
    n = len(recordings)
    if len(labels) != n or len(splits) != n:
        raise UserError(
            f"{path}: {n} recordings, {len(labels)} labels, {len(splits)} splits; expected "
            "one label and one split per recording"
        )
    bad = sorted({s for s in splits if s not in SPLITS})
    if bad:
        raise UserError(f"{path}: split values {bad}; expected 'train' or 'test'")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        group = f.create_group("events")
        for i, rec in enumerate(recordings):
            rec = np.asarray(rec)
            if rec.dtype.names is None:
                raise UserError(f"{path}: recording {i} is not a structured array")
            group.create_dataset(str(i), data=rec)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        f.create_dataset("split", data=np.array(list(splits), dtype="S5"))
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["num_classes"] = np.int64(num_classes)
    return path
