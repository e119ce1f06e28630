"""The dataset of every event pipeline: :class:`EventFrameDataset` and its config.

Every event dataset of the toolkit (:mod:`~stllr.data.dvs_gesture`,
:mod:`~stllr.data.cifar10_dvs`, :mod:`~stllr.data.ncaltech101`,
:mod:`~stllr.data.custom_events`) is an :class:`EventFrameDataset`: a *recording source*
(:mod:`~stllr.data.recording_sources`) plus a deterministic ``to_samples`` function that
bins one recording into one or more frame stacks ``[T, C, H, W]``, plus an optional random
``augment`` applied after the cache (:mod:`~stllr.data.frame_cache`).
:class:`FrameDatasetConfig` says how the frames are stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stllr.data.frame_cache import FrameCache, cache_key
from stllr.data.recording_sources import RecordingSource
from stllr.progress import bar as progress_bar

SamplesFn = Callable[[np.ndarray, str], list[np.ndarray]]
AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


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
        bar = progress_bar(
            range(n), show=self.config.progress, desc=f"binning {self.config.name}", leave=False
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
