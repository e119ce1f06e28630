"""Optical flow from a quantized FSFN (docs/flow.md, "Deployment").

The integer network (:func:`quantization.convert.to_float_graph` of an
:class:`~stllr.models.fsfn.FSFN`, then PTQ) has the flow heads ``flow1`` (finest, the
last node) … ``flow4``, 1×1-conv readouts whose integer state ``o`` is the flow in units
of ``Readout.out_lsb`` pixels. As the float model is scored (:mod:`stllr.flow.training`),
the prediction is the finest head's ``o`` at the last step of the window::

    flow[b] = o_flow1[T−1, b] · out_lsb            [B, 2, h/2, w/2], pixels

and the AEE is :func:`stllr.flow.metrics.window_errors` of that prediction.

On-device adaptation of a flow head (:func:`adapt_flow_head`): the head carries a
``LearningSpec`` (:func:`quantization.learning.attach_learning`); per training window
(one sample, state reset), after the last step's forward the third factor is the flow
error, the gradient of ``½‖o − g‖²`` with ``g`` the ground truth averaged over the
head's r × r blocks (as the supervised loss pools it, ``stllr.flow.loss``; missing gt: 0)::

    L[T−1] = quantize_signal(o[T−1]·out_lsb − pool_r(g))      8-bit, [1, 2, h, w]

and the head takes its S-TLLR step (``IntegerEmulator.apply_signals``); the earlier steps
get no signal (the paper's ``window = 1``).
"""

from __future__ import annotations

import torch

from quantization.emulator import IntegerEmulator
from quantization.learning import quantize_signal
from quantization.network import QNetwork
from stllr.flow.loss import resize_image
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


def flow_error_signal(o_int: torch.Tensor, node, gt: torch.Tensor, events=None) -> torch.Tensor:
    """``quantize_signal(o·out_lsb − pool(gt))`` (module doc): ``o_int`` ``[B, 2, h, w]``
    the head's integer state, ``gt`` ``[B, 2, H, W]`` pixels (NaN: missing, error 0);
    ``events`` ``[B, H, W]`` (optional): only blocks with an event get a signal (the
    evaluation's mask)."""
    size = tuple(o_int.shape[-2:])
    target = resize_image(torch.nan_to_num(gt.double()), size)
    err = o_int.double() * node.out_lsb - target.to(o_int.device)
    keep = resize_image(torch.isfinite(gt).all(1, keepdim=True).double(), size) == 1
    if events is not None:
        keep = keep & (resize_image(events[:, None].double(), size) > 0)
    return quantize_signal(err * keep.to(err.device), node.learning)


def adapt_flow_head(emu: IntegerEmulator, windows, head: str = FINEST,
                    event_mask: bool = False) -> list[torch.Tensor]:  # fmt: skip
    """On-device learning of ``head`` over ``windows`` (one-window ``FlowSample`` batches,
    in order; module doc). Returns the signal given at each window's last step
    (``[1, 2, h, w]`` int64), e.g. to replay them in Lava. ``event_mask``: signals only
    where the window has events (:func:`flow_error_signal`)."""
    node = emu.qnet.node(head)
    if node.learning is None:
        raise ValueError(f"node {head!r} has no LearningSpec (attach_learning first)")
    fmt = emu.qnet.input_format
    from quantization.ptq import quantize_input

    given = []
    for w in windows:
        x = quantize_input(w.x, fmt)
        emu.reset()
        for t in range(x.shape[0]):
            outs = emu.forward(x[t])
        sig = flow_error_signal(outs[head], node, w.flow, w.events if event_mask else None)
        emu.apply_signals({head: sig})
        given.append(sig.cpu())
    return given
