"""stllr flow-eval: score a flow checkpoint with the Spike-FlowNet protocol.

Prints AEE and % outliers (endpoint error > 3 px) per test sequence and their sums
(docs/flow.md §3). The checkpoint (best.pt or checkpoint.pt of a flow run) carries its
config; --data points at another folder of MVSEC files, --set overrides other keys.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stllr.cli import options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "flow-eval",
        help="AEE per MVSEC test sequence of a trained flow checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  stllr flow-eval --checkpoint runs/mvsec_stllr_apost_neg/trial_1/best.pt \\\n"
            "      --data /datasets/mvsec\n"
            "  stllr flow-eval --checkpoint runs/mvsec_standin_stllr/trial_1/best.pt --images out/"
        ),
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="best.pt or checkpoint.pt")
    p.add_argument("--data", default=None, help="folder of the MVSEC hdf5 files (config data=)")
    options.add_set_option(
        p, "KEY=VALUE", "flow_crop=256", "config values stored in the checkpoint"
    )
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help="write colour-wheel flow pictures (prediction | ground truth) of each sequence here",
    )
    p.add_argument("--out", type=Path, default=None, help="write the scores as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from stllr.checkpoints import built_from, load_model_state, load_pt, stored_config
    from stllr.config import apply_overrides
    from stllr.devices import resolve_device
    from stllr.errors import UserError
    from stllr.flow.metrics import score_table
    from stllr.flow.run import evaluate_sequences
    from stllr.models.factory import build_model
    from stllr.run import atomic_json
    from stllr.tasks import is_flow_task, load_task

    ckpt = load_pt(args.checkpoint, keys=("model", "config"))
    stored = stored_config(ckpt, args.checkpoint)
    if not is_flow_task(stored.task):
        raise UserError(
            f"{args.checkpoint}: task {stored.task!r} is not a flow task (use stllr eval)"
        )
    overrides = [*([f"data={args.data}"] if args.data else []), *args.set]
    cfg = apply_overrides(stored, [*overrides, *options.device_override(args)])
    data = load_task(cfg)
    model, _ = build_model(cfg, data.input_shape, 2)
    load_model_state(model, ckpt, args.checkpoint, built_from(stored, cfg, "its config"))
    device = resolve_device(cfg.device, "device")
    model.to(device)
    scores = evaluate_sequences(model, data.test, cfg.val_batch_size, device)
    print(f"{cfg.task} ({data.description})")
    print(score_table(scores))
    if args.images is not None:
        write_flow_images(model, data.test, args.images, device)
        print(f"flow pictures written to {args.images}")
    if args.out is not None:
        atomic_json(
            {
                "checkpoint": str(args.checkpoint),
                "task": cfg.task,
                "sequences": [dataclasses.asdict(s) for s in scores],
                "sum_aee": sum(s.aee for s in scores),
            },
            args.out,
        )
    return 0


def write_flow_images(model, tests: dict, folder: Path, device=None) -> None:
    """``<sequence>.png``: the middle window's predicted and true flow side by side, both
    on the colour wheel with the gt's largest magnitude as full value, masked to the
    evaluation pixels of the protocol."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from stllr.devices import to_device
    from stllr.flow.dataset import collate
    from stllr.flow.metrics import eval_mask, flow_to_rgb, upsample_flow
    from stllr.flow.training import predict_flow
    from stllr.run import atomic_write_bytes

    for name, data in tests.items():
        batch = collate([data[len(data) // 2]])
        batch = type(batch)(*to_device(tuple(batch), device))
        pred = upsample_flow(predict_flow(model, batch.x), tuple(batch.flow.shape[-2:]))[0]
        gt = batch.flow[0]
        mask = eval_mask(batch.flow, batch.events)[0].cpu().numpy()
        top = float(np.nanmax(np.hypot(*gt.cpu().numpy())) or 1.0)
        pictures = [flow_to_rgb(f.cpu().numpy() * mask, top) for f in (pred, gt)]
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        for ax, pic, title in zip(axes, pictures, ("prediction", "ground truth"), strict=True):
            ax.imshow(pic)
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(Path(folder) / f"{name}.png", buf.getvalue())
