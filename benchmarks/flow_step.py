"""FSFN training step: time and peak memory, S-TLLR vs BPTT, at T = 10 and T = 40.

One ``stllr.flow.training.train_flow_batch`` call (T forward steps, the loss and its
backward, one Adam step) on random Bernoulli event counts of an ``--crop``² window with
random gray frames, self-supervised loss (docs/flow.md §4, §7). S-TLLR gets the learning
signal in the last step (window 1), BPTT differentiates all T steps. Per point:

* ``peak_saved_bytes``: peak bytes autograd holds for backward during the call
  (``stllr.memory.SavedTensorTracker``, every saved tensor counted once per save); on CUDA
  also ``cuda_peak_bytes`` (``torch.cuda.max_memory_allocated`` over the call);
* ``time``: wall seconds of the call, median of ``--repeats`` calls after a warm-up, the
  two modes interleaved.

Default widths are Spike-FlowNet's (64, 128, 256, 512 / 128, 64, 4) at a 64² crop (the
paper's is 256²); ``--quick`` uses narrow widths, a 32² crop and T ∈ {4, 8}.
"""

from __future__ import annotations

import argparse

import torch
from _common import emit, environment, pick_device, set_threads, summary, sync, timed

from stllr.flow.dataset import FlowSample
from stllr.flow.training import flow_loss, train_flow_batch
from stllr.memory import SavedTensorTracker, cuda_peak_bytes
from stllr.models.fsfn import FSFN


def make_batch(steps: int, batch: int, crop: int, device, rate: float = 0.02) -> FlowSample:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, 2, crop, crop, generator=g) < rate).float()
    gray = torch.rand(2, batch, 1, crop, crop, generator=g)
    flow = torch.zeros(batch, 2, crop, crop)
    events = x.sum((0, 2)) > 0
    return FlowSample(*(t.to(device) for t in (x, gray[0], gray[1], flow, events)))


def measure(mode: str, steps: int, args, device) -> dict:
    torch.manual_seed(0)
    model = FSFN(
        2,
        family=mode,
        encoder=args.encoder,
        decoder=args.decoder,
        input_size=(args.crop, args.crop),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = make_batch(steps, args.batch, args.crop, device)
    loss_fn = flow_loss("photometric", 1)

    def call():
        train_flow_batch(model, batch, opt, loss_fn, mode, window=1)

    call()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with SavedTensorTracker() as tracker:
        call()
    sync(device)
    point = {"mode": mode, "T": steps, "peak_saved_bytes": tracker.peak}
    if device.type == "cuda":
        point["cuda_peak_bytes"] = cuda_peak_bytes(device)
    point["time"] = summary([timed(call, device) for _ in range(args.repeats)])
    return point


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    set_threads(args.threads, args.quick)
    device = pick_device(args.device)
    if args.quick:
        args.encoder, args.decoder, args.crop, args.batch, ts = (
            (8, 16, 16, 16),
            (8, 8, 4),
            32,
            2,
            (4, 8),
        )
        args.repeats = 1
    else:
        args.encoder, args.decoder, args.crop, args.batch, ts = (
            (64, 128, 256, 512),
            (128, 64, 4),
            64,
            8,
            (10, 40),
        )
    points = [measure(mode, t, args, device) for t in ts for mode in ("stllr", "bptt")]
    by = {(q["mode"], q["T"]): q for q in points}
    ratios = {
        f"T{t}": {
            "bptt_over_stllr_saved_bytes": by[("bptt", t)]["peak_saved_bytes"]
            / by[("stllr", t)]["peak_saved_bytes"],
            "bptt_over_stllr_time": by[("bptt", t)]["time"]["median_s"]
            / by[("stllr", t)]["time"]["median_s"],
        }
        for t in ts
    }
    emit(
        {
            "benchmark": "flow_step",
            "quick": args.quick,
            "config": {
                "encoder": list(args.encoder),
                "decoder": list(args.decoder),
                "crop": args.crop,
                "batch": args.batch,
                "T": list(ts),
                "stllr_window": 1,
                "input": "Bernoulli event counts, rate 0.02, 2 channels",
                "loss": "self-supervised (photometric + smoothness)",
                "optimizer": "Adam",
            },
            "points": points,
            "ratios": ratios,
            "environment": environment(device),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
