"""Stage ``train``: float S-TLLR training of the task's network (:func:`stllr.run.run_experiment`).

Writes ``<run>/train/`` as ``stllr train`` does (``config.json``, ``summary.json``,
``trial_1/{best.pt, checkpoint.pt, metrics.json, metrics.csv, learning_curves.png}``).
The later stages deploy ``best.pt`` (the epoch with the best test accuracy). Training
runs in the stage's staging folder (``<run>/.staging/train/``, see :mod:`pipeline.runner`);
an interrupted training continues there from its last finished epoch, bit-identically,
when run again with the same settings. A finished training is replaced only when asked
(``--rerun-from train``), and only once the new one has finished. With ``arch = "nir"``
(``stllr pipeline --from-nir``) the network is imported from a NIR graph and trained
only ``train.epochs`` of S-TLLR fine-tuning, none by default (:mod:`pipeline.nir_import`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline import artefacts as A
from pipeline import nir_import
from pipeline.runner import Context, StageOutput, damaged_artefacts, read_marker
from stllr.errors import UserError
from stllr.run import MAY_CHANGE


def run(ctx: Context) -> StageOutput:
    from stllr.run import CHECKPOINT, run_experiment

    out = ctx.stage_dir("train")
    cfg = ctx.cfg.train.replace(out_dir=str(out.parent), name=out.name)
    nir = nir_import.provenance(ctx, cfg) if cfg.arch == "nir" else None
    if nir is not None and cfg.epochs == 0:
        return nir_import.imported_only(ctx, cfg, nir)
    resume = (out / "trial_1" / CHECKPOINT).is_file()
    if resume:
        check_interrupted(out, cfg, discard=ctx.status == "forced")
        resume = (out / "trial_1" / CHECKPOINT).is_file()
    result = run_experiment(cfg, resume=resume, progress=ctx.progress, log=ctx.log, data=ctx.data)
    trial = result["trials"][0]
    history = json.loads(ctx.path(A.TRAIN_METRICS).read_text())
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
    files = (A.BEST, A.TRAIN_METRICS, A.TRAIN_CURVES, "train/config.json")
    if nir is not None:
        summary["nir"] = nir
        files = (*files, A.NIR_COPY)
    line = (
        (f"{nir_import.describe(nir)}, fine-tuned: " if nir is not None else "")
        + f"float {rule} ({cfg.feedback}) on {cfg.task}, {trial['epochs']} epoch(s): test "
        f"{trial['final_test_acc']:.1f}% (best {trial['best_test_acc']:.1f}% at epoch "
        f"{best_epoch}; deployed), chance {100.0 / data.num_classes:.1f}%"
    )
    return StageOutput(summary, line, files)


def check_interrupted(out: Path, cfg, discard: bool) -> None:
    """An interrupted training in ``out`` continues only with the settings it was started
    with (the number of epochs aside); with other settings it is discarded when the user
    asked for a retrain (``discard``), else the run stops and says why."""
    path = out / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    current = json.loads(json.dumps(cfg.as_dict()))
    keys = sorted(k for k in current if k not in MAY_CHANGE and stored.get(k) != current[k])
    if not keys:
        return
    if discard:
        shutil.rmtree(out)
        out.mkdir()
        return
    diff = ", ".join(f"{k}: {stored.get(k)!r} → {current[k]!r}" for k in keys)
    raise UserError(
        f"{out} holds an interrupted training with other settings ({diff}); resume it with "
        "those settings, or pass --rerun-from train to discard it and train anew"
    )


def refuse_silent_retrain(stage, status: str, ctx: Context) -> None:
    """On ``--resume``, a finished training is not replaced unless asked
    (``--rerun-from train``): neither when its settings changed nor when one of its files
    (``best.pt``, the metrics) was modified or deleted, since that would throw away its
    checkpoint."""
    if stage.name != "train" or status not in ("changed", "damaged"):
        return
    marker = read_marker(ctx.run_dir, "train") or {}
    if status == "damaged":
        bad = damaged_artefacts(ctx.run_dir, marker)
        raise UserError(
            f"{ctx.run_dir}: the finished training's {', '.join(bad)} is missing or was "
            "modified after the stage finished; restore it, or pass --rerun-from train to "
            "retrain (train/ is kept until the new training has finished)"
        )
    stored = marker.get("config", {}).get("train", {})
    current = json.loads(json.dumps(ctx.cfg.settings()["train"]))
    keys = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    diff = ", ".join(f"{k}: {stored.get(k)!r} → {current.get(k)!r}" for k in keys)
    raise UserError(
        f"{ctx.run_dir}: the finished training used other settings ({diff or 'inputs changed'}); "
        "use another --out, or pass --rerun-from train to retrain"
    )
