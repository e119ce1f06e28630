"""8-bit PTQ with one weight exponent per recurrent layer (today's format) against a
separate exponent for ``W_rec``, both against float, paired on the same samples.

Why: a recurrent ``SpikingLayer`` quantizes ``W`` and ``W_rec`` at one exponent
``e = power_of_two_exponent(max(range W, range W_rec))``. When ``W_rec`` is the larger
matrix (fs_gesture's ``fc``: about 3×), ``W`` keeps only some of its 8 bits
(docs/first_spike.md, "Where the 8-bit gesture network differs").

The split format: ``W`` at its own exponent ``e_w`` (from ``range W``; threshold, bias,
Ψ's table at ``2^e_w``), ``W_rec`` at ``e_rec`` (from ``range W_rec``), each an 8-bit
mantissa, and the synaptic sum ``a = W·x + (W_rec·s[t−1]) << (e_rec − e_w)``. The node
kind has no such shift yet, so this script measures the format without deploying it: the
emulator runs the existing node with ``weight_rec = m_rec << (e_rec − e_w)``, which gives
the same integers as the shifted sum (``(Σ m·s) << k = Σ (m << k)·s``, exact). Layers
with ``e_rec < e_w`` (``W`` the larger matrix) keep the shared exponent, as they lose
nothing to it.

Evaluation set: a checkpoint's test split, plus (``gesture32-standin`` networks) fresh
stand-in recordings of users ``26 + --skip-users`` onward (20 each, as
``benchmarks/quantized_accuracy.py``; ``--skip-users`` > 0 leaves the test split out, so
disjoint chunks can run in parallel and be pooled with ``--merge``). Predictions are
saved per batch (``--save``); ``--merge A.pt B.pt ...`` pools saved chunks into one
JSON. Float and both 8-bit networks are read the same way (first spike for a first-spike
network, ``benchmarks/quantized_accuracy.py``'s ``_float_predict`` and the emulator's
predictions). Paired statistics: :func:`quantization.comparison.paired_delta`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from _common import emit, environment, set_threads

from quantization.comparison import paired_delta

NAMES = ("float", "shared8", "split8")


@contextlib.contextmanager
def split_recurrent_exponent(log=None):
    """PTQ (inside the block) with ``W_rec`` at its own exponent (module doc)."""
    import quantization.nodes.spiking as spiking

    shared = spiking.quantize_weights

    def split(name, tensors, cfg, theta=None):
        if len(tensors) != 2:
            return shared(name, tensors, cfg, theta)
        (m_w,), e_w, s_w, report = shared(name, tensors[:1], cfg, theta)
        (m_rec,), e_rec, _, _ = shared(name, tensors[1:], cfg, None)
        if log is not None:
            log({"layer": name, "shared_exp": shared(name, tensors, cfg, theta)[1],
                 "e_w": e_w, "e_rec": e_rec})  # fmt: skip
        if e_rec < e_w:
            return shared(name, tensors, cfg, theta)
        return [m_w, m_rec << (e_rec - e_w)], e_w, s_w, report

    spiking.quantize_weights = split
    try:
        yield
    finally:
        spiking.quantize_weights = shared


def _gesture_users(cfg, test, skip_users: int, n: int):
    from stllr.data import standin_first_spike as fs
    from stllr.data.fs_frames import BinnedDataset
    from stllr.tasks import FlatChannels

    conf = fs.Gesture32StandinConfig()
    first = max(conf.test_users) + 1 + skip_users
    users = tuple(range(first, first + -(-n // (len(conf.lightings) * 10))))
    binned = BinnedDataset(fs.gesture32_recordings(users, 0, conf), test.spec)
    return (FlatChannels(binned, cfg.flatten_pool) if cfg.flatten else binned), users


def _summary(preds: dict) -> dict:
    y = preds["y"]
    out = {"samples": int(y.numel())}
    out.update({f"{k}_accuracy": 100.0 * float((preds[k] == y).double().mean()) for k in NAMES})
    out["shared8_minus_float"] = paired_delta(y, preds["float"], preds["shared8"])
    out["split8_minus_float"] = paired_delta(y, preds["float"], preds["split8"])
    out["split8_minus_shared8"] = paired_delta(y, preds["shared8"], preds["split8"])
    for k in ("shared8", "split8"):
        out[f"{k}_agrees_with_float"] = float((preds[k] == preds["float"]).double().mean())
    return out


def _run(args) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from quantized_accuracy import _float_predict
    from torch.utils.data import ConcatDataset

    from quantization.emulator import IntegerEmulator
    from quantization.ptq import PTQConfig, quantize_model
    from quantization.report import calibration_batches
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.trainer import batches

    t0 = time.perf_counter()
    loaded = load_checkpoint(args.checkpoint)
    cfg, model, data = loaded.cfg, loaded.model, loaded.data
    parts, users = ([data.test] if args.skip_users == 0 else []), None
    if cfg.task == "gesture32-standin" and args.heldout > 0:
        fresh, users = _gesture_users(cfg, data.test, args.skip_users, args.heldout)
        parts.append(fresh)
    evalset = ConcatDataset(parts)
    calib = calibration_batches(data.train, 4, cfg.batch_size, cfg.seed)
    ptq = PTQConfig(weight_bits=args.bits, scale="pow2")
    exps: list[dict] = []
    shared, _ = quantize_model(model, calib, ptq)
    with split_recurrent_exponent(exps.append):
        split, _ = quantize_model(model, calib, ptq)
    emus = {"shared8": IntegerEmulator(shared), "split8": IntegerEmulator(split)}
    got: dict[str, list] = {k: [] for k in ("y", *NAMES)}
    for x, y, lengths in batches(evalset, cfg.val_batch_size):
        got["y"].append(y)
        got["float"].append(_float_predict(model, cfg, x, y, lengths))
        for k, emu in emus.items():
            got[k].append(emu.run(x, lengths=lengths).predictions())
        if args.save:
            torch.save({k: torch.cat(v) for k, v in got.items()}, args.save)
        print(f"{sum(len(v) for v in got['y'])} samples, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return {
        "checkpoint": str(args.checkpoint),
        "task": cfg.task,
        "arch": cfg.arch,
        "bits": args.bits,
        "test_split_included": args.skip_users == 0,
        "heldout_users": None if users is None else [users[0], users[-1]],
        "recurrent_exponents": exps,
        **_summary({k: torch.cat(v) for k, v in got.items()}),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a trained network's best.pt")
    ap.add_argument("--heldout", type=int, default=0, help="fresh gesture32 recordings")
    ap.add_argument("--skip-users", type=int, default=0, help="fresh users start 26 + this")
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--save", type=Path, help="the per-sample predictions (.pt), per batch")
    ap.add_argument("--merge", type=Path, nargs="+", help="pool saved chunks instead")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if (args.checkpoint is None) == (args.merge is None):
        ap.error("give --checkpoint or --merge")
    set_threads(args.threads, quick=False)
    if args.merge:
        chunks = [torch.load(p, weights_only=True) for p in args.merge]
        pooled = {k: torch.cat([c[k] for c in chunks]) for k in ("y", *NAMES)}
        result = {"merged": [str(p) for p in args.merge], **_summary(pooled)}
    else:
        result = _run(args)
    result.update(benchmark="recurrent_exponent",
                  command="python benchmarks/recurrent_exponent.py " + " ".join(sys.argv[1:]),
                  units="percent; deltas in percentage points",
                  environment=environment(torch.device("cpu")))  # fmt: skip
    emit(result, args.out)


if __name__ == "__main__":
    main()
