"""stllr demo: train the SHD-shaped recurrent network on the built-in stand-in.

Generates (once, deterministically) an SHD-like data set in SHD's hdf5 layout
(700 channels, 20 classes, held-out speakers in the test split), bins it into
10 ms frames and trains the 700 → hidden recurrent → 20 network with the chosen
learning rule, printing the test accuracy after every epoch. Checkpoints,
metrics (JSON, CSV) and learning curves go to <out-dir>/<name>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options
from stllr.errors import UserError

METHODS = {
    "stllr": ("stllr", "BP"),
    "stllr-dfa": ("stllr", "DFA"),
    "bptt": ("bptt", "BP"),
    "ottt": ("ottt", "BP"),
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="train the SHD-shaped network with S-TLLR on built-in stand-in data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: stllr demo --method stllr-dfa --epochs 3 --out-dir runs",
    )
    p.add_argument(
        "--method",
        choices=sorted(METHODS),
        default="stllr",
        help="S-TLLR with a BP or DFA learning signal, BPTT, or OTTT (default: stllr)",
    )
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default: 6)")
    p.add_argument(
        "--hidden", type=int, default=256, help="recurrent units (the paper: 450; default: 256)"
    )
    p.add_argument(
        "--window",
        type=int,
        default=90,
        help="S-TLLR learning window, the last steps with a signal "
        "(the paper's SHD setting: 90 of 100; default: 90)",
    )
    p.add_argument("--train-samples", type=int, default=1000, help="stand-in training samples")
    p.add_argument("--test-samples", type=int, default=400, help="stand-in test samples")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the model and the shuffling")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the stand-in is generated (default: ~/.cache/stllr/shd_standin)",
    )
    p.add_argument("--out-dir", type=Path, default=Path("runs"), help="run folder root")
    p.add_argument("--name", default=None, help="run name (default: demo_<method>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    p.set_defaults(run=run)
    return p


def config_from_args(args: argparse.Namespace):
    from stllr.config import ExperimentConfig

    method, feedback = METHODS[args.method]
    return ExperimentConfig(
        name=args.name or f"demo_{args.method.replace('-', '_')}",
        task="shd-standin",
        arch="shd_rsnn",
        method=method,
        feedback=feedback,
        factors=(0.5, 1.0, 1.0, 1.0),
        hidden=args.hidden,
        window=args.window,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        val_batch_size=128,
        seed=args.seed,
        data=str(args.data_dir) if args.data_dir else "",
        standin_train=args.train_samples,
        standin_test=args.test_samples,
        out_dir=str(args.out_dir),
        device=options.device_option(args) or "auto",
    )


def run(args: argparse.Namespace) -> int:
    from stllr.run import run_experiment

    for name in ("epochs", "hidden", "train_samples", "test_samples", "batch_size", "window"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    cfg = config_from_args(args)
    print(
        f"stllr demo: {args.method} on the SHD-like stand-in "
        f"(700 → {cfg.hidden} recurrent → 20, window {cfg.window}, {cfg.epochs} epochs)"
    )
    summary = run_experiment(cfg, resume=args.resume, progress=options.show_progress(args))
    trial = summary["trials"][0]
    print(
        f"final test accuracy {trial['final_test_acc']:.1f}% "
        f"(best {trial['best_test_acc']:.1f}%, chance 5.0%); "
        f"run folder {Path(cfg.out_dir) / cfg.name}"
    )
    return 0
