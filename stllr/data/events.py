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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tonic
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

CACHE_FORMAT = 1  # bump when the cached arrays change meaning
STANDIN_MARKER = "stllr_standin.json"  # written by stllr.data.standins into generated folders

SamplesFn = Callable[[np.ndarray, str], list[np.ndarray]]
AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# --------------------------------------------------------------------------- offline checks


def check_offline(
    root: str | os.PathLike,
    dataset_class_name: str,
    expected_layout_text: str,
    *,
    subdir: str = "",
    suffix: str,
    min_files: int = 1,
) -> Path:
    """Make sure ``<root>/<dataset_class_name>/<subdir>`` holds extracted data files.

    Args:
        root: the folder given to the loader (tonic's ``save_to``).
        dataset_class_name: tonic's class name, which is also the data folder's name.
        expected_layout_text: the directory tree to show when something is missing.
        subdir: folder below ``<root>/<dataset_class_name>`` that holds the files.
        suffix: file ending of the data files (``".npy"``, ``".aedat4"``, ``".bin"``).
        min_files: how many such files (searched recursively) make the folder complete.

    Returns:
        ``<root>/<dataset_class_name>`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: a folder is missing or holds fewer than ``min_files`` data files.
            The message names the folder and shows ``expected_layout_text``; nothing is
            ever downloaded.
    """
    base = Path(root).expanduser() / dataset_class_name
    folder = base / subdir if subdir else base
    problem = None
    if not Path(root).expanduser().is_dir():
        problem = f"the data root {Path(root).expanduser()} does not exist"
    elif not base.is_dir():
        problem = f"the folder {base} does not exist"
    elif not folder.is_dir():
        problem = f"the folder {folder} does not exist"
    else:
        n_found = sum(1 for _ in folder.rglob(f"*{suffix}"))
        if n_found < min_files:
            problem = (
                f"the folder {folder} holds {n_found} '*{suffix}' file(s); expected at "
                f"least {min_files}"
            )
    if problem is not None:
        raise FileNotFoundError(
            f"{dataset_class_name} data missing or incomplete: {problem}.\n"
            "This toolkit never downloads datasets (no network). Put the extracted files "
            f"in this layout (root = {Path(root).expanduser()}):\n{expected_layout_text}\n"
            "or generate the stand-in with stllr.data.standins."
        )
    return base


def warn_if_incomplete(base: Path, found: int, full: int, what: str) -> None:
    """Warn when a folder without a stand-in marker holds fewer files than the real dataset."""
    if found < full and not (Path(base) / STANDIN_MARKER).exists():
        warnings.warn(
            f"{base}: found {found} {what}, the full dataset has {full}; if this is the real "
            "dataset, the extraction looks incomplete",
            stacklevel=3,
        )


_LAYOUTS: dict[str, str] = {}
_OFFLINE_CLASSES: dict[str, type] = {}


def offline_tonic_class(cls: type, expected_layout_text: str = "") -> type:
    """A subclass of the tonic dataset ``cls`` that can never download.

    It keeps ``cls.__name__`` because tonic derives the data folder
    (``<save_to>/<ClassName>``) from the class name. ``_check_exists`` returns True (call
    :func:`check_offline` first) and ``download`` raises :class:`FileNotFoundError` showing
    ``expected_layout_text``. One class per tonic class; it pickles (DataLoader workers
    started with "spawn") as ``stllr.data.events._Offline<ClassName>``.
    """
    if expected_layout_text:
        _LAYOUTS[cls.__name__] = expected_layout_text
    qualname = f"_Offline{cls.__name__}"
    if qualname in _OFFLINE_CLASSES:
        return _OFFLINE_CLASSES[qualname]

    def _check_exists(self) -> bool:
        return True

    def download(self) -> None:
        raise FileNotFoundError(
            f"{cls.__name__}: refusing to download (this toolkit works offline); put the "
            f"files under {self.location_on_system}:\n{_LAYOUTS.get(cls.__name__, '')}"
        )

    new_cls = type(
        cls.__name__,
        (cls,),
        {
            "_check_exists": _check_exists,
            "download": download,
            "__module__": __name__,
            "__qualname__": qualname,
            "__doc__": f"Offline {cls.__name__}: never downloads.",
        },
    )
    _OFFLINE_CLASSES[qualname] = new_cls
    return new_cls


def __getattr__(name: str) -> type:
    """Recreate ``_Offline<ClassName>`` on demand so pickled tonic datasets load anywhere."""
    if name.startswith("_Offline") and hasattr(tonic.datasets, name[len("_Offline") :]):
        return offline_tonic_class(getattr(tonic.datasets, name[len("_Offline") :]))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_placeholder_archive(path: str | os.PathLike) -> None:
    """Create the (empty) archive file that plain tonic looks for, if it does not exist.

    A zero-byte ``.zip``/``.tar.gz`` is enough for tonic 1.7.0 (existence is checked, never
    the MD5). Written as an empty but valid zip for ``.zip`` names.
    """
    path = Path(path)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w"):
            pass
    else:
        path.write_bytes(b"")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded integers numerically (``img_2`` before ``img_10``)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


# --------------------------------------------------------------------------- binning helpers


def validate_events(events: np.ndarray, sensor_size: tuple[int, int, int], where: str) -> None:
    """Raise :class:`ValueError` naming ``where`` unless ``events`` can be binned.

    Checks: a structured array with integer ``x``/``p`` fields (``y`` when ``H > 1``) and a
    numeric ``t``; at least one event; ``t`` non-decreasing; ``0 ≤ x < W``, ``0 ≤ y < H``,
    ``0 ≤ p < P`` for ``sensor_size = (W, H, P)``.
    """
    names = events.dtype.names
    if names is None:
        raise ValueError(
            f"{where}: events must be a structured array with fields x, y, t, p; "
            f"got dtype {events.dtype}"
        )
    needed = ("x", "y", "t", "p") if sensor_size[1] > 1 else ("x", "t", "p")
    for field in needed:
        if field not in names:
            raise ValueError(f"{where}: events lack the field '{field}' (fields: {names})")
        kind = events.dtype[field].kind
        ok = "iufb" if field == "t" else "iub"
        if kind not in ok:
            raise ValueError(
                f"{where}: field '{field}' has dtype {events.dtype[field]}; expected "
                + ("a number" if field == "t" else "integers (or bool for p)")
            )
    if events.size == 0:
        raise ValueError(f"{where}: empty recording (0 events); expected at least 1 event")
    t = events["t"]
    if np.any(t[1:] < t[:-1]):
        raise ValueError(f"{where}: field 't' must be sorted in ascending time")
    limits = {"x": sensor_size[0], "p": sensor_size[2]}
    if "y" in needed:
        limits["y"] = sensor_size[1]
    for field, size in limits.items():
        values = events[field].astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"{where}: field '{field}' spans [{lo}, {hi}]; expected 0..{size - 1} "
                f"for sensor_size (W, H, P) = {tuple(sensor_size)}"
            )


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    where: str,
    *,
    time_window: float | None = None,
    n_time_bins: int | None = None,
    n_event_bins: int | None = None,
) -> np.ndarray:
    """Validated tonic ``ToFrame``: event counts ``[T, P, H, W]`` (int16).

    Exactly one of these must be given (tonic 1.7.0 ``to_frame_numpy`` semantics):

    * ``time_window`` (µs): complete windows ``[t0 + k·w, t0 + (k+1)·w)`` from the first
      event ``t0``, ``max(floor((t_last − t0 − w) / w) + 1, 1)`` of them;
    * ``n_time_bins``: ``n`` windows of ``floor((t_last − t0) / n)`` µs each (events at or
      after ``t0 + n·width``, the last one included, are dropped);
    * ``n_event_bins``: ``n`` frames of ``N // n`` consecutive events (the last ``N mod n``
      events are dropped).
    Audio-like sensors (``H == 1``, no ``y`` field) give ``[T, P, 1, W]``.
    """
    validate_events(events, sensor_size, where)
    to_frame = tonic.transforms.ToFrame(
        sensor_size=tuple(sensor_size),
        time_window=time_window,
        n_time_bins=n_time_bins,
        n_event_bins=n_event_bins,
    )
    frames = to_frame(events)
    if frames.ndim == 3:  # (T, P, W) for sensors without a y axis
        frames = frames[:, :, None, :]
    return frames


def slice_by_time(events: np.ndarray, window_us: float) -> list[np.ndarray]:
    """tonic ``SliceByTime(window_us)`` without the partial last slice; empty slices dropped.

    Slice ``i`` holds the events with ``t0 + i·w ≤ t < t0 + (i+1)·w`` (``t0`` = first event)
    for ``i < max(floor((t_last − t0 − w) / w) + 1, 1)``.
    """
    slices, _ = tonic.slicers.SliceByTime(time_window=window_us).slice(events, None)
    return [s for s in slices if len(s) > 0]


def resize_frames(
    frames: torch.Tensor | np.ndarray,
    size: tuple[int, int],
    *,
    antialias: bool = True,
    round_to_int: bool = True,
) -> torch.Tensor:
    """Bilinear resize of ``[T, C, H, W]`` frames to ``size = (h, w)`` (float32 out).

    Exactly torchvision's tensor ``Resize(size, antialias=antialias)`` on tonic's int16
    frames: cast to float32, ``F.interpolate(mode="bilinear", align_corners=False,
    antialias=antialias)`` with ``T`` as the batch, then (``round_to_int=True``)
    ``torch.round`` because torchvision casts the result back to the input's integer dtype.
    """
    x = torch.as_tensor(frames).to(torch.float32)
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clone()
    y = F.interpolate(
        x, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias
    )
    return torch.round(y) if round_to_int else y


def random_crop(
    frames: torch.Tensor, size: tuple[int, int], padding: int, generator: torch.Generator
) -> torch.Tensor:
    """Zero-pad ``padding`` pixels on each side, then crop ``size = (h, w)`` at one random
    position shared by all frames of ``[T, C, H, W]`` (torchvision ``RandomCrop(size,
    padding)`` applied to the whole stack; offsets uniform in ``[0, H + 2·padding − h]``)."""
    x = F.pad(frames, (padding, padding, padding, padding)) if padding else frames
    h, w = size
    i = int(torch.randint(0, x.shape[-2] - h + 1, (1,), generator=generator))
    j = int(torch.randint(0, x.shape[-1] - w + 1, (1,), generator=generator))
    return x[..., i : i + h, j : j + w].contiguous()


@dataclass(frozen=True)
class CropAugment:
    """Picklable ``augment`` callable: :func:`random_crop` of ``size = (h, w)`` after
    ``padding`` pixels of zeros, one crop for all frames of a sample."""

    size: tuple[int, int]
    padding: int

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop(frames, self.size, self.padding, generator)


# --------------------------------------------------------------------------- sources & cache


class RecordingSource(Protocol):
    """Recordings of one split: ``len(source)``, ``labels[i]``, ``load(i)`` and names."""

    labels: Sequence[int]

    def __len__(self) -> int: ...

    def load(self, i: int) -> np.ndarray:
        """Structured event array of recording ``i``; errors name the file."""
        ...

    def describe(self, i: int) -> str:
        """Human-readable location of recording ``i`` (for error messages)."""
        ...

    def identity(self) -> list[str]:
        """Strings that identify the recordings' content (paths and sizes) for the cache key."""
        ...


def file_identity(paths: Sequence[str | os.PathLike]) -> list[str]:
    """``"<absolute path>:<size in bytes>:<mtime in ns>"`` per file: the cache-key part of a
    file list (regenerated or replaced files get a new key)."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return out


class TonicSource:
    """A :class:`RecordingSource` over a tonic dataset (events through ``dataset[j]``).

    Args:
        dataset: a tonic dataset built without transforms (``data`` holds the file paths).
        order: tonic indices in the order this source exposes them (tonic lists files in
            ``os.walk`` order, which depends on the file system; callers sort).
        labels: integer label per exposed recording.
        kind: dataset name for error messages.
        expected_format: one line describing the file format, added to read errors.
        check: optional ``check(path)`` run before tonic reads a file (raises ValueError).
    """

    def __init__(
        self,
        dataset: Any,
        order: Sequence[int],
        labels: Sequence[int],
        kind: str,
        expected_format: str,
        check: Callable[[str], None] | None = None,
    ):
        if len(order) != len(labels):
            raise ValueError(f"{kind}: {len(order)} recordings but {len(labels)} labels")
        self.dataset = dataset
        self.order = [int(j) for j in order]
        self.labels = [int(y) for y in labels]
        self.files = [str(dataset.data[j]) for j in self.order]
        self.kind = kind
        self.expected_format = expected_format
        self.check = check

    def __len__(self) -> int:
        return len(self.order)

    def describe(self, i: int) -> str:
        return self.files[i]

    def identity(self) -> list[str]:
        return file_identity(self.files)

    def load(self, i: int) -> np.ndarray:
        path = self.files[i]
        if self.check is not None:
            self.check(path)
        try:
            events, _ = self.dataset[self.order[i]]
        except Exception as err:  # numpy/aedat/tonic errors on truncated or foreign files
            raise ValueError(
                f"{path}: cannot be read as a {self.kind} recording ({type(err).__name__}: "
                f"{err}); expected {self.expected_format}"
            ) from err
        return events


@dataclass(frozen=True)
class FrameDatasetConfig:
    """How an :class:`EventFrameDataset` stores its frames.

    Attributes:
        name: short label used in the cache folder name and the progress bar.
        cache_dir: folder for the disk frame cache; ``None`` keeps the frames in memory.
        progress: show a tqdm bar while binning.
        seed: seed of the augmentation generator (combined with the DataLoader worker seed).
    """

    name: str
    cache_dir: str | None = None
    progress: bool = True
    seed: int = 0


def cache_key(name: str, identity: Sequence[str], params: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the name, the recordings' identity and the params."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "name": name, "files": list(identity), "params": params},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FrameCache:
    """Disk cache: one ``r<index>.npz`` per recording with ``frames`` (all samples of the
    recording concatenated in time, float32 ``[ΣT, C, H, W]``) and ``lengths`` (``[S]``).

    Files are written to a temporary file in the same folder and moved into place with
    :func:`os.replace`, so readers never see half-written entries. An unreadable entry is
    reported with a warning and recomputed.
    """

    def __init__(self, folder: str | os.PathLike, meta: Mapping[str, Any]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            _atomic_write_bytes(meta_path, json.dumps(meta, indent=1, default=str).encode())

    def path(self, i: int) -> Path:
        return self.folder / f"r{i:06d}.npz"

    def read_lengths(self, i: int) -> list[int] | None:
        """Sample lengths of entry ``i``; ``None`` if absent or unreadable (warns)."""
        path = self.path(i)
        if not path.exists():
            return None
        try:
            with np.load(path) as npz:
                return [int(n) for n in npz["lengths"]]
        except Exception as err:  # corrupt zip, truncated member, missing key …
            warnings.warn(f"corrupt frame-cache entry {path} ({err!r}); recomputing", stacklevel=2)
            return None

    def read(self, i: int) -> list[np.ndarray] | None:
        """All samples of entry ``i``; ``None`` if absent or unreadable (warns)."""
        path = self.path(i)
        if not path.exists():
            return None
        try:
            with np.load(path) as npz:
                frames, lengths = npz["frames"], npz["lengths"]
            if int(lengths.sum()) != frames.shape[0]:
                raise ValueError(f"lengths sum to {int(lengths.sum())}, frames {frames.shape}")
        except Exception as err:
            warnings.warn(f"corrupt frame-cache entry {path} ({err!r}); recomputing", stacklevel=2)
            return None
        return np.split(frames, np.cumsum(lengths)[:-1]) if len(lengths) else []

    def write(self, i: int, samples: Sequence[np.ndarray]) -> None:
        lengths = np.array([s.shape[0] for s in samples], dtype=np.int64)
        frames = np.concatenate(samples, axis=0) if samples else np.zeros((0,), np.float32)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".r{i:06d}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, frames=frames.astype(np.float32, copy=False), lengths=lengths)
            os.replace(tmp, self.path(i))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EventFrameDataset(torch.utils.data.Dataset):
    """Time-major frame samples ``(frames float32 [T, C, H, W], label int)``.

    On construction every recording is binned once with ``to_samples(events, where)``
    (progress bar), which returns one or more float32 frame stacks ``[T_s, C, H, W]``
    (several when a recording is sliced). The stacks are kept in the disk
    :class:`FrameCache` (``config.cache_dir``, keyed by :func:`cache_key` of the recordings'
    identity and ``params``) or in memory. A second dataset with the same key, or a second
    epoch, only reads the cache. ``augment(frames, generator)`` runs on every access, after
    the cache.

    Attributes:
        sample_recording: recording index of every sample, ``int64 [len(self)]``.
        num_samples_per_recording: list of sample counts per recording.
        cache_folder: the cache entry folder, or ``None`` in memory mode.
    """

    def __init__(
        self,
        source: RecordingSource,
        to_samples: SamplesFn,
        params: Mapping[str, Any],
        config: FrameDatasetConfig,
        augment: AugmentFn | None = None,
    ):
        self.source = source
        self.to_samples = to_samples
        self.params = dict(params)
        self.config = config
        self.augment = augment
        self._memory: list[list[torch.Tensor]] | None = None
        self._cache: FrameCache | None = None
        self.cache_folder: Path | None = None
        if config.cache_dir is not None:
            key = cache_key(config.name, source.identity(), self.params)
            self.cache_folder = Path(config.cache_dir) / f"{config.name}-{key}"
            meta = {"name": config.name, "params": self.params, "recordings": len(source)}
            self._cache = FrameCache(self.cache_folder, meta)
        self.num_samples_per_recording = self._build()
        counts = np.asarray(self.num_samples_per_recording, dtype=np.int64)
        self.sample_recording = np.repeat(np.arange(len(counts)), counts)
        self._first_sample = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._rng_owner: tuple[int, int] | None = None
        self._generator: torch.Generator | None = None

    # -- building ------------------------------------------------------------------------
    def _compute(self, i: int) -> list[np.ndarray]:
        samples = self.to_samples(self.source.load(i), self.source.describe(i))
        return [np.ascontiguousarray(s, dtype=np.float32) for s in samples]

    def _build(self) -> list[int]:
        n = len(self.source)
        counts: list[int] = []
        memory: list[list[torch.Tensor]] = []
        bar = tqdm(
            range(n),
            desc=f"binning {self.config.name}",
            disable=not self.config.progress,
            leave=False,
        )
        for i in bar:
            if self._cache is not None:
                lengths = self._cache.read_lengths(i)
                if lengths is None:
                    samples = self._compute(i)
                    self._cache.write(i, samples)
                    lengths = [s.shape[0] for s in samples]
                counts.append(len(lengths))
            else:
                samples = self._compute(i)
                memory.append([torch.from_numpy(s) for s in samples])
                counts.append(len(samples))
        if self._cache is None:
            self._memory = memory
        return counts

    def recording_samples(self, i: int) -> list[torch.Tensor]:
        """All cached frame stacks of recording ``i`` (recomputed if the entry is corrupt)."""
        if self._memory is not None:
            return self._memory[i]
        if self._cache is None:
            raise RuntimeError("EventFrameDataset has neither a memory store nor a disk cache")
        samples = self._cache.read(i)
        if samples is None:
            samples = self._compute(i)
            self._cache.write(i, samples)
        if len(samples) != self.num_samples_per_recording[i]:
            raise RuntimeError(
                f"frame cache {self._cache.path(i)}: recording {self.source.describe(i)} now "
                f"gives {len(samples)} samples, expected {self.num_samples_per_recording[i]}; "
                "delete the cache folder"
            )
        return [torch.from_numpy(s) for s in samples]

    def __getstate__(self) -> dict:
        # The generator is per process (see ``generator``): do not ship it to workers.
        state = self.__dict__.copy()
        state["_generator"] = None
        state["_rng_owner"] = None
        return state

    # -- Dataset API ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.sample_recording.size)

    @property
    def labels(self) -> list[int]:
        """Label of every sample."""
        return [int(self.source.labels[r]) for r in self.sample_recording]

    def generator(self) -> torch.Generator:
        """The augmentation generator of this process (reseeded once per DataLoader worker
        from ``config.seed`` and the worker's seed, which changes every epoch)."""
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), -1 if info is None else info.id)
        if owner != self._rng_owner or self._generator is None:
            seed = self.config.seed if info is None else self.config.seed * 1_000_003 + info.seed
            self._generator = torch.Generator().manual_seed(seed % (2**63))
            self._rng_owner = owner
        return self._generator

    def reseed(self, seed: int) -> None:
        """Restart this process's augmentation generator from ``seed`` (the experiment
        runner calls it at every epoch start, so a resumed run draws the same crops)."""
        info = torch.utils.data.get_worker_info()
        self._rng_owner = (os.getpid(), -1 if info is None else info.id)
        self._generator = torch.Generator().manual_seed(seed % (2**63))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        index = index % len(self)
        rec = int(self.sample_recording[index])
        frames = self.recording_samples(rec)[index - int(self._first_sample[rec])]
        if self.augment is not None:
            frames = self.augment(frames, self.generator())
        return frames, int(self.source.labels[rec])


# --------------------------------------------------------------------------- batching


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples time-major: ``x [T_max, B, *S]`` float32, ``y [B]`` long.

    Each sample is ``(frames [T_i, *S], label)``; shorter samples are zero-padded at the
    end (tonic's ``PadTensors(batch_first=True)`` followed by a transpose).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate needs at least one (frames, label) sample")
    frames = [torch.as_tensor(f) for f, _ in batch]
    shapes = [tuple(f.shape) for f in frames]
    if any(len(s) < 1 for s in shapes) or len({s[1:] for s in shapes}) != 1:
        raise ValueError(
            f"pad_collate needs samples [T_i, *S] with one trailing shape S, got {shapes}"
        )
    t_max = max(s[0] for s in shapes)
    x = torch.zeros((t_max, len(frames), *shapes[0][1:]), dtype=torch.float32)
    for b, f in enumerate(frames):
        x[: f.shape[0], b] = f
    y = torch.tensor([int(label) for _, label in batch], dtype=torch.long)
    return x, y


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader with :func:`pad_collate` (and a seeded shuffle when ``seed`` is given)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=pad_collate,
        generator=generator,
    )
