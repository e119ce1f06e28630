"""Training and evaluation of a flow model over one batch of windows (docs/flow.md §4, §7).

``x`` is ``[T, B, C, h, w]``; the model returns the multi-scale flows of each step.

``stllr``
    ``zero_grad``; the first ``T − window`` steps run without a graph; each of the last
    ``window`` steps (the paper: one, T_l = T − 1) gets ``L(flows[t])`` and an immediate
    ``backward()``; one optimiser step. With the ``"sum"`` readout the flows of the last
    step integrate the whole window.
``bptt``
    all T steps in one graph, ``L(flows[T−1])``, one backward through time, one step.

L is the self-supervised loss or, on the stand-in, the supervised one
(:mod:`stllr.flow.loss`). Evaluation runs all T steps without a graph and scores the
finest flow of the last step (:mod:`stllr.flow.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stllr.flow.dataset import FlowSample
from stllr.flow.loss import self_supervised_loss, supervised_loss
from stllr.flow.metrics import WindowError, window_errors
from stllr.models.base import SpikingModel
from stllr.weight_standardization import deferred_weight_gradients

FLOW_MODES = ("stllr", "bptt")
LossFn = Callable[[tuple[torch.Tensor, ...], FlowSample], torch.Tensor]


def flow_loss(kind: str, dt: int) -> LossFn:
    """``kind`` "photometric" (self-supervised, λ_smooth by ``dt``) or "supervised"."""
    if kind == "supervised":
        return lambda flows, b: supervised_loss(flows, b.flow)
    if kind == "photometric":
        return lambda flows, b: self_supervised_loss(flows, b.gray0, b.gray1, dt)
    raise ValueError(f"flow loss must be 'photometric' or 'supervised', got {kind!r}")


def train_flow_batch(
    model: SpikingModel,
    batch: FlowSample,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    mode: str = "stllr",
    window: int = 1,
) -> float:
    """One optimiser step on ``batch``; returns the loss of the last step."""
    if mode not in FLOW_MODES:
        raise ValueError(f"flow training mode must be one of {FLOW_MODES}, got {mode!r}")
    if mode != model.family:
        raise ValueError(f"mode {mode!r} needs a {mode} model, got family {model.family!r}")
    x = batch.x
    steps = x.shape[0]
    model.train()
    model.reset_state()
    optimizer.zero_grad(set_to_none=True)
    if mode == "bptt":
        for t in range(steps):
            flows = model(x[t])
        loss = loss_fn(flows, batch)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    start = max(steps - window, 0)
    with deferred_weight_gradients(model) as flush:
        with torch.no_grad():
            for t in range(start):
                model(x[t])
        for t in range(start, steps):
            loss = loss_fn(model(x[t]), batch)
            loss.backward()
        flush()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict_flow(model: SpikingModel, x: torch.Tensor) -> torch.Tensor:
    """The finest flow ``[B, 2, h/2, w/2]`` of the last step of ``x`` ``[T, B, C, h, w]``."""
    model.eval()
    model.reset_state()
    for t in range(x.shape[0]):
        flows = model(x[t])
    return flows[0]


def evaluate_flow_batch(model: SpikingModel, batch: FlowSample) -> list[WindowError]:
    """Per-window AEE / outlier % of the model's prediction on ``batch``."""
    return window_errors(predict_flow(model, batch.x), batch.flow, batch.events)
