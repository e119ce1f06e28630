"""Quantized (integer emulator) vs float accuracy on every stand-in task.

For each task a trained checkpoint is needed; ``--train`` trains the missing ones with
the recipes below (``stllr train``, single thread) into ``--runs``. Then, per task,
``quantization.report.compare_checkpoint`` scores the float model and PTQ at each of
``--bits`` on the task's test set (the integer emulator, ``delay = 0``).

Target: 8-bit PTQ within 1 percentage point of float on each stand-in task. The
event stand-ins' test splits are small (20–22 samples: one sample is ~5 points), so the
8-bit network is also scored on the training split, and the fraction of samples where
its prediction equals the float model's is reported over both splits.

Recipes (stand-ins are small; event tasks use the narrow VGG-9 of the README table):

* ``shd-standin``: ``stllr demo``'s S-TLLR network (700 → 256 recurrent → 20, 6 epochs);
* ``gesture-standin``, ``cifar10dvs-standin``, ``ncaltech101-standin``: VGG-9 with
  channels 16,16,32,32,32,32,32,32, BPTT, batch 8, 12 epochs (N-Caltech101: 20).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
from _common import REPO_ROOT, emit, environment, set_threads, target

NARROW = "channels=16,16,32,32,32,32,32,32"
RECIPES = {
    "shd-standin": ("experiments/shd_standin_stllr.toml", ["epochs=6", "hidden=256"]),
    "gesture-standin": ("experiments/gesture_bptt.toml", [NARROW, "batch_size=8", "epochs=12"]),
    "cifar10dvs-standin": (
        "experiments/cifar10dvs_bptt.toml",
        [NARROW, "batch_size=8", "epochs=12"],
    ),
    "ncaltech101-standin": (
        "experiments/ncaltech101_bptt.toml",
        [NARROW, "batch_size=8", "epochs=20"],
    ),
}


def _checkpoint(runs: Path, task: str) -> Path:
    return runs / task / "trial_1" / "best.pt"


def _train(runs: Path, task: str) -> None:
    config, overrides = RECIPES[task]
    epochs = next(o.split("=")[1] for o in overrides if o.startswith("epochs="))
    cmd = [
        sys.executable, "-m", "stllr.cli.main", "train", str(REPO_ROOT / config), "--no-progress",
        "--set", f"task={task}", f"out_dir={runs}", f"name={task}", "trials=1",
        f"scheduler={epochs}", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)


def _float_predictions(model, x):
    model.eval()
    model.reset_state()
    with torch.no_grad():
        return sum(model(x[t]) for t in range(x.shape[0])).argmax(dim=1)


def _agreement(model, qnet, data, batch_size, emulator_cls, batches) -> dict:
    """Fraction of samples (train + test) where the 8-bit prediction equals the float one."""
    emu = emulator_cls(qnet)
    same = total = 0
    for split in (data.train, data.test):
        for x, _ in batches(split, batch_size):
            same += int((emu.run(x).predictions() == _float_predictions(model, x)).sum())
            total += x.shape[1]
    return {"samples": total, "agreement": same / total}


def float_acc_train(loaded, batches) -> float:
    correct = total = 0
    for x, y in batches(loaded.data.train, loaded.cfg.val_batch_size):
        correct += int((_float_predictions(loaded.model, x) == y).sum())
        total += int(y.numel())
    return 100.0 * correct / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "quantized_accuracy")
    ap.add_argument("--tasks", nargs="+", default=list(RECIPES))
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--train", action="store_true", help="train the missing checkpoints")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    set_threads(args.threads, quick=False)

    from quantization.emulator import IntegerEmulator
    from quantization.report import (
        calibration_batches,
        compare_checkpoint,
        quantize_and_evaluate,
    )
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.trainer import batches

    rows = []
    for task in args.tasks:
        ckpt = _checkpoint(args.runs, task)
        if not ckpt.is_file():
            if not args.train:
                raise SystemExit(f"no checkpoint {ckpt}; run with --train to create it")
            _train(args.runs, task)
        loaded = load_checkpoint(ckpt)
        res = compare_checkpoint(
            loaded.model, loaded.mode, loaded.data, loaded.cfg, args.bits, log=print
        )
        by_bits = {r["bits"]: r for r in res["ptq"]}
        cfg = loaded.cfg
        calib = calibration_batches(loaded.data.train, 4, cfg.batch_size, cfg.seed)
        train8 = quantize_and_evaluate(
            loaded.model, calib, loaded.data.train, loaded.cfg.val_batch_size, 8
        )
        agree = _agreement(loaded.model, train8.qnet, loaded.data, loaded.cfg.val_batch_size,
                           IntegerEmulator, batches)  # fmt: skip
        acc8 = by_bits.get(8, {}).get("accuracy")
        delta = None if acc8 is None else acc8 - res["float_accuracy"]
        rows.append({
            "task": task,
            "method": loaded.cfg.method,
            "arch": loaded.cfg.arch,
            "test_samples": res["test_samples"],
            "float_accuracy": res["float_accuracy"],
            "ptq_accuracy": {b: r.get("accuracy") for b, r in by_bits.items()},
            "ptq_8bit_minus_float": target(None if delta is None else abs(delta), "<=", 1.0),
            "delta_8bit": delta,
            "train_split": {
                "samples": len(loaded.data.train),
                "float_accuracy": float_acc_train(loaded, batches),
                "ptq8_accuracy": train8.accuracy,
            },
            "ptq8_prediction_agreement": agree,
        })  # fmt: skip
    emit(
        {
            "benchmark": "quantized_accuracy",
            "units": "percent; delta in percentage points",
            "rows": rows,
            "all_met": all(r["ptq_8bit_minus_float"]["met"] for r in rows),
            "environment": environment(torch.device("cpu")),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
