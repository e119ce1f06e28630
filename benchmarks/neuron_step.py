"""Training-step time and memory vs T of the SHD network with each neuron, S-TLLR vs BPTT.

For every ``neuron`` in lif, culif, pculif, adlif, cuadlif (docs/neurons.md §4), every
mode (S-TLLR with the learning signal on the last ``--window`` steps, BPTT) and every T,
one ``stllr.training.train_batch`` call on the SHD recurrent network (700→H→20 by
default, random Bernoulli input spikes) is measured:

* ``time``: wall seconds of the call (T forward steps, backward, one SGD step), median of
  ``--repeats`` calls after one warm-up call; ``cpu_time_s`` the process CPU seconds of
  the same calls;
* ``peak_saved_bytes``: peak bytes autograd holds for backward during one call
  (:class:`stllr.memory.SavedTensorTracker`); on CUDA also ``cuda_peak_bytes``.

Points whose projected time (from the previous T of the same neuron and mode) would pass
the time budget are reported as ``{"skipped": ...}``, never estimated. ``ratios`` gives,
per neuron and T, BPTT over S-TLLR for time and memory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import emit, environment, load_average, pick_device, set_threads, sync, timed

from stllr.config import ExperimentConfig
from stllr.memory import SavedTensorTracker, cuda_peak_bytes
from stllr.models.factory import build_model
from stllr.training import train_batch

NEURONS = ("lif", "culif", "pculif", "adlif", "cuadlif")
FULL_T = (25, 50, 100, 200)
QUICK_T = (4, 8)


def build(neuron: str, mode: str, args, device):
    cfg = ExperimentConfig(
        neuron=neuron, method=mode, hidden=args.hidden, threshold=0.5 if neuron != "lif" else 0.6
    )
    model, _ = build_model(cfg, (args.inputs,), 20)
    model = model.to(device)
    return model, torch.optim.SGD(model.parameters(), lr=1e-4)


def measure(neuron: str, mode: str, steps: int, args, device) -> dict:
    torch.manual_seed(args.seed)
    model, opt = build(neuron, mode, args, device)
    x = (torch.rand(steps, args.batch, args.inputs, device=device) < args.rate).float()
    y = torch.randint(0, 20, (args.batch,), device=device)

    def call():
        train_batch(model, x, y, opt, mode, window=min(args.window, steps))

    call()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with SavedTensorTracker() as tracker:
        call()
    sync(device)
    row = {"peak_saved_bytes": int(tracker.peak)}
    if device.type == "cuda":
        row["cuda_peak_bytes"] = cuda_peak_bytes(device)
    walls, cpus = [], []
    for _ in range(args.repeats):
        wall, cpu = timed(call, device, cpu=True)
        walls.append(wall)
        cpus.append(cpu)
    row["time"] = {"median_s": statistics.median(walls), "min_s": min(walls), "n": len(walls)}
    row["cpu_time_s"] = statistics.median(cpus)
    return row


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--neurons", default=",".join(NEURONS), help="comma list of neurons")
    p.add_argument("--T", type=int, nargs="+", help="sequence lengths (default 25 50 100 200)")
    p.add_argument("--window", type=int, default=10, help="S-TLLR learning-signal window")
    p.add_argument("--hidden", type=int, default=450)
    p.add_argument("--inputs", type=int, default=700)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rate", type=float, default=0.05, help="input spike probability")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=540.0, help="time budget, s")
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick: 1)")
    args = p.parse_args(argv)
    set_threads(args.threads, args.quick)
    if args.quick:
        args.T = args.T or list(QUICK_T)
        args.hidden, args.inputs, args.batch = 16, 30, 4
        args.window = min(args.window, 3)
        args.repeats = min(args.repeats, 2)
        args.budget_s = min(args.budget_s, 30.0)
    args.T = sorted(set(args.T or FULL_T))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    start = time.perf_counter()
    deadline = start + args.budget_s
    neurons = [n.strip() for n in args.neurons.split(",") if n.strip()]
    result = {
        "benchmark": "neuron_step",
        "quick": args.quick,
        "env": environment(device),
        "config": {
            "T": args.T,
            "window": args.window,
            "hidden": args.hidden,
            "inputs": args.inputs,
            "batch": args.batch,
            "rate": args.rate,
            "repeats": args.repeats,
            "budget_s": args.budget_s,
            "optimizer": "SGD lr=1e-4",
            "time_measure": "wall s of one stllr.training.train_batch call (median)",
            "memory_measure": "stllr.memory.SavedTensorTracker peak (bytes held for backward)",
        },
        "points": [],
        "ratios": [],
    }
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for steps in args.T:
        for neuron in neurons:
            rows = {}
            for mode in ("stllr", "bptt"):
                point = {"neuron": neuron, "mode": mode, "T": steps}
                prev = last.get((neuron, mode))
                # one warm-up, one tracked and `repeats` timed calls, linear in T
                projected = None if prev is None else prev[1] * steps / prev[0] * (args.repeats + 2)
                if projected is not None and time.perf_counter() + projected > deadline:
                    point["skipped"] = f"projected {projected:.1f} s passes the time budget"
                else:
                    point.update(measure(neuron, mode, steps, args, device))
                    last[(neuron, mode)] = (steps, point["time"]["median_s"])
                    rows[mode] = point
                result["points"].append(point)
            if len(rows) == 2:
                s, b = rows["stllr"], rows["bptt"]
                result["ratios"].append(
                    {
                        "neuron": neuron,
                        "T": steps,
                        "bptt_over_stllr_time": b["time"]["median_s"] / s["time"]["median_s"],
                        "bptt_over_stllr_saved_bytes": b["peak_saved_bytes"]
                        / max(s["peak_saved_bytes"], 1),
                    }
                )
    result["elapsed_s"] = time.perf_counter() - start
    result["load_average_at_end"] = load_average()
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
