"""Tasks: where a config's ``task`` finds its data, and the shape it has.

Each task returns a :class:`TaskData` (train and test datasets of
``(frames [T_i, *input_shape], label)`` plus shapes). ``*-standin`` tasks
generate their data deterministically on first use under the cache folder;
real tasks read ``cfg.data`` and never download. New tasks register with
:func:`register_task`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stllr.config import ExperimentConfig
from stllr.trainer import Dataset, ListDataset

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stllr"


@dataclass(frozen=True)
class TaskData:
    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    description: str


Loader = Callable[[ExperimentConfig], TaskData]
_TASKS: dict[str, Loader] = {}


def register_task(name: str, loader: Loader) -> None:
    _TASKS[name] = loader


def task_names() -> list[str]:
    return sorted(_TASKS)


def load_task(cfg: ExperimentConfig) -> TaskData:
    if cfg.task not in _TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; expected one of {task_names()}")
    return _TASKS[cfg.task](cfg)


def _shd_standin(cfg: ExperimentConfig) -> TaskData:
    from stllr.data.shd_frames import standin_shd_tensors

    n_train = cfg.standin_train or 1000
    n_test = cfg.standin_test or 400
    folder = Path(cfg.data) if cfg.data else CACHE_DIR / "shd_standin"
    d = standin_shd_tensors(folder, n_train=n_train, n_test=n_test, seed=0)
    return TaskData(
        ListDataset(d.train_frames, d.train_labels),
        ListDataset(d.test_frames, d.test_labels),
        (700,),
        20,
        f"SHD-like stand-in ({n_train} train / {n_test} test, held-out speakers) in {folder}",
    )


def _shd(cfg: ExperimentConfig) -> TaskData:
    from stllr.data.shd_frames import load_shd_frames

    if not cfg.data:
        raise ValueError("task 'shd' reads real files: give data=<folder containing SHD/>")
    folder = Path(cfg.data) / "SHD"
    files = {split: folder / f"shd_{split}.h5" for split in ("train", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"SHD files not found: {', '.join(missing)}. Expected layout:\n"
            f"  {cfg.data}/SHD/shd_train.h5\n  {cfg.data}/SHD/shd_test.h5\n"
            "(the extracted files of the official release; nothing is downloaded)"
        )
    train = load_shd_frames(files["train"])
    test = load_shd_frames(files["test"])
    return TaskData(
        ListDataset(*train), ListDataset(*test), (700,), 20, f"SHD from {folder} (official split)"
    )


register_task("shd-standin", _shd_standin)
register_task("shd", _shd)
