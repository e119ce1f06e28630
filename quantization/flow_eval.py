"""Optical flow from a quantized FSFN (docs/flow.md, "Deployment").

The integer network (:func:`quantization.convert.to_float_graph` of an
:class:`~stllr.models.fsfn.FSFN`, then PTQ) has the flow heads ``flow1`` (finest, the
last node) … ``flow4``, 1×1-conv readouts whose integer state ``o`` is the flow in units
of ``Readout.out_lsb`` pixels. As the float model is scored (:mod:`stllr.flow.training`),
the prediction is the finest head's ``o`` at the last step of the window::

    flow[b] = o_flow1[T−1, b] · out_lsb            [B, 2, h/2, w/2], pixels

and the AEE is :func:`stllr.flow.metrics.window_errors` of that prediction.
"""

from __future__ import annotations

import torch

from quantization.emulator import IntegerEmulator
from quantization.network import QNetwork
from stllr.flow.metrics import SequenceScore, sequence_score, window_errors

FINEST = "flow1"


def integer_flow(emu: IntegerEmulator, x: torch.Tensor, head: str = FINEST) -> torch.Tensor:
    """The flow ``[B, 2, h, w]`` (pixels, float64) of head ``head`` at the last step of
    float frames ``x`` ``[T, B, C, H, W]`` (quantized with the network's input format)."""
    res = emu.run(x, record=(head,))
    node = emu.qnet.node(head)
    return res.records[head][-1].double() * node.out_lsb


def evaluate_integer_flow(qnet: QNetwork, tests: dict, batch_size: int,
                          device="cpu") -> list[SequenceScore]:  # fmt: skip
    """AEE and outlier % of every test sequence (``tests``: name → window dataset), the
    integer network run by the emulator (``delay = 0``, the float model's timing)."""
    from stllr.flow.run import batches

    emu = IntegerEmulator(qnet, delay=0, device=device)
    scores = []
    for name, data in tests.items():
        errors = []
        for batch in batches(data, batch_size):
            pred = integer_flow(emu, batch.x.to(emu.device)).cpu().to(batch.flow.dtype)
            errors += window_errors(pred, batch.flow, batch.events)
        scores.append(sequence_score(name, errors))
    return scores
