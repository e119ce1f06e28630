"""``stllr pipeline``: train → quantize → cost → Lava → on-device adaptation → report.

One run folder holds every stage's artefacts; each stage is a function of the run folder
and the config (:class:`pipeline.config.PipelineConfig`) that writes its files and returns
a small JSON summary (:class:`pipeline.runner.StageOutput`). The runner
(:mod:`pipeline.runner`) skips finished stages (done-markers with a fingerprint of the
settings and inputs, and the artefacts' sha256), so a run resumes from any finished stage.

Layout of ``<run>/``::

    pipeline.json            the resolved config; pipeline_summary.json: every stage's summary
    train/                   stllr train's run folder (trial_1/best.pt is deployed)
    quantize/                quantized.pt (the deployed QNetwork), quantization.json, sweep.json
    cost/cost.json           NeuroBench-style synaptic operations, sparsity, footprint per layer
    lava/                    lava.json (Lava fixed_pt vs emulator, Lava floating_pt vs torch
                             float64, accuracies), sample.npz (spike raster)
    adaptation/              adaptation.json (scenario, before/after, curves, parity), weights.pt
    report/                  report.html (self-contained), report.md, figures/*.png
    <stage>/stage.json       the done-marker; <stage>/summary.json its summary

Dependency direction: this package sits on top (stllr ← quantization ← lava_models ←
pipeline); it imports Lava only inside the stages that run it, and the CLI imports this
package only inside ``stllr pipeline``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import adaptation, cost, lava_inference, quantize, report, train
from pipeline.config import PipelineConfig
from pipeline.runner import Log, Stage, run_stages, sha256_file


def _nir_digest(cfg: PipelineConfig) -> dict:
    """The imported graph's sha256 (arch nir): a changed file re-runs the training stage."""
    if cfg.train.arch != "nir":
        return {}
    return {"nir_sha256": sha256_file(Path(cfg.train.nir_file))}


STAGES: tuple[Stage, ...] = (
    Stage(
        "train",
        "float S-TLLR training (or import from NIR)",
        train.run,
        (),
        ("train",),
        extra=_nir_digest,
        keeps_staging=True,
    ),
    Stage(
        "quantize",
        "post-training quantization and bit sweep",
        quantize.run,
        ("train",),
        ("quantize",),
    ),
    Stage("cost", "neuromorphic cost metrics (NeuroBench)", cost.run, ("quantize",), ("cost",)),
    Stage(
        "lava",
        "Lava inference: fixed_pt vs the integer emulator, floating_pt vs torch",
        lava_inference.run,
        ("train", "quantize"),
        ("lava", "report"),
    ),
    Stage(
        "adaptation",
        "on-device adaptation to a shifted condition",
        adaptation.run,
        ("train", "quantize"),
        ("adaptation",),
        extra=lambda cfg: {"lava": cfg.lava.enabled, "lava_samples": cfg.lava.samples},
    ),
    Stage(
        "report",
        "HTML and markdown report",
        report.run,
        ("train", "quantize", "cost", "lava", "adaptation"),
        ("report",),
    ),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stages_for(task: str) -> tuple[Stage, ...]:
    """The stages a run of ``task`` goes through: a flow task's are those of
    :mod:`pipeline.flow_stages` (no cost stage, AEE instead of accuracy), the others'
    :data:`STAGES`."""
    from stllr.tasks import is_flow_task

    if is_flow_task(task):
        from pipeline.flow_stages import STAGES as flow_stages

        return flow_stages
    return STAGES


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    rerun_from: str | None = None,
    progress: bool = True,
    log: Log = print,
) -> dict:
    """Run every stage that is not finished in ``run_dir``; returns the stage summaries."""
    return run_stages(
        stages_for(cfg.train.task),
        cfg,
        Path(run_dir),
        resume=resume,
        rerun_from=rerun_from,
        progress=progress,
        log=log,
        before_stage=train.refuse_silent_retrain,
    )


__all__ = ["STAGES", "STAGE_NAMES", "PipelineConfig", "run_pipeline", "stages_for"]
