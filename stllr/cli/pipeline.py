"""stllr pipeline: train → quantize → Lava → on-device adaptation → report, in one run folder.

Stages (each prints a one-line summary; finished stages are skipped on --resume):
  train       float S-TLLR training of the task's network (the demo's settings by default)
  quantize    8-bit post-training quantization (optionally after --qat-epochs of QAT),
              scored with the integer emulator, plus an accuracy-vs-weight-bits sweep
  cost        NeuroBench cost metrics per layer: synaptic operations, activation
              sparsity, parameter footprint
  lava        the deployed network in Lava (fixed_pt) on a few test samples: predictions
              and every output compared with the emulator; the float model in Lava
              (floating_pt) on the same samples, compared with torch in float64
  adaptation  the network meets a shifted condition (adaptation.scenario: noisy_sensor,
              sensor_noise, held_out_user) and adapts from a stream of labelled samples
              with only its third-factor port (adaptation.signal: host, or dfa / sdfa
              made on the device); before/after accuracy and learning curves in float, the
              fixed-point emulator and Lava (whose learned weights must equal the emulator's)
  report      report/report.html (self-contained, figures embedded) and report/report.md

--from-nir FILE replaces the training by a network imported from a NIR graph (written by
the toolkit, snnTorch, ...; docs/nir.md), fine-tuned for --set train.epochs=N epochs of
S-TLLR (0 by default); its input and output sizes must fit the task.

Without arguments it runs the SHD-like stand-in (generated once, nothing is downloaded)
in a few minutes on 2 CPU cores. --data PATH runs the real data set instead (task shd
by default); --task custom --data FILE runs a bring-your-own events file (docs/data.md).
Settings come from pipeline/configs/<task>.toml; --set changes any of them, e.g.
--set train.epochs=2 adaptation.samples=50.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options

STAGE_LIST = "train, quantize, cost, lava, adaptation, report"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pipeline",
        help="train, quantize, run in Lava, adapt on device and write a report, in one go",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  stllr pipeline                                  # SHD-like stand-in, a few minutes\n"
            "  stllr pipeline --resume                         # skip the finished stages\n"
            "  stllr pipeline --data /datasets                 # real SHD (/datasets/SHD/*.h5)\n"
            "  stllr pipeline --task gesture-standin           # VGG-9, DVS-Gesture-like stand-in\n"
            "  stllr pipeline --task gesture --data /datasets  # real DVS Gesture, held-out users\n"
            "  stllr pipeline --task custom --data events.h5   # your events file (docs/data.md)\n"
            "  stllr pipeline --qat-epochs 1 --out runs/p_qat --set adaptation.lr=2e-6\n"
            "  stllr pipeline --from-nir model.nir --set train.nir_dt=1e-4  # e.g. from snnTorch\n"
            "  stllr pipeline --resume --rerun-from adaptation --set adaptation.samples=200"
        ),
    )
    p.add_argument(
        "--task",
        default=None,
        help="task with a pipeline config in pipeline/configs/ (default: shd-standin, "
        "or shd with --data)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset root with the real files, or the .h5 file of --task custom",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="pipeline TOML (default: pipeline/configs/<task>.toml)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/pipeline_<task>)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out: finished stages are skipped, changed or damaged "
        "ones re-run",
    )
    p.add_argument(
        "--rerun-from",
        default=None,
        metavar="STAGE",
        help=f"with --resume: run this stage and every later one again ({STAGE_LIST}; "
        "flow tasks have no cost stage)",
    )
    p.add_argument("--skip-lava", action="store_true", help="no Lava runs (emulator only)")
    p.add_argument(
        "--qat-epochs",
        type=int,
        default=None,
        help="epochs of quantization-aware training before deployment (default: the config's, 0)",
    )
    p.add_argument(
        "--from-nir",
        type=Path,
        default=None,
        metavar="FILE",
        help="import the network from this NIR graph instead of training it "
        "(train.epochs: S-TLLR fine-tuning epochs, default 0; train.nir_dt: its time step)",
    )
    options.add_set_option(
        p, "SECTION.KEY=VALUE", "train.epochs=2 adaptation.samples=50", "config values"
    )
    p.set_defaults(run=run)
    return p


def _resolve(args: argparse.Namespace):
    """(config, run folder) from the arguments (:func:`pipeline.resolve.resolve_run`)."""
    from pipeline.resolve import resolve_run

    return resolve_run(
        task=args.task,
        data=args.data,
        config=args.config,
        out=args.out,
        resume=args.resume,
        rerun_from=args.rerun_from,
        skip_lava=args.skip_lava,
        qat_epochs=args.qat_epochs,
        from_nir=args.from_nir,
        overrides=[*args.set, *options.device_override(args, "train.device")],
    )


def run(args: argparse.Namespace) -> int:
    from pipeline import run_pipeline, stages_for

    cfg, out = _resolve(args)
    names = ", ".join(s.name for s in stages_for(cfg.train.task))
    print(f"stllr pipeline: task {cfg.train.task} → {out} (stages: {names})")
    summaries = run_pipeline(  # a failed start leaves no run folder (pipeline.runner)
        cfg,
        out,
        resume=args.resume or args.rerun_from is not None,
        rerun_from=args.rerun_from,
        progress=options.show_progress(args),
    )
    print(f"report: {out / summaries['report']['html']}")
    return 0
