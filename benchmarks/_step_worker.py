"""Worker of benchmarks/event_driven.py and vgg_step.py: times S-TLLR training steps of
one source tree.

Run as ``PYTHONPATH=TREE python benchmarks/_step_worker.py --model M --mode S ...``: it
imports ``stllr`` from TREE (it does not import ``benchmarks/_common.py``, which would put
this checkout first on the path), builds the model (``shd``: the SHD RSNN; ``vgg``: VGG-9
at 2×32×32, full widths, every conv's weight-standardisation gain set to ``--gain``) and a
fixed random batch of Bernoulli inputs, prints one JSON line ``{"ready": ...,
"stllr_file": ...}``, then for every line ``run`` on stdin runs one ``train_batch`` call
and prints ``{"wall_s": ..., "cpu_s": ...}``; ``quit`` ends it. The parent interleaves the
calls of two workers (the trees being compared) one by one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def build(args):
    """The model (seed 0) and a batch ``x`` ``[T, B, *input]``, ``y`` (seed 1)."""
    torch.manual_seed(0)
    if args.model == "vgg":
        from stllr.models.vgg import VGGSTLLR

        model, shape, classes = VGGSTLLR(), (2, 32, 32), 11
        with torch.no_grad():
            for conv in model.convs:
                conv.gain.fill_(args.gain)
    else:
        from stllr.models.shd import SHDNetSTLLR

        model = SHDNetSTLLR(num_inputs=args.inputs, hidden=args.hidden, num_classes=20)
        shape, classes = (args.inputs,), 20
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.T, args.batch, *shape, generator=g) < args.density).float()
    return model, x, torch.randint(0, classes, (args.batch,), generator=g)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shd", choices=("shd", "vgg"))
    ap.add_argument("--mode", default="dense", help="event_inputs switch (ignored if absent)")
    ap.add_argument("--gain", type=float, default=1.0, help="vgg: the convs' WS gain")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--inputs", type=int, default=700)
    ap.add_argument("--hidden", type=int, default=450)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--density", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import stllr
    from stllr.training import train_batch

    switch = "absent"
    try:
        from stllr.spike_events import set_event_inputs
    except ImportError:  # a tree from before the event-driven path
        set_event_inputs = None
    model, x, y = build(args)
    if set_event_inputs is not None:
        set_event_inputs(model, args.mode)
        switch = args.mode
    opt = torch.optim.Adam(model.parameters(), lr=0.0)  # weights (and the work) stay fixed
    first = train_batch(model, x, y, opt, window=args.window)  # warm-up
    print(
        json.dumps(
            {
                "ready": True,
                "stllr_file": stllr.__file__,
                "event_inputs": switch,
                "logits_first_call": first.logits.double().sum().item(),
                "grad_abs_sum_first_call": sum(
                    p.grad.double().abs().sum().item()
                    for p in model.parameters()
                    if p.grad is not None
                ),
                "threads": torch.get_num_threads(),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() != "run":
            break
        w0, c0 = time.perf_counter(), time.process_time()
        train_batch(model, x, y, opt, window=args.window)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(json.dumps({"wall_s": wall, "cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    main()
