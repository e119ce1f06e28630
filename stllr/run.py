"""Run an experiment: trials × epochs, checkpoints, resume, metrics and plots.

Layout of ``<out_dir>/<name>/``::

    config.json                 the resolved ExperimentConfig
    summary.json                best test accuracy per trial, mean ± std
    trial_<k>/checkpoint.pt     last finished epoch (model, optimiser, scheduler, history)
    trial_<k>/best.pt           model state at the best test accuracy
    trial_<k>/metrics.json|csv  one row per epoch
    trial_<k>/learning_curves.png

Every file is written atomically (temp file + rename), so an interrupted run
never leaves a truncated checkpoint. Randomness is re-seeded from
``(seed, trial, epoch)`` at the start of every epoch (shuffling, dropout masks,
augmentation drawn from the global torch RNG), so resuming from the checkpoint
of epoch k continues bit-identically to an uninterrupted run (on the same device:
docs/decisions.md, "Devices and reproducibility").

The model, its state and the optimiser live on ``cfg.device``
(:func:`stllr.devices.resolve_device`); checkpoints are written by rank 0 only and load
onto whatever device the resumed run uses.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stllr import distributed
from stllr.checkpoints import load_model_state, load_pt
from stllr.config import ExperimentConfig, check_training
from stllr.devices import resolve_device
from stllr.errors import UserError
from stllr.files import removed_on_failure
from stllr.models.factory import build_model
from stllr.run_common import (  # shared with stllr.flow.run; importable from here too
    BEST,
    CHECKPOINT,
    MAY_CHANGE,  # noqa: F401 (re-exported: pipeline.train)
    RESUME_KEYS,
    atomic_json,
    atomic_save,
    atomic_write_bytes,
    epoch_seed,
    has_checkpoint,
    make_optimizer,
    save_checkpoint,
)
from stllr.run_common import check_resumed_config as _check_resumed_config
from stllr.spike_metrics import SpikeReadoutTally
from stllr.spike_training import SpikeReadout
from stllr.tasks import TaskData, is_flow_task, load_task
from stllr.trainer import EpochMetrics, run_epoch


def run_experiment(
    cfg: ExperimentConfig,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data: TaskData | None = None,
) -> dict:
    """Train ``cfg.trials`` trials and return the summary (also written to ``summary.json``).

    A new run that fails before its first checkpoint (bad data, a model that does not fit
    the data) leaves no run folder behind.
    """
    check_training(cfg)
    if is_flow_task(cfg.task):
        from stllr.flow.run import run_flow_experiment

        return run_flow_experiment(cfg, resume=resume, progress=progress, log=log)
    run_dir = Path(cfg.out_dir) / cfg.name
    if resume and not (run_dir / "config.json").is_file():
        raise UserError(
            f"--resume: {run_dir} holds no run to resume (no config.json); "
            "leave out --resume to start it"
        )
    if distributed.rank() != 0:  # only rank 0 writes, and cleans up
        return _run_experiment(cfg, resume, progress, log, data)
    with removed_on_failure(run_dir, has_checkpoint):
        return _run_experiment(cfg, resume, progress, log, data)


def _run_experiment(cfg, resume, progress, log, data) -> dict:
    if distributed.rank() != 0:
        log, progress = (lambda s: None), False
    run_dir = Path(cfg.out_dir) / cfg.name
    config_path = run_dir / "config.json"
    if resume and config_path.exists():
        _check_resumed_config(json.loads(config_path.read_text()), cfg, config_path)
    elif not resume and (run_dir / "trial_1" / CHECKPOINT).exists():
        raise UserError(
            f"{run_dir} already holds a run; pass --resume to continue it, "
            "or choose another name/out_dir"
        )
    atomic_json(cfg.as_dict(), config_path)
    data = data if data is not None else load_task(cfg)
    log(f"task {cfg.task}: {data.description}")
    results = []
    for trial in range(1, cfg.trials + 1):
        results.append(
            train_trial(cfg, data, trial, run_dir / f"trial_{trial}", resume, progress, log)
        )
    best = [r["best_test_acc"] for r in results]
    mean = sum(best) / len(best)
    std = math.sqrt(sum((b - mean) ** 2 for b in best) / (len(best) - 1)) if len(best) > 1 else 0.0
    summary = {
        "name": cfg.name,
        "task": cfg.task,
        "method": cfg.method,
        "feedback": cfg.feedback,
        "trials": results,
        "best_test_acc_mean": mean,
        "best_test_acc_std": std,
    }
    if cfg.readout != "accumulate":
        summary["readout"] = cfg.readout  # test accuracy: FS (first_spike) or FR (rate)
    atomic_json(summary, run_dir / "summary.json")
    log(f"{cfg.name}: best test accuracy {mean:.2f} ± {std:.2f} % over {len(best)} trial(s)")
    return summary


def train_trial(cfg, data: TaskData, trial: int, trial_dir: Path, resume, progress, log) -> dict:
    torch.manual_seed(epoch_seed(cfg.seed, trial, 0))
    device = resolve_device(cfg.device, "config device")
    model, mode = build_model(cfg, data.input_shape, data.num_classes)
    model.to(device)  # initialised on the CPU first: the same weights on every device
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.scheduler)
        if cfg.scheduler > 0
        else None
    )
    if distributed.is_distributed():
        optimizer = distributed.GradientAllReduce(optimizer, model.batch_summed_parameters())
    history: list[EpochMetrics] = []
    start = 1
    ckpt_path = trial_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = load_pt(ckpt_path, keys=RESUME_KEYS)
        _check_resumed_config(ckpt["config"], cfg, ckpt_path)
        load_model_state(model, ckpt, ckpt_path, "its config")
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
            if scheduler is not None and ckpt["scheduler"] is not None:
                scheduler.load_state_dict(ckpt["scheduler"])
            history = [EpochMetrics(**m) for m in ckpt["history"]]
            start = int(ckpt["epoch"]) + 1
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"--resume: {ckpt_path} has an optimizer, scheduler, history or epoch entry "
                f"this run cannot continue from ({exc})"
            ) from None
        log(f"trial {trial}: resuming after epoch {ckpt['epoch']} from {ckpt_path}")
    best = max((m.test_acc for m in history), default=-1.0)
    readout = SpikeReadout.from_config(cfg)
    for epoch in range(start, cfg.epochs + 1):
        seed = epoch_seed(cfg.seed, trial, epoch)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if hasattr(data.train, "reseed"):
            data.train.reseed(seed)  # augmentation draws (e.g. random crops)
        t0 = time.perf_counter()
        tr_loss, tr_acc = run_epoch(
            model,
            data.train,
            cfg.batch_size,
            optimizer,
            mode,
            cfg.window,
            gen,
            progress,
            f"trial {trial} epoch {epoch}",
            device,
            cfg.num_workers,
            readout=readout,
        )
        tally = SpikeReadoutTally() if readout is not None else None
        te_loss, te_acc = run_epoch(
            model,
            data.test,
            cfg.val_batch_size,
            progress=progress,
            desc="test",
            device=device,
            num_workers=cfg.num_workers,
            readout=readout,
            tally=tally,
        )
        spent = time.perf_counter() - t0
        measured = tally.result() if tally is not None else None
        m = EpochMetrics(
            epoch, tr_loss, tr_acc, te_loss, te_acc, spent, measured and measured.as_dict()
        )
        history.append(m)
        if scheduler is not None:
            scheduler.step()
        if te_acc > best:
            best = te_acc
            atomic_save(
                {
                    "model": model.state_dict(),
                    "epoch": epoch,
                    "test_acc": te_acc,
                    "config": cfg.as_dict(),
                },
                trial_dir / BEST,
            )
        save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch,
                        [h.as_dict() for h in history], cfg)  # fmt: skip
        write_metrics(history, trial_dir)
        log(
            f"trial {trial} epoch {epoch:3d}/{cfg.epochs}: train {tr_acc:5.1f}% "
            f"test {te_acc:5.1f}% (best {best:5.1f}%) lr {optimizer.param_groups[0]['lr']:.2e} "
            f"[{m.seconds:.1f} s]"
        )
        if measured is not None:
            log(f"trial {trial} epoch {epoch:3d} test read-out: {measured.text()}")
    if history and start > cfg.epochs:
        # killed after the last checkpoint but before its metrics: write them now, so that
        # a resume at any point finishes with every file
        write_metrics(history, trial_dir)
    result = {
        "trial": trial,
        "best_test_acc": best,
        "final_test_acc": history[-1].test_acc if history else float("nan"),
        "epochs": len(history),
    }
    if history and history[-1].readout is not None:
        result["final_readout"] = history[-1].readout
    return result


def write_metrics(history: list[EpochMetrics], trial_dir: Path) -> None:
    """metrics.json, metrics.csv and learning_curves.png for one trial."""
    rows = [h.as_dict() for h in history]
    atomic_json(rows, trial_dir / "metrics.json")
    rows = [flat_row(r) for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(trial_dir / "metrics.csv", buf.getvalue().encode())
    plot_learning_curves(history, trial_dir / "learning_curves.png")


def flat_row(row: dict) -> dict:
    """A metrics row for the CSV: a spiking read-out's metrics as ``test_<name>`` columns."""
    row = dict(row)
    for key, value in (row.pop("readout", None) or {}).items():
        row[f"test_{key}"] = value
    return row


def plot_learning_curves(history: list[EpochMetrics], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_acc.plot(epochs, [h.train_acc for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h.test_acc for h in history], "s-", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h.test_loss for h in history], "s-", label="test")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("CE of summed logits")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
