"""Stage ``train``: float S-TLLR training of the task's network (:func:`stllr.run.run_experiment`).

Writes ``<run>/train/`` as ``stllr train`` does (``config.json``, ``summary.json``,
``trial_1/{best.pt, checkpoint.pt, metrics.json, metrics.csv, learning_curves.png}``).
The later stages deploy ``best.pt`` (the epoch with the best test accuracy). An
interrupted training continues from its last finished epoch, bit-identically.
"""

from __future__ import annotations

import json

from pipeline import artefacts as A
from pipeline.runner import Context, StageOutput, read_marker
from stllr.errors import UserError


def run(ctx: Context) -> StageOutput:
    from stllr.run import CHECKPOINT, run_experiment

    cfg = ctx.cfg.train
    resume = (ctx.run_dir / "train" / "trial_1" / CHECKPOINT).is_file()
    result = run_experiment(cfg, resume=resume, progress=ctx.progress, log=ctx.log, data=ctx.data)
    trial = result["trials"][0]
    history = json.loads((ctx.run_dir / A.TRAIN_METRICS).read_text())
    best_epoch = max(history, key=lambda m: m["test_acc"])["epoch"]
    data = ctx.data
    summary = {
        "task": cfg.task,
        "arch": cfg.arch,
        "method": cfg.method,
        "feedback": cfg.feedback,
        "hidden": cfg.hidden,
        "epochs": trial["epochs"],
        "final_test_acc": trial["final_test_acc"],
        "best_test_acc": trial["best_test_acc"],
        "best_epoch": best_epoch,
        "train_samples": len(data.train),
        "test_samples": len(data.test),
        "data": data.description,
        "history": history,
    }
    rule = "S-TLLR" if cfg.method.startswith("stllr") else cfg.method.upper()
    line = (
        f"float {rule} ({cfg.feedback}) on {cfg.task}, {trial['epochs']} epoch(s): test "
        f"{trial['final_test_acc']:.1f}% (best {trial['best_test_acc']:.1f}% at epoch "
        f"{best_epoch}; deployed), chance {100.0 / data.num_classes:.1f}%"
    )
    files = (A.BEST, A.TRAIN_METRICS, A.TRAIN_CURVES, "train/config.json")
    return StageOutput(summary, line, files)


def refuse_silent_retrain(stage, status: str, ctx: Context) -> None:
    """On ``--resume``, a finished training whose settings changed is not redone silently."""
    if stage.name != "train" or status != "changed":
        return
    marker = read_marker(ctx.run_dir, "train") or {}
    stored = marker.get("config", {}).get("train", {})
    current = json.loads(json.dumps(ctx.cfg.settings()["train"]))
    keys = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    diff = ", ".join(f"{k}: {stored.get(k)!r} → {current.get(k)!r}" for k in keys)
    raise UserError(
        f"{ctx.run_dir}: the finished training used other settings ({diff or 'inputs changed'}); "
        "use another --out, or pass --rerun-from train to retrain"
    )
