"""stllr train: run an experiment from a TOML config, with overrides.

Every key of the config can be overridden with --set key=value (lists as
comma-separated values). Runs are written to <out_dir>/<name>/ with checkpoints
after every epoch; --resume continues an interrupted run bit-identically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options


def add_parser(sub) -> argparse.ArgumentParser:
    from stllr.config import field_types

    keys = ", ".join(sorted(field_types()))
    p = sub.add_parser(
        "train",
        help="train a model from an experiments/*.toml config",
        description=__doc__ + f"\nConfig keys: {keys}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  stllr train experiments/shd_stllr_dfa.toml --set data=/datasets\n"
            "  stllr train --task custom --data events.h5 --set arch=vgg9 frame_us=50000\n"
            "  stllr train experiments/shd_standin_stllr.toml --set epochs=3 trials=2\n"
            "  stllr train experiments/shd_standin_stllr.toml --resume\n"
            "  stllr train experiments/gesture_stllr.toml --device cuda:1\n"
            "  torchrun --nproc_per_node 2 -m stllr.cli.main train experiments/gesture_stllr.toml\n"
            "  (several machines: README.md, 'Devices')"
        ),
    )
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="TOML config file (see experiments/); without one, the defaults",
    )
    p.add_argument(
        "--task",
        default=None,
        help="shortcut for --set task=...: shd, ssc, gesture, cifar10dvs, ncaltech101, "
        "ntidigits, gesture32, dvsplane, custom, or a *-standin task",
    )
    p.add_argument(
        "--data",
        default=None,
        help="shortcut for --set data=...: dataset root, or the .h5 file of --task custom",
    )
    options.add_set_option(p, "KEY=VALUE", "lr=1e-3 factors=0.2,0.75,-1,1", "config values")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in <out_dir>/<name> from its last checkpoint",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from stllr import distributed
    from stllr.config import ExperimentConfig, apply_overrides, load_config
    from stllr.devices import check_device_spec
    from stllr.run import run_experiment

    shortcuts = [f"{k}={v}" for k, v in (("task", args.task), ("data", args.data)) if v]
    overrides = [*shortcuts, *args.set, *options.device_override(args)]
    if args.config is None:
        cfg = apply_overrides(ExperimentConfig(), overrides)
    else:
        cfg = load_config(args.config, overrides)
    check_device_spec(cfg.device, "config device")
    # no-op unless launched by torchrun with WORLD_SIZE > 1; NCCL on GPUs, gloo on CPUs
    distributed.init_from_env(cfg.device)
    run_experiment(cfg, resume=args.resume, progress=options.show_progress(args))
    return 0
