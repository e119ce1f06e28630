"""The energy of a plastic node's pre-traces per input, measured in the integer emulator:
the host-side calibration of a readout's per-input step sizes
(:mod:`quantization.preconditioning`, docs/adaptation.md §3). Kept apart from that module,
whose pure integer step runs inside the node kinds, so the kinds do not import the
emulator."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from quantization.emulator import IntegerEmulator
from quantization.ptq import quantize_input


def input_energy(qnet, name: str, frames: Iterable[torch.Tensor], window: int) -> torch.Tensor:
    """``E_i = mean P_i[t]²`` ``[in]`` (float units) of plastic node ``name``'s pre-traces over
    the last ``window`` steps of ``frames`` (float ``[T, B, ...]`` batches), run in the
    integer emulator with learning off (the traces the device will learn with)."""
    node = qnet.node(name)
    lsb = 2.0**-node.learning.p_frac
    emu = IntegerEmulator(qnet)
    total, count = None, 0
    for x in frames:
        xi = quantize_input(x, qnet.input_format)
        emu.reset()
        steps = xi.shape[0]
        for t in range(steps):
            emu.step(xi[t])
            if t < steps - window:
                continue
            p = emu.state[name].traces.p.double() * lsb
            # a 1×1-conv readout's input channel c is one weight column: its H·W positions
            sq = (p * p).sum(dim=(0, 2, 3)) if p.ndim == 4 else (p * p).sum(dim=0)
            total = sq if total is None else total + sq
            count += p.shape[0]
    if total is None:
        raise ValueError("input_energy: no calibration steps")
    return total / count
