"""Integer emulator throughput vs the float model and vs Lava ``fixed_pt``, same network.

The network is the SHD shape without recurrence: 700 → 256 → 20 hard-reset LIF layers
(the kind Lava's built-in ``Dense``/``LIF`` run bit-exactly, ``hw_tests``), 8-bit PTQ,
T = 100 steps, 5 % input spike rate. Measured side by side in one run:

* ``float``: the torch model (``LinearSTLLR`` layers, eval, no grad), per batch size;
* ``emulator``: ``IntegerEmulator(qnet, delay=1)`` on the same batches (torch, CPU);
* ``lava``: Lava's ``fixed_pt`` Dense + LIF, one sample after another (Lava runs one
  network instance), timed over ``--lava-samples`` samples after a compile/warm-up run.

Prints samples/s for each batch size in ``--batches`` and the ratios; target:
emulator ≥ 100× Lava at the best batch size (batching is what the emulator is for;
batch 1 is reported too).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit, environment, set_threads, target

from quantization.emulator import IntegerEmulator
from quantization.ptq import PTQConfig, quantize_model
from stllr.models.chain import SpikingChain
from stllr.neuron import LIFParams


def dense_chain(sizes) -> SpikingChain:
    """Hard-reset ``LinearSTLLR`` layers (leak 3, threshold 0.6, gain 2.5 so that every
    layer fires); the output is the last layer's spikes."""
    model = SpikingChain.dense(sizes, LIFParams(leak=3.0, threshold=0.6, reset="hard"))
    with torch.no_grad():
        for layer in model.layers:
            layer.gain.fill_(2.5)
    return model


def _lava_samples_per_s(qnet, spikes: np.ndarray, samples: int, steps: int) -> dict:
    from lava_models.builtin import build_builtin_dense_network
    from lava_models.runtime import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    denses, lifs = build_builtin_dense_network(qnet)
    src = RingBuffer(data=spikes.T.astype(np.int32))  # [in, samples·T]
    src.s_out.connect(denses[0].s_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        t0 = time.perf_counter()
        src.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)  # compile + first sample
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        src.run(condition=RunSteps(num_steps=samples * steps), run_cfg=cfg)
        dt = time.perf_counter() - t0
    finally:
        src.stop()
    return {"samples_per_s": samples / dt, "ms_per_step": 1e3 * dt / (samples * steps),
            "first_run_s": warm}  # fmt: skip


def _torch_samples_per_s(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return batch * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256, 1024])
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    set_threads(args.threads, args.quick)
    sizes = (40, 16, 5) if args.quick else (700, 256, 20)
    steps = 10 if args.quick else args.steps
    batches = [1, 4] if args.quick else args.batches
    lava_samples = 1 if args.quick else args.lava_samples
    torch.manual_seed(0)
    model = dense_chain(sizes).eval()
    g = torch.Generator().manual_seed(1)
    x_all = (torch.rand(steps, max(batches), sizes[0], generator=g) < 0.05).float()
    qnet, _ = quantize_model(model, [x_all], PTQConfig(weight_bits=8))
    emu = IntegerEmulator(qnet, delay=1)
    lava_in = x_all[:, :lava_samples].permute(1, 0, 2).reshape(-1, sizes[0]).numpy()
    lava = _lava_samples_per_s(qnet, lava_in, lava_samples, steps)
    rows = []
    for batch in batches:
        x = x_all[:, :batch]

        def run_float(x=x):
            model.reset_state()
            with torch.no_grad():
                for t in range(steps):
                    model(x[t])

        def run_emulator(x=x):
            emu.run(x)  # the inference API: quantizes the frames, sums the logits

        float_sps = _torch_samples_per_s(run_float, batch, args.repeats)
        emu_sps = _torch_samples_per_s(run_emulator, batch, args.repeats)
        rows.append({"batch": batch, "float_samples_per_s": float_sps,
                     "emulator_samples_per_s": emu_sps,
                     "emulator_over_lava": emu_sps / lava["samples_per_s"],
                     "emulator_over_float": emu_sps / float_sps})  # fmt: skip
    best = max(r["emulator_over_lava"] for r in rows)
    result = {
        "benchmark": "emulator_throughput",
        "network": {"sizes": list(sizes), "steps": steps, "weight_bits": 8, "input_rate": 0.05},
        "lava_fixed_pt": lava,
        "per_batch": rows,
        "emulator_over_lava_best": target(best, ">=", 100.0),
        "environment": environment(torch.device("cpu")),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
