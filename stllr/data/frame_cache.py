"""The disk frame cache of :class:`~stllr.data.frame_dataset.EventFrameDataset`.

:func:`cache_key` names a cache entry folder from the dataset name, the recordings' identity
and the binning parameters; :class:`FrameCache` stores one ``.npz`` per recording, written
atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stllr.files import atomic_write

CACHE_FORMAT = 1  # bump when the cached arrays change meaning


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
            atomic_write(
                meta_path, lambda f: f.write(json.dumps(meta, indent=1, default=str).encode())
            )

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

        def save(f) -> None:
            np.savez(f, frames=frames.astype(np.float32, copy=False), lengths=lengths)

        atomic_write(self.path(i), save, durable=False)
