"""stllr compare: float vs fixed-point accuracy of trained checkpoints over weight bit widths.

For each checkpoint (typically one per task): the float test accuracy, the accuracy of
post-training quantization (integer emulator) at every --bits width and, with
--qat-epochs N > 0, of quantization-aware fine-tuning (N epochs per width, from the
float weights) followed by the same quantization. With QAT, a float control is
fine-tuned the same N epochs without the quantizer (same batches and seeds): QAT's
delta_vs_control counts the extra training on both sides. A width at which a layer
cannot be represented is recorded as failed (with the reason), not an error.

Writes to --out (default: runs/compare):
  compare.json          rows task × method (float, float_control, ptq, qat) × bits →
                        accuracy (%), delta vs float and (QAT) vs the control
                        (percentage points), plus per-layer statistics and saturation
                        per bit width
  accuracy_vs_bits.png  one line per task, its float accuracy as a dashed line (the
                        control dash-dotted)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options
from stllr.cli.quantize import add_quant_options, check_quant_options, overrides


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        help="accuracy vs weight bits (PTQ, optional QAT) for one or more checkpoints",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  stllr compare runs/demo_stllr/trial_1/best.pt --bits 2 4 6 8\n"
            "  stllr compare runs/shd/trial_1/best.pt runs/gesture/trial_1/best.pt "
            "--qat-epochs 1 --out runs/compare"
        ),
    )
    p.add_argument(
        "checkpoints", type=Path, nargs="+", metavar="CHECKPOINT", help="best.pt or checkpoint.pt"
    )
    add_quant_options(p, bits_nargs="+")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/compare"),
        help="output folder (default: runs/compare)",
    )
    p.set_defaults(run=run)
    return p


def _labels(cfgs) -> list[str]:
    """The task name, made unique with the run name (and an index) where tasks repeat."""
    tasks = [c.task for c in cfgs]
    labels = [
        t if tasks.count(t) == 1 else f"{t} [{c.name}]" for t, c in zip(tasks, cfgs, strict=True)
    ]
    return [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def run(args: argparse.Namespace) -> int:
    from quantization import report
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.devices import resolve_device
    from stllr.run import atomic_json

    bits = sorted(set(args.bits))
    check_quant_options(args, bits)
    if args.qat_epochs > 0:
        report.qat_module()
    missing = [str(p) for p in args.checkpoints if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {', '.join(missing)} does not exist")
    extra = [*overrides(args), *options.device_override(args)]
    loaded = [load_checkpoint(p, extra) for p in args.checkpoints]
    labels = _labels([ck.cfg for ck in loaded])
    progress = options.show_progress(args)
    entries = []
    for ck, label in zip(loaded, labels, strict=True):
        print(f"{label}: {ck.path} (epoch {ck.epoch}), {len(ck.data.test)} test samples")
        res = report.compare_checkpoint(
            ck.model,
            ck.mode,
            ck.data,
            ck.cfg,
            bits,
            args.percentile,
            args.calib_batches,
            args.qat_epochs,
            progress,
            print,
            device=resolve_device(ck.cfg.device, "device"),  # the emulator's
        )
        entries.append(
            {
                "label": label,
                "task": ck.cfg.task,
                "run": ck.cfg.name,
                "checkpoint": str(ck.path),
                "epoch": ck.epoch,
                **res,
            }
        )
    result = {
        "bits": bits,
        "percentile": args.percentile,
        "calib_batches": args.calib_batches,
        "qat_epochs": args.qat_epochs,
        "emulator_delay": 0,
        "accuracy_unit": "percent of the test split; delta_vs_float in percentage points",
        "rows": report.comparison_rows(entries),
        "checkpoints": entries,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_json(result, args.out / "compare.json")
    report.plot_accuracy_vs_bits(entries, args.out / "accuracy_vs_bits.png")
    print()
    print(report.format_comparison(entries, bits))
    print(f"\nwrote {args.out / 'compare.json'} and {args.out / 'accuracy_vs_bits.png'}")
    return 0
