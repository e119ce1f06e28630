"""stllr quantize: post-training quantization of a trained checkpoint (+ optional QAT).

Loads the checkpoint as `stllr eval` does, calibrates the input format on a few
shuffled training batches, quantizes every layer's weights to --bits signed bits with
one power-of-two exponent per layer (range: max |W|, or the --percentile of |W|), and
scores the integer network with the integer emulator on the test split.

Writes to --out (default: a quantized/ folder next to the checkpoint):
  quantized.pt        the integer network (quantization.network.QNetwork.save)
  quantization.json   options, input format, per-layer reports (exponent, clipped
                      weights, RMS error), float and emulator accuracy (%), saturation

With --qat-epochs N > 0, a copy of the model is first fine-tuned for N epochs with
quantization-aware training at --bits; quantized.pt then holds the QAT network (the
JSON records PTQ and QAT side by side). A second copy is fine-tuned as long without
the quantizer (same batches and seeds), the float control: QAT's delta_vs_control
counts the extra training on both sides.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options
from stllr.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "quantize",
        help="quantize a trained checkpoint to fixed point and score it with the emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  stllr quantize runs/demo_stllr/trial_1/best.pt\n"
            "  stllr quantize runs/demo_stllr/trial_1/best.pt --bits 4 --percentile 99.9 "
            "--out runs/q4\n"
            "  stllr quantize runs/gesture/trial_1/best.pt --data /datasets --qat-epochs 2"
        ),
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or checkpoint.pt written by train")
    add_quant_options(p, bits_nargs=None)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: quantized/ next to the checkpoint)",
    )
    p.set_defaults(run=run)
    return p


def add_quant_options(p: argparse.ArgumentParser, bits_nargs: str | None) -> None:
    """Options shared by quantize and compare."""
    if bits_nargs is None:
        p.add_argument("--bits", type=int, default=8, help="signed weight bits, 2..16 (default: 8)")
    else:
        p.add_argument(
            "--bits",
            type=int,
            nargs=bits_nargs,
            default=[2, 3, 4, 5, 6, 7, 8],
            metavar="B",
            help="weight bit widths to sweep, each 2..16 (default: 2 3 4 5 6 7 8)",
        )
    p.add_argument(
        "--percentile",
        type=float,
        default=100.0,
        help="weight range per layer: 100 = max |W| (nothing clipped), e.g. 99.9 clips "
        "outliers (default: 100)",
    )
    p.add_argument(
        "--calib-batches",
        type=int,
        default=4,
        help="training batches used to calibrate the input format (default: 4)",
    )
    p.add_argument(
        "--qat-epochs",
        type=int,
        default=0,
        help="epochs of quantization-aware fine-tuning; 0 = PTQ only (default: 0)",
    )
    p.add_argument("--data", default=None, help="dataset root (shortcut for --set data=...)")
    options.add_set_option(
        p, "KEY=VALUE", "data=/datasets", "config values stored in the checkpoint"
    )


def check_quant_options(args: argparse.Namespace, bits: list[int]) -> None:
    """One-line errors for out-of-range options (before anything is loaded)."""
    from quantization.report import MAX_BITS, MIN_BITS

    for b in bits:
        if not MIN_BITS <= b <= MAX_BITS:
            raise UserError(f"--bits must be in {MIN_BITS}..{MAX_BITS}, got {b}")
    if not 0.0 < args.percentile <= 100.0:
        raise UserError(f"--percentile must be in (0, 100], got {args.percentile:g}")
    if args.calib_batches < 1:
        raise UserError(f"--calib-batches must be ≥ 1, got {args.calib_batches}")
    if args.qat_epochs < 0:
        raise UserError(f"--qat-epochs must be ≥ 0, got {args.qat_epochs}")


def overrides(args: argparse.Namespace) -> list[str]:
    return ([f"data={args.data}"] if args.data else []) + list(args.set)


def run(args: argparse.Namespace) -> int:
    from quantization import report
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.devices import resolve_device
    from stllr.run import atomic_json

    check_quant_options(args, [args.bits])
    if args.qat_epochs > 0:
        report.qat_module()  # a clear error before any work when QAT is missing
    ck = load_checkpoint(args.checkpoint, [*overrides(args), *options.device_override(args)])
    cfg, data = ck.cfg, ck.data
    device = resolve_device(cfg.device, "device")  # the emulator's; float work stays on CPU
    out = args.out if args.out is not None else args.checkpoint.parent / "quantized"
    progress = options.show_progress(args)
    print(
        f"{cfg.task}: {args.checkpoint} (epoch {ck.epoch}), {len(data.test)} test samples; "
        f"{args.bits}-bit weights, percentile {args.percentile:g}"
    )
    calib = report.calibration_batches(data.train, args.calib_batches, cfg.batch_size, cfg.seed)
    f_acc = report.float_accuracy(ck.model, data.test, cfg.val_batch_size, progress)
    ptq = report.quantize_and_evaluate(
        ck.model,
        calib,
        data.test,
        cfg.val_batch_size,
        args.bits,
        args.percentile,
        "ptq",
        progress,
        print,
        device=device,
    )
    if ptq.error is not None:
        raise UserError(f"{args.bits}-bit PTQ of {args.checkpoint} failed: {ptq.error}")
    qat = control = None
    if args.qat_epochs > 0:
        qat = report.qat_and_evaluate(
            ck.model,
            ck.mode,
            data,
            cfg,
            calib,
            args.bits,
            args.percentile,
            args.qat_epochs,
            progress,
            print,
            device=device,
        )
        if qat.error is not None:
            raise UserError(f"{args.bits}-bit QAT of {args.checkpoint} failed: {qat.error}")
        control = report.float_control(
            ck.model, ck.mode, data, cfg, args.qat_epochs, progress, print
        )
    saved = qat if qat is not None else ptq
    out.mkdir(parents=True, exist_ok=True)
    saved.qnet.save(out / "quantized.pt")
    result = {
        "checkpoint": str(args.checkpoint),
        "task": cfg.task,
        "run": cfg.name,
        "epoch": ck.epoch,
        "quantization": {
            "weight_bits": args.bits,
            "percentile": args.percentile,
            "calib_batches": len(calib),
            "calib_batch_size": cfg.batch_size,
            "qat_epochs": args.qat_epochs,
            "emulator_delay": 0,
            "eval_batch_size": cfg.val_batch_size,
        },
        "experiment": cfg.as_dict(),
        "input_format": ptq.input_format,
        "test_samples": len(data.test),
        "float_accuracy": f_acc,
        **report.method_results(f_acc, ptq, qat, control),
        "saved": {
            "file": "quantized.pt",
            "method": saved.method,
            "accuracy": saved.accuracy,
            "delta_vs_float": saved.accuracy - f_acc,
        },
    }
    atomic_json(result, out / "quantization.json")
    fmt = ptq.input_format
    print(
        f"input: integers {fmt['lo']}..{fmt['hi']} × 2^{fmt['exp']}; "
        f"calibrated on {len(calib)} training batch(es) of ≤ {cfg.batch_size}"
    )
    print(report.format_layer_table(saved.layers))
    print(report.format_saturation(saved.saturation))
    line = f"float {f_acc:.2f}%  →  PTQ {ptq.accuracy:.2f}% ({ptq.accuracy - f_acc:+.2f} pts)"
    if qat is not None:
        line += (
            f", QAT ({args.qat_epochs} epoch(s)) {qat.accuracy:.2f}% "
            f"({qat.accuracy - f_acc:+.2f} pts; {qat.accuracy - control['accuracy']:+.2f} vs "
            f"the float control {control['accuracy']:.2f}%; fake-quantized float "
            f"{qat.qat['fake_quant_accuracy']:.2f}%)"
        )
    print(line + "  [integer emulator, test split]")
    print(f"wrote {out / 'quantized.pt'} ({saved.method.upper()}) and {out / 'quantization.json'}")
    return 0
