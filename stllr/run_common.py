"""What every training run shares, whatever its task: the run folder's file names, atomic
writes (rank 0 only), per-epoch seeds, the optimiser, and the check that a resumed run
keeps its settings. :mod:`stllr.run` (classification) and :mod:`stllr.flow.run` (optical
flow) both build on it.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import torch

from stllr import distributed
from stllr.config import PLACEMENT_KEYS, ExperimentConfig
from stllr.errors import UserError
from stllr.files import atomic_write

CHECKPOINT = "checkpoint.pt"
#: config keys a resumed run may change: more epochs, where the run folder now lies, and
#: where it runs (a run started on a GPU may resume on the CPU and back)
MAY_CHANGE = ("epochs", "out_dir", *PLACEMENT_KEYS)
BEST = "best.pt"
#: what a checkpoint.pt holds, all needed to resume
RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "history", "config")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`stllr.files.atomic_write`: temp file in
    the same folder + ``os.replace``, permissions from the umask).

    Under data-parallel training only rank 0 writes.
    """
    if distributed.rank() != 0:
        return
    atomic_write(path, lambda f: f.write(data))


def atomic_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(
    path: Path, model, optimizer, scheduler, epoch: int, history: list, cfg: ExperimentConfig
) -> None:
    """Write a resumable ``checkpoint.pt`` (the :data:`RESUME_KEYS`) atomically."""
    atomic_save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "config": cfg.as_dict(),
        },
        path,
    )  # fmt: skip


def atomic_json(obj, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def epoch_seed(seed: int, trial: int, epoch: int) -> int:
    """A distinct, reproducible seed per (seed, trial, epoch); epoch 0 = initialisation."""
    return (seed * 1_000_003 + trial * 10_007 + epoch) % (2**63 - 1)


def make_optimizer(cfg: ExperimentConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "amsgrad":  # the first-spike coding reference's Adam
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise UserError(f"optimizer must be 'adam', 'amsgrad' or 'sgd', got {cfg.optimizer!r}")


def check_resumed_config(stored: dict, cfg: ExperimentConfig, path: Path) -> None:
    """A run resumes only with the settings ``path`` (config.json or a checkpoint) was
    written with; only ``MAY_CHANGE`` may differ (more epochs, a moved run folder)."""
    if not isinstance(stored, dict):
        raise UserError(f"--resume: {path} holds no config dict (got {type(stored).__name__})")
    current = json.loads(json.dumps(cfg.as_dict()))
    stored = json.loads(json.dumps(stored, default=str))
    # a key added to ExperimentConfig after the run was written counts as its default
    defaults = json.loads(json.dumps(dataclasses.asdict(ExperimentConfig())))
    diff = sorted(
        k for k in current if stored.get(k, defaults[k]) != current[k] and k not in MAY_CHANGE
    )
    if diff:
        raise UserError(
            f"--resume: {path} was written with different settings for {diff}; "
            "use another name or out_dir, or the same config"
        )


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a trial of the run in ``run_dir`` finished an epoch (it can be resumed)."""
    return any(Path(run_dir).glob(f"trial_*/{CHECKPOINT}"))
