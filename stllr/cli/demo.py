"""stllr demo: train the SHD-shaped recurrent network on the built-in stand-in.

Generates (once, deterministically from ``--seed``) an SHD-like data set in SHD's
hdf5 layout, bins it into 10 ms frames, trains with the chosen method and prints
per-epoch and final test accuracy. Metrics go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stllr"


def add_parser(sub) -> None:
    from stllr.shd_methods import SHD_METHODS

    p = sub.add_parser(
        "demo",
        help="train the SHD-shaped network with S-TLLR on built-in stand-in data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: stllr demo --method bptt --epochs 5 --out runs/demo.json",
    )
    p.add_argument(
        "--method",
        choices=SHD_METHODS,
        default="stllr",
        help="learning rule: S-TLLR with BP or DFA signal, BPTT, or OTTT (default: stllr)",
    )
    p.add_argument("--epochs", type=int, default=6, help="training epochs (default: 6)")
    p.add_argument(
        "--hidden", type=int, default=256, help="recurrent units (paper: 450; default 256)"
    )
    p.add_argument("--train-samples", type=int, default=1000, help="stand-in training samples")
    p.add_argument("--test-samples", type=int, default=400, help="stand-in test samples")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument(
        "--window",
        type=int,
        default=10,
        help="S-TLLR learning window: number of last steps with a signal (default 10)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the model")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR / "shd_standin",
        help=f"where the stand-in is generated (default: {DEFAULT_DATA_DIR}/shd_standin)",
    )
    p.add_argument("--out", type=Path, default=None, help="write metrics as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from stllr.data.shd_frames import standin_shd_tensors
    from stllr.shd_methods import build_shd_model
    from stllr.trainer import fit

    for name in ("epochs", "hidden", "train_samples", "test_samples", "batch_size", "window"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    print(f"[1/3] stand-in SHD data in {args.data_dir} (seed {args.seed})", flush=True)
    data = standin_shd_tensors(
        args.data_dir, n_train=args.train_samples, n_test=args.test_samples, seed=args.seed
    )
    steps = max(s.shape[0] for s in data.train_frames)
    print(
        f"      {len(data.train_frames)} train / {len(data.test_frames)} test samples, "
        f"700 channels, 20 classes, up to T = {steps} frames of 10 ms",
        flush=True,
    )

    model, mode = build_shd_model(args.method, args.hidden)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"[2/3] training {type(model).__name__} ({n_params / 1e3:.0f} k parameters) "
        f"with {args.method} (mode {mode}, window {args.window}) for {args.epochs} epochs",
        flush=True,
    )

    def report(m):
        print(
            f"      epoch {m.epoch:3d}  train acc {m.train_acc:5.1f}%  "
            f"test acc {m.test_acc:5.1f}%  ({m.seconds:.1f} s)",
            flush=True,
        )

    history = fit(
        model,
        (data.train_frames, data.train_labels),
        (data.test_frames, data.test_labels),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        mode=mode,
        window=args.window,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(),
        on_epoch=report,
    )
    final = history[-1]
    best = max(m.test_acc for m in history)
    print(
        f"[3/3] final test accuracy {final.test_acc:.1f}% (best {best:.1f}%, chance 5.0%) "
        f"in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    if args.out is not None:
        _write_json(
            args.out,
            {
                "method": args.method,
                "args": _jsonable(vars(args)),
                "history": [m.as_dict() for m in history],
            },
        )
        print(f"      metrics written to {args.out}")
    return 0


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items() if k != "run"}


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
