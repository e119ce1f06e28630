"""A quantized FSFN in Lava ``fixed_pt``: its flow, and its flow head's on-device learning
replayed (docs/flow.md §10).

One home for what benchmarks/flow_quantized_aee.py and the flow pipeline
(``pipeline.flow_deploy``, ``pipeline.flow_adapt``) run in Lava:

* :func:`lava_flow`: windows ``x`` ``[T, B, C, H, W]`` (float frames, quantized with the
  network's input format) run through Lava, the prediction read as the emulator's
  (:func:`quantization.flow_eval.integer_flow`): the finest head's integer state ``o`` at
  the last step of each window, times ``out_lsb``::

      flow[b] = o_flow1[b, T−1] · out_lsb           [B, 2, h, w], pixels, float64

* :func:`replay_flow_head`: the head's learning of
  :func:`quantization.flow_eval.adapt_flow_head` over a few windows, done by the
  emulator, then replayed in Lava with the same 8-bit signals (L at each window's last
  step, 0 before); Lava's learned weights must equal the emulator's bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from lava_models.exporter import output_shapes
from lava_models.runner import run_lava
from quantization.emulator import IntegerEmulator
from quantization.flow_eval import FINEST, adapt_flow_head
from quantization.network import QNetwork
from quantization.ptq import quantize_input


def lava_flow(qnet: QNetwork, x: torch.Tensor, timeout_s: float = 600.0) -> torch.Tensor:
    """Lava ``fixed_pt``'s finest flow ``[B, 2, h, w]`` (px) at the last step of each window
    of ``x`` ``[T, B, C, H, W]`` (module doc); the state is reset between windows."""
    frames = quantize_input(x, qnet.input_format).permute(1, 0, 2, 3, 4).numpy()
    res = run_lava(qnet, frames, timeout_s=timeout_s)
    n, steps = frames.shape[:2]
    last = res.outputs[FINEST].reshape(n, steps, *output_shapes(qnet)[FINEST])[:, -1]
    return torch.as_tensor(np.ascontiguousarray(last)).double() * qnet.node(FINEST).out_lsb


class HeadReplay(NamedTuple):
    """The flow head's integer weights ``[2, C]`` (or as stored) after the replayed windows:
    learned by Lava, by the emulator, and as deployed before learning."""

    lava: np.ndarray
    emulator: np.ndarray
    before: np.ndarray

    @property
    def differing(self) -> int:
        """Weights where Lava and the emulator differ (0: bit-exact)."""
        return int((self.lava != self.emulator).sum())

    @property
    def moved(self) -> int:
        """Weights the emulator's learning changed."""
        return int((self.emulator != self.before).sum())


def replay_flow_head(plastic: QNetwork, windows: list, event_mask: bool = False,
                     timeout_s: float = 600.0) -> HeadReplay:  # fmt: skip
    """The finest head of ``plastic`` (it carries a ``LearningSpec``) learns over
    ``windows`` (one-window ``FlowSample`` batches) in the emulator, then in Lava with the
    emulator's signals (module doc)."""
    emu = IntegerEmulator(plastic)
    given = adapt_flow_head(emu, windows, event_mask=event_mask)
    x = torch.cat([w.x for w in windows], dim=1)  # [T, k, C, H, W]
    frames = quantize_input(x, plastic.input_format).permute(1, 0, 2, 3, 4).numpy()
    sig = np.zeros((len(windows), x.shape[0], *given[0].shape[1:]), dtype=np.int64)
    sig[:, -1] = torch.cat(given).numpy()
    res = run_lava(plastic, frames, {FINEST: sig}, timeout_s=timeout_s)
    return HeadReplay(
        lava=np.asarray(res.state[FINEST]["weights"]),
        emulator=emu.weights(FINEST)["w"].numpy(),
        before=plastic.node(FINEST).weight.numpy(),
    )
