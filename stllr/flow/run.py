"""``stllr train`` for the flow tasks: trials × epochs, checkpoints, AEE per sequence.

The run folder has the layout of :mod:`stllr.run` (``config.json``, ``summary.json``,
``trial_<k>/{checkpoint.pt, best.pt, metrics.json, metrics.csv}``), written atomically
with the same helpers and reseeded per epoch with :func:`stllr.run.epoch_seed`. The
score is the AEE summed over the test sequences (lower is better); ``best.pt`` holds the
model of the epoch with the lowest sum. ``--resume`` continues from ``checkpoint.pt``.
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

from stllr.checkpoints import load_model_state, load_pt
from stllr.config import ExperimentConfig
from stllr.devices import resolve_device, to_device
from stllr.errors import UserError
from stllr.files import removed_on_failure
from stllr.flow.dataset import collate
from stllr.flow.metrics import SequenceScore, sequence_score
from stllr.flow.tasks import FlowTaskData
from stllr.flow.training import FLOW_MODES, evaluate_flow_batch, flow_loss, train_flow_batch
from stllr.models.factory import build_model
from stllr.progress import bar as progress_bar
from stllr.run_common import (
    BEST,
    CHECKPOINT,
    atomic_json,
    atomic_save,
    atomic_write_bytes,
    check_resumed_config,
    epoch_seed,
    has_checkpoint,
    make_optimizer,
    save_checkpoint,
)


def batches(data, batch_size: int, generator=None, device=None):
    """Collated :class:`~stllr.flow.dataset.FlowSample` batches, shuffled with ``generator``."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for s in range(0, n, batch_size):
        batch = collate([data[int(i)] for i in order[s : s + batch_size]])
        yield type(batch)(*to_device(tuple(batch), device))


def evaluate_sequences(model, tests: dict, batch_size: int, device=None) -> list[SequenceScore]:
    """AEE and outlier % of every test sequence (:mod:`stllr.flow.metrics`)."""
    scores = []
    for name, data in tests.items():
        errors = []
        for batch in batches(data, batch_size, device=device):
            errors += evaluate_flow_batch(model, batch)
        scores.append(sequence_score(name, errors))
    return scores


def run_flow_experiment(
    cfg: ExperimentConfig,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data: FlowTaskData | None = None,
) -> dict:
    """Train ``cfg.trials`` trials of a flow model; returns (and writes) the summary."""
    if cfg.method not in FLOW_MODES:
        raise UserError(
            f"config method must be one of {FLOW_MODES} for task {cfg.task!r}, got {cfg.method!r}"
        )
    run_dir = Path(cfg.out_dir) / cfg.name
    if resume and not (run_dir / "config.json").is_file():
        raise UserError(f"--resume: {run_dir} holds no run to resume (no config.json)")
    with removed_on_failure(run_dir, has_checkpoint):
        config_path = run_dir / "config.json"
        if resume:
            check_resumed_config(json.loads(config_path.read_text()), cfg, config_path)
        elif (run_dir / "trial_1" / CHECKPOINT).exists():
            raise UserError(f"{run_dir} already holds a run; pass --resume or choose another name")
        atomic_json(cfg.as_dict(), config_path)
        if data is None:
            from stllr.tasks import load_task

            data = load_task(cfg)
        log(f"task {cfg.task}: {data.description}")
        results = [
            _train_trial(cfg, data, k, run_dir / f"trial_{k}", resume, progress, log)
            for k in range(1, cfg.trials + 1)
        ]
    best = [r["best_sum_aee"] for r in results]
    mean = sum(best) / len(best)
    std = math.sqrt(sum((b - mean) ** 2 for b in best) / (len(best) - 1)) if len(best) > 1 else 0.0
    summary = {
        "name": cfg.name,
        "task": cfg.task,
        "method": cfg.method,
        "trials": results,
        "best_sum_aee_mean": mean,
        "best_sum_aee_std": std,
    }
    atomic_json(summary, run_dir / "summary.json")
    log(f"{cfg.name}: best summed AEE {mean:.3f} ± {std:.3f} over {len(best)} trial(s)")
    return summary


def _train_trial(cfg, data: FlowTaskData, trial: int, trial_dir: Path, resume, progress, log):
    torch.manual_seed(epoch_seed(cfg.seed, trial, 0))
    device = resolve_device(cfg.device, "config device")
    model, mode = build_model(cfg, data.input_shape, 2)
    model.to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.scheduler)
        if cfg.scheduler
        else None
    )
    loss_fn = flow_loss(cfg.flow_loss, cfg.flow_dt)
    history: list[dict] = []
    start = 1
    ckpt_path = trial_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = load_pt(
            ckpt_path, keys=("model", "optimizer", "scheduler", "epoch", "history", "config")
        )
        load_model_state(model, ckpt, ckpt_path, "its config")
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"]) + 1
        log(f"trial {trial}: resuming after epoch {ckpt['epoch']}")
    best = min((h["sum_aee"] for h in history), default=math.inf)
    for epoch in range(start, cfg.epochs + 1):
        seed = epoch_seed(cfg.seed, trial, epoch)
        torch.manual_seed(seed)
        data.train.reseed(seed)
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        n_batches = -(-len(data.train) // cfg.batch_size)
        bar = progress_bar(
            show=progress, total=n_batches, desc=f"trial {trial} epoch {epoch}", leave=False
        )
        losses = []
        for batch in batches(data.train, cfg.batch_size, gen, device):
            loss = train_flow_batch(model, batch, optimizer, loss_fn, mode, cfg.window)
            if not math.isfinite(loss):
                raise UserError(
                    f"training diverged in trial {trial} epoch {epoch}: the loss is {loss}"
                )
            losses.append(loss)
            bar.update(1)
        bar.close()
        scores = evaluate_sequences(model, data.test, cfg.val_batch_size, device)
        if scheduler is not None:
            scheduler.step()
        row = {
            "epoch": epoch,
            "train_loss": sum(losses) / max(len(losses), 1),
            **{f"aee_{s.name}": s.aee for s in scores},
            **{f"outlier_pct_{s.name}": s.outlier_pct for s in scores},
            "sum_aee": sum(s.aee for s in scores),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if row["sum_aee"] < best:
            best = row["sum_aee"]
            atomic_save(
                {
                    "model": model.state_dict(),
                    "epoch": epoch,
                    "sum_aee": best,
                    "config": cfg.as_dict(),
                },
                trial_dir / BEST,
            )
        save_checkpoint(trial_dir / CHECKPOINT, model, optimizer, scheduler, epoch, history, cfg)
        _write_metrics(history, trial_dir)
        per_seq = " ".join(f"{s.name} {s.aee:.3f}" for s in scores)
        log(
            f"trial {trial} epoch {epoch:3d}/{cfg.epochs}: loss {row['train_loss']:.4g} AEE "
            f"{per_seq} sum {row['sum_aee']:.3f} (best {best:.3f}) [{row['seconds']:.1f} s]"
        )
    return {"trial": trial, "best_sum_aee": best, "epochs": len(history)}


def _write_metrics(history: list[dict], trial_dir: Path) -> None:
    atomic_json(history, trial_dir / "metrics.json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(trial_dir / "metrics.csv", buf.getvalue().encode())
