"""Bookkeeping of stand-in dataset folders: the ``stllr_standin.json`` marker.

Each generated dataset folder gets a marker; :func:`_prepare` refuses to touch a folder that
holds real data (no marker), :func:`_finish` writes the marker and :func:`_ensure`
regenerates only when the marker is missing or different.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from stllr.data.offline import STANDIN_MARKER

MARKER = STANDIN_MARKER


def _marker(kind: str, config, seed: int) -> dict:
    return json.loads(json.dumps({"kind": kind, "seed": seed, "config": asdict(config)}))


def read_marker(base: str | Path) -> dict | None:
    """The stand-in marker of a dataset folder, or ``None`` (real data or nothing)."""
    path = Path(base) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _prepare(base: Path, kind: str, config, seed: int, generated: tuple[str, ...]) -> Path:
    """Refuse to write over real data; remove an older stand-in's generated folders."""
    marker = read_marker(base)
    if marker is None and any((base / g).exists() for g in generated):
        raise FileExistsError(
            f"{base} already holds data without a {MARKER} marker (real data?); refusing "
            "to overwrite it with a stand-in: choose another root"
        )
    for g in generated:
        if (base / g).exists():
            shutil.rmtree(base / g)
    (base / MARKER).unlink(missing_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    return base


def _finish(base: Path, kind: str, config, seed: int) -> None:
    (base / MARKER).write_text(json.dumps(_marker(kind, config, seed), indent=1, sort_keys=True))


def _ensure(folder: str, kind: str, make: Callable, root, config, seed: int) -> Path:
    base = Path(root) / folder
    if read_marker(base) == _marker(kind, config, seed):
        return base
    return make(root, config, seed)
