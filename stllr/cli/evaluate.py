"""stllr eval: evaluate a checkpoint (best.pt or checkpoint.pt of a run) on its test split.

The checkpoint carries its config; --set overrides keys (e.g. data=/datasets to
evaluate on the real files, or task=... for another split source).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options
from stllr.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained checkpoint on its task's test split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: stllr eval runs/demo_stllr/trial_1/best.pt --out runs/eval.json",
    )
    p.add_argument("checkpoint", type=Path, help="best.pt or checkpoint.pt written by train")
    options.add_set_option(
        p, "KEY=VALUE", "data=/datasets", "config values stored in the checkpoint"
    )
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from stllr.config import ExperimentConfig, apply_overrides, field_types
    from stllr.models.factory import build_model
    from stllr.run import atomic_json
    from stllr.tasks import load_task
    from stllr.trainer import run_epoch

    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    try:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 — any unpickling failure means a bad file
        raise UserError(f"{args.checkpoint} is not a readable stllr checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{args.checkpoint} has no 'model'/'config' entries: not written by train")
    known = field_types()
    stored = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in ckpt["config"].items() if k in known
    }
    cfg = apply_overrides(ExperimentConfig(**stored), args.set)
    data = load_task(cfg)
    model, _ = build_model(cfg, data.input_shape, data.num_classes)
    model.load_state_dict(ckpt["model"])
    loss, acc = run_epoch(
        model,
        data.test,
        cfg.val_batch_size,
        progress=options.show_progress(args),
        desc="eval",
    )
    result = {
        "checkpoint": str(args.checkpoint),
        "task": cfg.task,
        "epoch": ckpt.get("epoch"),
        "test_acc": acc,
        "test_loss": loss,
        "samples": len(data.test),
    }
    print(
        f"{cfg.task}: test accuracy {acc:.2f}% on {len(data.test)} samples "
        f"(checkpoint of epoch {ckpt.get('epoch')})"
    )
    if args.out is not None:
        atomic_json(result, args.out)
        print(f"result written to {args.out}")
    return 0
