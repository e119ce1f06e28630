"""Lava ``fixed_pt`` ms/step per task model, with and without on-device learning, and the
integer emulator's speed-up on the same quantized network.

Task models (8-bit PTQ of freshly initialised float models; speed does not depend on
training): the SHD RSNN 700 → 256 recurrent → 20 (T = 100), a narrow VGG-9 (channels
16,16,32,32,32,32,32,32) and a narrow ResNet-18 (widths 8,8,16,16) on 2×32×32 frames
(T = 20); random 5 % input spikes. Learning: the last spiking layer and the readout are
plastic and receive a random third factor at every step.

Lava runs one sample after another (``lava_models.runner.run_lava``, state reset
between samples); its ms/step is ``(run(N samples) − run(1 sample)) / ((N − 1)·T)``,
which removes compilation and start-up (``--lava-samples N``). The emulator runs one
sample (batch 1) and a batch (``--batch``); the speed-up is samples/s over Lava's.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import emit, environment, set_threads

from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.ptq import PTQConfig, quantize_input, quantize_model


def _models(quick: bool):
    from stllr.models.resnet import SpikingResNet18
    from stllr.models.shd import SHDNetSTLLR
    from stllr.models.vgg import VGGSTLLR

    if quick:
        return {
            "shd_rsnn": (SHDNetSTLLR(num_inputs=40, hidden=16, num_classes=5), (40,), 10),
            "vgg9": (VGGSTLLR((2, 8, 8), 5, channels=(4, 8), pool_after=(0, 1)), (2, 8, 8), 10),
        }
    narrow = (16, 16, 32, 32, 32, 32, 32, 32)
    return {
        "shd_rsnn": (SHDNetSTLLR(num_inputs=700, hidden=256, num_classes=20), (700,), 100),
        "vgg9": (VGGSTLLR((2, 32, 32), 11, channels=narrow), (2, 32, 32), 20),
        "resnet18": (SpikingResNet18((2, 32, 32), 11, widths=(8, 8, 16, 16)), (2, 32, 32), 20),
    }


def _plastic(qnet) -> list[str]:
    spiking = [n.name for n in qnet.nodes if type(n).__name__ == "SpikingLayer"]
    return [spiking[-1], qnet.nodes[-1].name]


def _emulator_sps(qnet, x, signals, repeats: int) -> float:
    emu = IntegerEmulator(qnet)
    xi = quantize_input(x, qnet.input_format)

    def run():
        emu.reset()
        for t in range(xi.shape[0]):
            emu.step(xi[t], {k: v[t] for k, v in signals.items()} if signals else None)

    run()
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    return x.shape[1] * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lava-samples", type=int, default=6)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    set_threads(args.threads, args.quick)
    from lava_models.runner import run_lava

    torch.manual_seed(0)
    rows = []
    for name, (model, shape, steps) in _models(args.quick).items():
        model.eval()
        gen = torch.Generator().manual_seed(1)
        n_lava = 3 if args.quick else args.lava_samples
        batch = max(4 if args.quick else args.batch, n_lava)
        x = (torch.rand(steps, batch, *shape, generator=gen) < 0.05).float()
        qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
        plastic = _plastic(qnet)
        qlearn = attach_learning(qnet, plastic, [x], lr=1e-3)
        xi = quantize_input(x, qnet.input_format)
        shapes = {n: IntegerEmulator(qnet).forward(xi[0])[n].shape[1:] for n in plastic}
        sig = {n: torch.randint(-60, 61, (steps, batch, *shapes[n]), generator=gen)
               for n in plastic}  # fmt: skip
        row = {"model": name, "steps": steps, "input_shape": list(shape), "plastic": plastic}
        for label, net, signals in (("inference", qnet, {}), ("learning", qlearn, sig)):
            runs = {}
            for n in (1, n_lava):
                frames = xi[:, :n].transpose(0, 1).numpy()  # [N, T, ...]
                sig_n = {k: v[:, :n].transpose(0, 1).numpy() for k, v in signals.items()}
                runs[n] = run_lava(net, frames, sig_n).timing
            ms = 1e3 * (runs[n_lava]["run"] - runs[1]["run"]) / ((n_lava - 1) * steps)
            one = {k: v[:, :1] for k, v in signals.items()}
            emu1 = _emulator_sps(net, x[:, :1], one, args.repeats)
            emub = _emulator_sps(net, x, signals, args.repeats)
            lava_sps = 1e3 / (ms * steps)
            row[label] = {
                "lava_ms_per_step": ms,
                "lava_samples_per_s": lava_sps,
                "emulator_samples_per_s_batch1": emu1,
                f"emulator_samples_per_s_batch{batch}": emub,
                "speedup_batch1": emu1 / lava_sps,
                f"speedup_batch{batch}": emub / lava_sps,
                "lava_timing_s": runs,
            }
        rows.append(row)
    emit(
        {
            "benchmark": "lava_step_time",
            "quick": args.quick,
            "rows": rows,
            "environment": environment(torch.device("cpu")),
        },  # fmt: skip
        args.out,
    )


if __name__ == "__main__":
    main()
