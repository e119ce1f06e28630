"""Training throughput (samples/s) of every task model, S-TLLR vs BPTT.

For each task's reference configuration (experiments/*.toml: input shape, T, batch
size, learning window, model) it times ``stllr.training.train_batch`` on random
inputs of the task's shape (Bernoulli 5 % spikes; the throughput of dense kernels does
not depend on the data) and reports samples per second, median of ``--repeats``
calls after one warm-up call, S-TLLR and BPTT interleaved, plus their ratio.

Prints one JSON document; ``--quick`` uses narrow models and short sequences.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from stllr.config import load_config
from stllr.models.factory import build_model
from stllr.training import train_batch

ROOT = Path(__file__).resolve().parents[1]

#: task model → (config pair, input shape [C,H,W] or [channels], classes, T)
TASKS = {
    "shd_rsnn": (("shd_stllr_bp", "shd_bptt"), (700,), 20, 100),
    "gesture_vgg9": (("gesture_stllr", "gesture_bptt"), (2, 32, 32), 11, 20),
    "cifar10dvs_vgg9": (("cifar10dvs_stllr", "cifar10dvs_bptt"), (2, 48, 48), 10, 10),
    "ncaltech101_vgg9": (("ncaltech101_stllr", "ncaltech101_bptt"), (2, 45, 60), 101, 10),
    "gesture_resnet18": (("gesture_resnet18_stllr", "gesture_resnet18_bptt"), (2, 32, 32), 11, 20),
}


def _time_calls(model, mode, window, x, y, repeats):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_batch(model, x, y, opt, mode=mode, window=window)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_batch(model, x, y, opt, mode=mode, window=window)
        times.append(time.perf_counter() - t0)
    return times


def measure(name: str, quick: bool, repeats: int) -> dict:
    (stllr_cfg, bptt_cfg), shape, classes, steps = TASKS[name]
    result = {"input_shape": list(shape), "T": steps, "classes": classes}
    cfgs = {}
    for method, cfg_name in (("stllr", stllr_cfg), ("bptt", bptt_cfg)):
        cfg = load_config(ROOT / "experiments" / f"{cfg_name}.toml")
        if quick:
            narrow = (4, 4, 8, 8, 8, 8, 8, 8) if cfg.arch == "vgg9" else (4, 8, 8, 8)
            cfg = cfg.replace(
                channels=narrow if cfg.arch != "shd_rsnn" else (), hidden=32, batch_size=4
            )
        cfgs[method] = cfg
    steps = 6 if quick else steps
    batch = cfgs["stllr"].batch_size
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, *shape, generator=g) < 0.05).float()
    y = torch.randint(0, classes, (batch,), generator=g)
    models = {}
    for method, cfg in cfgs.items():
        torch.manual_seed(0)
        models[method] = build_model(cfg, shape, classes)[0]
    times = {"stllr": [], "bptt": []}
    for _ in range(repeats):  # interleave the two modes
        for method, model in models.items():
            window = min(cfgs[method].window, steps)
            times[method] += _time_calls(model, method, window, x, y, 1)
    for method in ("stllr", "bptt"):
        med = statistics.median(times[method])
        result[method] = {
            "config": f"experiments/{cfgs[method].name}.toml",
            "batch": batch,
            "window": min(cfgs[method].window, steps),
            "median_s_per_batch": med,
            "samples_per_s": batch / med,
        }
    result["stllr_over_bptt_throughput"] = (
        result["stllr"]["samples_per_s"] / result["bptt"]["samples_per_s"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="narrow models, T = 6")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's)")
    parser.add_argument("--only", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {
        "benchmark": "samples_per_second",
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "tasks": {name: measure(name, args.quick, args.repeats) for name in args.only},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
