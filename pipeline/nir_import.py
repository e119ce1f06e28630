"""The train stage of a run from a NIR graph (``stllr pipeline --from-nir FILE``).

The config's ``train.arch`` is ``nir`` and ``train.nir_file`` the graph: the network is
imported as the toolkit model class it fits (:mod:`stllr.nir_interop`, docs/nir.md) and,
with ``train.epochs`` > 0, fine-tuned with S-TLLR exactly as a trained network would be
(:mod:`pipeline.train`); with ``train.epochs = 0`` it is deployed as imported. Either way
the stage writes what a training writes (``train/trial_1/best.pt``, ``metrics.json``,
``config.json``), so the later stages run unchanged, plus ``train/model.nir`` (the graph,
copied: the later stages build the model from it) and, in its summary, where the network
came from: the file, its sha256, the framework that wrote it (when its metadata says) and
the time step used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import artefacts as A
from pipeline.runner import Context, StageOutput, sha256_file
from stllr.run import atomic_json, atomic_save


def provenance(ctx: Context, cfg) -> dict:
    """Copy the graph into the stage folder, build the model once (its sizes are checked
    against the task's there) and say where it came from."""
    from stllr.models.factory import build_model
    from stllr.nir_interop.graph import producer
    from stllr.nir_interop.load import read_graph
    from stllr.nir_interop.time_mapping import DEFAULT_DT

    path = Path(cfg.nir_file)
    graph = read_graph(path)
    model, _ = build_model(cfg, ctx.data.input_shape, ctx.data.num_classes)
    shutil.copyfile(path, ctx.path(A.NIR_COPY))
    stated = (graph.metadata or {}).get("dt")
    dt = cfg.nir_dt or (float(stated) if stated is not None else DEFAULT_DT)
    return {
        "file": str(path.resolve()),
        "sha256": sha256_file(path),
        "producer": producer(graph.metadata),
        "dt": dt,
        "dt_from": "train.nir_dt"
        if cfg.nir_dt
        else ("the graph" if stated is not None else "default"),
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def describe(nir: dict) -> str:
    """One line: the file, who wrote it, its hash and the class it became."""
    who = nir["producer"] or "a framework its metadata does not name"
    return (
        f"NIR graph {Path(nir['file']).name} (written by {who}; sha256 {nir['sha256'][:12]}…) "
        f"imported as {nir['model']} at dt = {nir['dt']:g} s"
    )


def imported_only(ctx: Context, cfg, nir: dict) -> StageOutput:
    """``train.epochs = 0``: the imported network, scored on the test split, is deployed."""
    from stllr.models.factory import build_model
    from stllr.trainer import run_epoch

    data = ctx.data
    out = ctx.stage_dir("train")
    model, _ = build_model(cfg, data.input_shape, data.num_classes)
    model.eval()
    loss, acc = run_epoch(model, data.test, cfg.val_batch_size, progress=ctx.progress, desc="test")
    trial = out / "trial_1"
    trial.mkdir(exist_ok=True)
    atomic_json(cfg.as_dict(), out / "config.json")
    state = {"model": model.state_dict(), "epoch": 0, "test_acc": acc, "config": cfg.as_dict()}
    atomic_save(state, trial / "best.pt")
    atomic_json([], trial / "metrics.json")
    summary = {
        "task": cfg.task, "arch": cfg.arch, "method": cfg.method, "feedback": cfg.feedback,
        "hidden": None, "epochs": 0, "final_test_acc": acc, "best_test_acc": acc,
        "best_epoch": 0, "test_loss": loss, "train_samples": len(data.train),
        "test_samples": len(data.test), "data": data.description, "history": [], "nir": nir,
    }  # fmt: skip
    line = (
        f"{describe(nir)}, not fine-tuned: float test {acc:.1f}% (deployed), chance "
        f"{100.0 / data.num_classes:.1f}%"
    )
    files = (A.BEST, A.TRAIN_METRICS, A.NIR_COPY, "train/config.json")
    return StageOutput(summary, line, files)
