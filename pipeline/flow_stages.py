"""``stllr pipeline --task mvsec-standin``: the flow task's stages (docs/flow.md §11).

The runner, run folder, done-markers, resume and re-run rules are the classification
pipeline's (:mod:`pipeline.runner`); so are the config tables (plus ``[flow]``,
:mod:`pipeline.flow_config`), the artefact names (:mod:`pipeline.artefacts`) and the
report's document model. What differs is what a stage computes, since a flow network is
scored by the summed AEE of docs/flow.md §3 rather than an accuracy:

    train       FSFN trained by stllr.flow.run (S-TLLR, best.pt = lowest summed AEE)
    quantize    8-bit PTQ, summed AEE float vs integer emulator   (pipeline.flow_deploy)
    lava        Lava fixed_pt vs the emulator (bit-exact), floating_pt vs torch
    adaptation  on-device learning of the finest flow head on a shifted sensor
                                                                    (pipeline.flow_adapt)
    report      report.html / report.md: flow pictures, AEE tables  (pipeline.flow_report)

The cost stage (NeuroBench counts of classification samples) is not run for flow.
"""

from __future__ import annotations

import functools
import json

from pipeline import artefacts as A
from pipeline import flow_adapt, flow_data, flow_deploy, flow_report, report
from pipeline.runner import Context, Stage, StageOutput
from pipeline.train import check_interrupted


def train(ctx: Context) -> StageOutput:
    """Stage ``train``: the FSFN float training, resumable like the classification one."""
    from stllr.flow.run import run_flow_experiment
    from stllr.run import CHECKPOINT

    out = ctx.stage_dir("train")
    cfg = ctx.cfg.train.replace(out_dir=str(out.parent), name=out.name)
    resume = (out / "trial_1" / CHECKPOINT).is_file()
    if resume:
        check_interrupted(out, cfg, discard=ctx.status == "forced")
        resume = (out / "trial_1" / CHECKPOINT).is_file()
    data = flow_data.load(ctx)
    result = run_flow_experiment(cfg, resume=resume, progress=ctx.progress, log=ctx.log, data=data)
    history = json.loads(ctx.path(A.TRAIN_METRICS).read_text())
    best = min(history, key=lambda m: m["sum_aee"])
    summary = {
        "task": cfg.task,
        "arch": cfg.arch,
        "method": cfg.method,
        "epochs": len(history),
        "best_sum_aee": best["sum_aee"],
        "best_epoch": best["epoch"],
        "final_sum_aee": history[-1]["sum_aee"],
        "train_windows": len(data.train),
        "test_windows": {n: len(d) for n, d in data.test.items()},
        "data": data.description,
        "history": history,
        "trials": result["trials"],
    }
    rule = "S-TLLR" if cfg.method.startswith("stllr") else cfg.method.upper()
    line = (
        f"float {rule} FSFN on {cfg.task}, {len(history)} epoch(s): summed AEE "
        f"{history[-1]['sum_aee']:.3f} (best {best['sum_aee']:.3f} at epoch {best['epoch']}; "
        "deployed)"
    )
    return StageOutput(summary, line, (A.BEST, A.TRAIN_METRICS, "train/config.json"))


def _standin(cfg) -> dict:
    """The ``[flow]`` keys the original condition's windows depend on (the shift's keys
    re-run the adaptation stage only)."""
    f = cfg.flow
    return {"standin": [f.size, f.train_frames, f.test_frames, f.x_speed]}


def _standin_lava(cfg) -> dict:
    return {**_standin(cfg), "lava": cfg.lava.enabled}


STAGES: tuple[Stage, ...] = (
    Stage("train", "float FSFN training (S-TLLR)", train, (), ("train",), extra=_standin,
          keeps_staging=True),
    Stage("quantize", "8-bit PTQ, summed AEE float vs integer emulator", flow_deploy.quantize,
          ("train",), ("train", "quantize"), extra=_standin),
    Stage("lava", "Lava: fixed_pt vs the emulator, floating_pt vs torch", flow_deploy.lava,
          ("train", "quantize"), ("train", "lava"), extra=_standin_lava),
    Stage("adaptation", "on-device learning of the flow head on a shifted sensor",
          flow_adapt.run, ("train", "quantize"), ("train", "adaptation", "flow"),
          extra=_standin_lava),
    Stage("report", "HTML and markdown report",
          functools.partial(report.run, outline=flow_report.build),
          ("train", "quantize", "lava", "adaptation"), ("report",)),
)  # fmt: skip
STAGE_NAMES = tuple(s.name for s in STAGES)
