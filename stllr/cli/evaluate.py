"""stllr eval: evaluate a checkpoint (best.pt or checkpoint.pt of a run) on its test split.

A network with a spiking output layer (readout first_spike or rate) also reports the FS
and FR accuracies, output spikes per sample and the first-spike latency.

The checkpoint carries its config; --set overrides keys (e.g. data=/datasets to
evaluate on the real files, or task=... for another split source).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options


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
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.devices import resolve_device
    from stllr.run import atomic_json
    from stllr.spike_metrics import SpikeReadoutTally
    from stllr.spike_training import SpikeReadout
    from stllr.trainer import run_epoch

    ck = load_checkpoint(args.checkpoint, [*args.set, *options.device_override(args)])
    cfg, data = ck.cfg, ck.data
    device = resolve_device(cfg.device, "device")
    readout = SpikeReadout.from_config(cfg)
    tally = SpikeReadoutTally() if readout is not None else None
    loss, acc = run_epoch(
        ck.model.to(device),
        data.test,
        cfg.val_batch_size,
        progress=options.show_progress(args),
        desc="eval",
        device=device,
        num_workers=cfg.num_workers,
        readout=readout,
        tally=tally,
    )
    result = {
        "checkpoint": str(args.checkpoint),
        "task": cfg.task,
        "epoch": ck.epoch,
        "test_acc": acc,
        "test_loss": loss,
        "samples": len(data.test),
    }
    print(
        f"{cfg.task}: test accuracy {acc:.2f}% on {len(data.test)} samples "
        f"(checkpoint of epoch {ck.epoch})"
    )
    if tally is not None:  # a spiking output layer: FS and FR read-outs side by side
        measured = tally.result()
        result["readout"] = cfg.readout
        result["spike_readout"] = measured.as_dict()
        print(f"{cfg.task}: {measured.text()}")
    if args.out is not None:
        atomic_json(result, args.out)
        print(f"result written to {args.out}")
    return 0
