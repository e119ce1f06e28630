"""Recording sources: where an :class:`~stllr.data.frame_dataset.EventFrameDataset` reads
its recordings.

:class:`RecordingSource` is the protocol (``len``, ``labels``, ``load``, ``describe``,
``identity``); :class:`TonicSource` implements it over a tonic dataset; :func:`file_identity`
gives the cache-key part of a file list.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stllr.errors import UserError


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
            raise UserError(f"{kind}: {len(order)} recordings but {len(labels)} labels")
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
            raise UserError(
                f"{path}: cannot be read as a {self.kind} recording ({type(err).__name__}: "
                f"{err}); expected {self.expected_format}"
            ) from err
        return events
