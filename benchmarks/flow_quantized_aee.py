"""FSFN in 8-bit fixed point: summed AEE of the float model vs the integer emulator (and
Lava ``fixed_pt`` on a few windows) on the ±x flow stand-in (docs/flow.md, "Deployment").

Data: the CI flow test's stand-in (five sequences of 40 × 40 frames, ±x translation at
80 px/s, ``tests/test_flow_training.py``), written to a temporary folder. Model: FSFN
S-TLLR (α_post = −0.2, signal in the last step), widths (8, 16, 32, 32) / (8, 8, 4), 32²
crop, T = 2 bins, supervised loss, lr 6·10⁻³, ``--epochs`` epochs (the CI test's 12), or
the checkpoint given with ``--checkpoint``. Then:

* ``float``: the summed AEE of the best checkpoint (``stllr.flow.run.evaluate_sequences``);
* ``int8``: PTQ (8-bit weights, ``quantization.ptq.quantize_model``, calibrated on the
  training windows), the summed AEE of the emulator's finest flow at the last step
  (``quantization.flow_eval``); ``rel_change`` = int8 / float − 1 (target |·| ≤ 5 %);
* ``adapted_int8`` (``--adapt-epochs``, default 2): on-device learning of the finest flow
  head alone, the third factor the flow error at the last step of each training window
  where it has events (``quantization.flow_eval.adapt_flow_head``, lr ``--adapt-lr``
  1e-8 in the units of ``quantization.learning.attach_learning``), starting from a
  zeroed head (``--adapt-from zero``, ``start_sum_aee``) or the trained one; then the
  test AEE. ``lava_replay``: the same learning on the first ``--lava-adapt`` windows
  replayed in Lava ``fixed_pt`` with the same integer signals, its learned weights
  compared with the emulator's;
* ``lava`` (``--lava N``): the first N windows of every test sequence (default: all) run
  in Lava ``fixed_pt``: the summed AEE of Lava's flows, and whether they equal the
  emulator's bit for bit (``equal_to_emulator``; then the Lava AEE over all windows is
  the ``int8`` one).

One run (one seed): no mean ± std. ``--quick``: 1 training epoch, at most 2 Lava windows
per sequence, adaptation over 16 windows once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import emit, environment, set_threads

from stllr.config import ExperimentConfig


def _write_standin(root: Path) -> None:
    from stllr.flow.mvsec_files import write_sequence
    from stllr.flow.standin import make_recording, translation_specs

    for name, (spec, seed) in translation_specs().items():
        write_sequence(root / "seed0", name, *make_recording(spec, seed))


def _config(root: Path, epochs: int) -> ExperimentConfig:
    return ExperimentConfig(
        name="flow_q", task="mvsec-standin", arch="fsfn", method="stllr",
        factors=(0.5, 0.8, -0.2, 1.0), psi="d", window=1, lr=6e-3, batch_size=4,
        val_batch_size=8, epochs=epochs, channels=(8, 16, 32, 32), flow_decoder=(8, 8, 4),
        flow_crop=32, flow_bins=2, flow_loss="supervised", data=str(root / "standin"),
        out_dir=str(root / "runs"), device="cpu",
    )  # fmt: skip


def _lava_scores(qnet, tests: dict, limit: int) -> dict:
    """Each test sequence's first ``limit`` windows in Lava ``fixed_pt``
    (:func:`lava_models.flow.lava_flow`): the AEE of Lava's finest flow at the last step,
    and whether it equals the emulator's bit for bit."""
    from lava_models.flow import lava_flow
    from quantization.emulator import IntegerEmulator
    from quantization.flow_eval import integer_flow
    from stllr.flow.dataset import collate
    from stllr.flow.metrics import sequence_score, window_errors

    out, equal, windows, t0 = {}, True, 0, time.perf_counter()
    for name, data in tests.items():
        n = min(limit, len(data))
        batch = collate([data[i] for i in range(n)])
        lava = lava_flow(qnet, batch.x)
        equal = equal and bool(torch.equal(lava, integer_flow(IntegerEmulator(qnet), batch.x)))
        errors = window_errors(lava.to(batch.flow.dtype), batch.flow, batch.events)
        out[name] = sequence_score(name, errors).aee
        windows += n
    return {"sum_aee": sum(out.values()), **out, "windows": windows,
            "equal_to_emulator": equal, "seconds": time.perf_counter() - t0}  # fmt: skip


def _adapt(qnet, data, calib, args) -> dict:
    """On-device learning of the finest head with the flow error (quantization.flow_eval)
    over the training windows, then the test AEE; and the same learning replayed in Lava
    ``fixed_pt`` on the first ``--lava-adapt`` windows (:func:`lava_models.flow.
    replay_flow_head`): its weights must equal the emulator's."""
    import dataclasses

    from quantization.emulator import IntegerEmulator
    from quantization.flow_eval import FINEST, adapt_flow_head, evaluate_integer_flow
    from quantization.learning import attach_learning
    from stllr.flow.dataset import collate

    if args.adapt_from == "zero":  # a head that has learned nothing (≈ zero flow)
        head = qnet.node(FINEST)
        qnet = qnet.replace_node(dataclasses.replace(head, weight=torch.zeros_like(head.weight)))
    start = sum(s.aee for s in evaluate_integer_flow(qnet, data.test, args.batch))
    plastic = attach_learning(qnet, [FINEST], calib, lr=args.adapt_lr,
                              signal_max=args.signal_max, seed=7)  # fmt: skip
    n = 16 if args.quick else len(data.train)
    windows = [collate([data.train[i]]) for i in range(n)]
    emu = IntegerEmulator(plastic)
    t0 = time.perf_counter()
    for _ in range(args.adapt_epochs):
        adapt_flow_head(emu, windows, event_mask=not args.all_pixels)
    seconds = time.perf_counter() - t0
    w0 = plastic.node(FINEST).weight
    moved = int((emu.weights(FINEST)["w"] != w0).sum())
    scores = evaluate_integer_flow(emu.to_qnetwork(), data.test, args.batch)
    out = {"epochs": args.adapt_epochs, "lr": args.adapt_lr, "signal_max": args.signal_max,
           "event_mask": not args.all_pixels, "from": args.adapt_from,
           "start_sum_aee": start,
           "windows": len(windows), "weights_moved": moved, "of": w0.numel(),
           "sum_aee": sum(s.aee for s in scores), **{s.name: s.aee for s in scores},
           "seconds": seconds}  # fmt: skip
    k = min(args.lava_adapt, len(windows))
    if k:
        from lava_models.flow import replay_flow_head

        rep = replay_flow_head(plastic, windows[:k], event_mask=not args.all_pixels)
        out["lava_replay"] = {"windows": k, "weights_equal_to_emulator": rep.differing == 0,
                              "weights_moved": rep.moved}  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch (smoke test)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--checkpoint", default=None, help="a best.pt of this config (no training)")
    p.add_argument("--keep-checkpoint", default=None, help="copy the trained best.pt here")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--lava", type=int, default=10**6,
                   help="windows per test sequence run in Lava (0: none)")  # fmt: skip
    p.add_argument(
        "--adapt-epochs",
        type=int,
        default=2,
        help="epochs of on-device learning of the finest head (0: none)",
    )
    p.add_argument("--adapt-lr", type=float, default=1e-8)
    p.add_argument(
        "--signal-max",
        type=float,
        default=4.0,
        help="largest |flow error| (px) the 8-bit third factor holds",
    )
    p.add_argument(
        "--lava-adapt",
        type=int,
        default=8,
        help="training windows whose on-device learning is replayed in Lava",
    )
    p.add_argument(
        "--all-pixels",
        action="store_true",
        help="adaptation signal at every pixel, not only where there are events",
    )
    p.add_argument(
        "--adapt-from",
        choices=("zero", "trained"),
        default="zero",
        help="the finest head's weights before adaptation: zeroed or as trained",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    set_threads(args.threads, args.quick)
    from quantization.flow_eval import evaluate_integer_flow
    from quantization.ptq import PTQConfig, quantize_model
    from stllr.checkpoints import load_model_state, load_pt
    from stllr.flow.run import evaluate_sequences
    from stllr.models.factory import build_model
    from stllr.run import run_experiment
    from stllr.tasks import load_task

    epochs = 1 if args.quick else args.epochs
    with tempfile.TemporaryDirectory(prefix="flow_q_") as tmp:
        root = Path(tmp)
        _write_standin(root / "standin")
        cfg = _config(root, epochs)
        import stllr.tasks

        stllr.tasks.CACHE_DIR = root / "cache"
        data = load_task(cfg)
        t0 = time.perf_counter()
        ckpt_path = Path(args.checkpoint) if args.checkpoint else None
        if ckpt_path is None:
            run_experiment(cfg, progress=False, log=lambda s: None, data=data)
            ckpt_path = root / "runs" / cfg.name / "trial_1" / "best.pt"
            if args.keep_checkpoint:
                import shutil

                shutil.copyfile(ckpt_path, args.keep_checkpoint)
        train_s = time.perf_counter() - t0
        model, _ = build_model(cfg, data.input_shape, 2)
        load_model_state(model, load_pt(ckpt_path, keys=("model",)), ckpt_path, "the config")
        model.eval()
        float_scores = evaluate_sequences(model, data.test, cfg.val_batch_size)
        calib = [data.train[i].x[:, None] for i in range(0, len(data.train), 8)][:16]
        qnet, reports = quantize_model(model, calib, PTQConfig(weight_bits=args.bits))
        int_scores = evaluate_integer_flow(qnet, data.test, cfg.val_batch_size)
        f_sum = sum(s.aee for s in float_scores)
        i_sum = sum(s.aee for s in int_scores)
        result = {
            "benchmark": "flow_quantized_aee",
            "quick": args.quick,
            "runs": 1,
            "config": {
                "epochs": epochs,
                "bits": args.bits,
                "checkpoint": args.checkpoint,
                "channels": list(cfg.channels),
                "decoder": list(cfg.flow_decoder),
                "crop": cfg.flow_crop,
                "bins": cfg.flow_bins,
            },  # fmt: skip
            "train_s": train_s,
            "float": {"sum_aee": f_sum, **{s.name: s.aee for s in float_scores}},
            f"int{args.bits}": {"sum_aee": i_sum, **{s.name: s.aee for s in int_scores}},
            "rel_change": i_sum / f_sum - 1.0,
            "clipped_weights": sum(r.clipped for r in reports),
        }
        if args.adapt_epochs:
            args.batch = cfg.val_batch_size
            if args.quick:
                args.lava_adapt, args.adapt_epochs = min(args.lava_adapt, 2), 1
            result["adapted_int8"] = _adapt(qnet, data, calib, args)
        if args.lava:
            result["lava"] = _lava_scores(
                qnet, data.test, min(args.lava, 2) if args.quick else args.lava
            )
        result["environment"] = environment(torch.device("cpu"))
    emit(result, args.out)


if __name__ == "__main__":
    main()
