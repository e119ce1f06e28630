"""Offline checks for the tonic-based loaders: file checks, never-downloading tonic classes.

tonic's dataset classes call ``download()`` whenever their ``_check_exists()`` fails (too few
files, or the archive file missing), which offline ends in a ``URLError`` after a long wait.
This module therefore (1) checks the files itself with :func:`check_offline`, raising a
:class:`FileNotFoundError` that shows the expected tree, and (2) builds tonic datasets through
:func:`offline_tonic_class`, a same-named subclass whose ``_check_exists`` is always true and
whose ``download`` raises. No code path downloads. It also holds the small helpers the loaders
share around that: the stand-in marker name, :func:`warn_if_incomplete`,
:func:`write_placeholder_archive` and :func:`natural_key`.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path

import tonic

STANDIN_MARKER = "stllr_standin.json"  # written by stllr.data.standins into generated folders


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
    started with "spawn") as ``stllr.data.offline._Offline<ClassName>``.
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
