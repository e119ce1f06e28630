"""Do a checkpoint's results depend on torch's thread count? (docs/decisions.md, "Thread count")

Usage: python tools/thread_parity.py CHECKPOINT [--val-batch 128] [--train-batches 5]
[--threads 1 2]

For each thread count: the float model's summed logits on the test split (each sample over
its own steps), the 8-bit PTQ network's emulator logits, and the weights after
``--train-batches`` training batches from the checkpoint's weights (its mode, window and
learning rate). Prints, against the first thread count, the largest logit and weight
differences, how many predictions differ, and whether everything is bitwise equal.
"""

from __future__ import annotations

import argparse
import copy
import itertools

import torch


def _evaluate(model, qnet, test, batch_size: int):
    from quantization.emulator import IntegerEmulator
    from stllr.trainer import batches
    from stllr.training import evaluate_batch

    emu = IntegerEmulator(qnet)
    fl, em = [], []
    for x, _, lengths in batches(test, batch_size):
        fl.append(evaluate_batch(model, x, lengths=lengths).logits)
        em.append(emu.run(x, lengths=lengths).logits_sum)
    return torch.cat(fl), torch.cat(em)


def _train(ck, n_batches: int) -> dict[str, torch.Tensor]:
    from stllr.trainer import batches
    from stllr.training import train_batch

    model = copy.deepcopy(ck.model)
    opt = torch.optim.Adam(model.parameters(), lr=ck.cfg.lr)
    gen = torch.Generator().manual_seed(ck.cfg.seed)
    for x, y, _ in itertools.islice(batches(ck.data.train, ck.cfg.batch_size, gen), n_batches):
        train_batch(model, x, y, opt, mode=ck.mode, window=ck.cfg.window)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--val-batch", type=int, default=128)
    ap.add_argument("--train-batches", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    from quantization.ptq import PTQConfig, quantize_model
    from quantization.report import calibration_batches
    from stllr.cli.checkpoint import load_checkpoint

    ck = load_checkpoint(args.checkpoint)
    torch.set_num_threads(args.threads[0])
    calib = calibration_batches(ck.data.train, 4, ck.cfg.batch_size, ck.cfg.seed)
    qnet, _ = quantize_model(ck.model, calib, PTQConfig(weight_bits=8))
    y = torch.tensor([int(ck.data.test[i][1]) for i in range(len(ck.data.test))])
    runs = {}
    for n in args.threads:
        torch.set_num_threads(n)
        logits = _evaluate(ck.model, qnet, ck.data.test, args.val_batch)
        runs[n] = (*logits, _train(ck, args.train_batches))
    f0, e0, w0 = runs[args.threads[0]]
    print(f"{len(y)} test samples, val batch {args.val_batch}, torch {torch.__version__}")
    for n in args.threads:
        f, e, w = runs[n]
        dw = max(float((w[k].double() - w0[k].double()).abs().max()) for k in w)
        print(
            f"{n} thread(s): float acc {100 * float((f.argmax(1) == y).double().mean()):.2f} %, "
            f"max |Δlogit| {float((f - f0).abs().max()):.3g}, predictions differing "
            f"{int((f.argmax(1) != f0.argmax(1)).sum())}; emulator acc "
            f"{100 * float((e.argmax(1) == y).double().mean()):.2f} %, logits equal "
            f"{torch.equal(e, e0)}; after {args.train_batches} training batches max |Δw| {dw:.3g}"
        )


if __name__ == "__main__":
    main()
