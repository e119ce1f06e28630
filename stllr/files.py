"""Writing files atomically, with the permissions the user's umask gives, and run folders
that a failed start does not leave behind.

A temp file in the target folder is written and renamed over the target
(``os.replace``), so a reader never sees a half-written file. ``tempfile.mkstemp``
creates the temp file as 0600 whatever the umask; :func:`atomic_write` sets the mode an
ordinary ``open(path, "w")`` would have given (``0o666 & ~umask``) before the rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def umask_file_mode() -> int:
    """``0o666`` less this process's umask: the mode of a newly created ordinary file."""
    umask = os.umask(0)  # reading the umask means setting it; restored at once
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[BinaryIO], object], durable: bool = True) -> None:
    """Create or replace ``path`` with what ``write(f)`` writes into a binary file.

    ``durable`` flushes the data to disk before the rename (checkpoints, results); caches
    that can be recomputed may skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            os.fchmod(f.fileno(), umask_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def removed_on_failure(folder: Path, keep: Callable[[Path], bool]) -> Iterator[None]:
    """A new ``folder`` that the block fills: if the block fails while ``keep(folder)`` is
    false, ``folder`` is removed again, and so are the parents the block created when
    they are left empty (never anything else another process put there meanwhile).

    A run whose first checkpoint or stage is not written yet leaves nothing behind, so a
    failed start (bad data, a model that does not fit) needs no clean-up and no
    ``--resume``. A folder that existed before the block is never touched.
    """
    folder = Path(folder)
    created = [] if folder.exists() else [folder, *_missing_parents(folder)]
    try:
        yield
    except BaseException:
        if created and folder.exists() and not keep(folder):
            shutil.rmtree(folder, ignore_errors=True)
            for parent in created[1:]:
                try:
                    parent.rmdir()  # only when empty
                except OSError:
                    break
        raise


def _missing_parents(folder: Path) -> list[Path]:
    """The parents of ``folder`` that do not exist, nearest first."""
    missing = []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing
