"""Training and evaluation over one batch of sequences ``x`` ``[T, B, *input_shape]``.

Modes (docs/rule.md §6; OTTT: docs/rule.md §9):

``stllr``
    ``zero_grad`` once; for each step t compute ``o[t] = model(x[t])``; the last
    ``window`` steps (t ≥ T − window) get ``CE(o[t], y)`` (batch mean) and an
    immediate ``backward()``, so gradients accumulate; one ``optimizer.step()``
    after the loop. Steps before the window run without a graph.
``stllr_online``
    as ``stllr`` but ``zero_grad`` / ``backward`` / ``step`` at every eligible step.
``bptt``
    one ``CE(Σ_t o[t], y)`` through time, one step.
``ottt``
    every step gets ``((1 − 0.001)·CE(o[t], y) + 0.001·MSE(o[t], onehot(y))) / T``
    (OTTT_A: gradients accumulate, one step per sequence). Use it with
    :func:`ottt_factors` (α_post = 0, λ_pre = γ).

Training and its returned logits use ``Σ_t o[t]`` over **all** T steps of the (padded)
batch: the learning window counts from the end of the padded sequence, as in the reference
code (docs/decisions.md, "Padding and evaluation"). Evaluation given the samples'
``lengths`` sums each sample's logits over its own steps only, ``Σ_{t < len_b} o_b[t]``:
the score it gets run alone, whatever the batch it is padded into (:func:`step_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stllr.factors import STLLRFactors
from stllr.models.base import SpikingModel
from stllr.padding import step_mask
from stllr.validation import check_labels, check_sequence
from stllr.weight_standardization import deferred_weight_gradients

TRAINING_MODES: tuple[str, ...] = ("stllr", "stllr_online", "bptt", "ottt")
OTTT_MSE_WEIGHT = 0.001


@dataclass(frozen=True)
class BatchResult:
    """Loss of the summed logits (as the reference logs it) and the summed logits ``[B, K]``."""

    loss: float
    logits: torch.Tensor

    def correct(self, y: torch.Tensor) -> int:
        return int((self.logits.argmax(dim=1) == y).sum())


def ottt_factors(gamma: float) -> STLLRFactors:
    """OTTT as an S-TLLR special case: α_post = 0, α_pre = 1, λ_pre = γ."""
    return STLLRFactors(lambda_post=0.0, lambda_pre=gamma, alpha_post=0.0, alpha_pre=1.0)


def _checked(model: SpikingModel, x, y=None):
    layout = f"[T, B, {', '.join(str(d) for d in model.input_shape)}]"
    x = check_sequence("x", x, model.input_shape, layout)
    if y is not None:
        y = check_labels("y", y, x.shape[1], model.num_classes)
    return x, y


def train_batch(
    model: SpikingModel,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    mode: str = "stllr",
    window: int = 10,
) -> BatchResult:
    """Train on one batch; see the module docstring for the modes.

    Args:
        model: a :class:`SpikingModel` (S-TLLR family for ``stllr*``/``ottt``).
        x: inputs ``[T, B, *model.input_shape]``, float.
        y: class indices ``[B]``.
        optimizer: stepped once per batch (every eligible step in ``stllr_online``).
        mode: one of :data:`TRAINING_MODES`.
        window: number of last steps with a learning signal (``--delay-ls``), ≥ 1.
    """
    if mode not in TRAINING_MODES:
        raise ValueError(f"mode must be one of {TRAINING_MODES}, got {mode!r}")
    if mode == "bptt" and model.family != "bptt":
        raise ValueError(f"mode='bptt' needs a BPTT model, got {type(model).__name__}")
    if mode != "bptt" and model.family != "stllr":
        raise ValueError(f"mode={mode!r} needs an S-TLLR model, got {type(model).__name__}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer ≥ 1 (number of last steps), got {window!r}")
    x, y = _checked(model, x, y)
    model.train()
    model.reset_state()
    steps = x.shape[0]
    optimizer.zero_grad(set_to_none=True)
    if mode == "bptt":
        logits = sum(model(x[t], y) for t in range(steps))
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        return BatchResult(float(loss.detach()), logits.detach())

    start = 0 if mode == "ottt" else max(steps - window, 0)
    logits = x.new_zeros(x.shape[1], model.num_classes)
    with deferred_weight_gradients(model) as flush_weight_grads:
        # Steps before the window need no graph: one call for all of them.
        logits += model.forward_no_graph(x[:start])
        for t in range(start, steps):
            out = model(x[t], y)
            if mode == "ottt":
                target = F.one_hot(y, model.num_classes).to(out.dtype)
                loss_t = (1 - OTTT_MSE_WEIGHT) * F.cross_entropy(out, y)
                loss_t = (loss_t + OTTT_MSE_WEIGHT * F.mse_loss(out, target)) / steps
            else:
                loss_t = F.cross_entropy(out, y)
            if mode == "stllr_online":
                optimizer.zero_grad(set_to_none=True)
                loss_t.backward()
                flush_weight_grads()
                optimizer.step()
            else:
                loss_t.backward()
            logits += out.detach()
        flush_weight_grads()
    if mode != "stllr_online":
        optimizer.step()
    return BatchResult(float(F.cross_entropy(logits, y)), logits)


@torch.no_grad()
def evaluate_batch(
    model: SpikingModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
):
    """Summed logits ``[B, K]`` (and the loss when ``y`` is given).

    With ``lengths`` ``[B]`` (the samples' steps before zero padding) sample b's logits are
    ``Σ_{t < len_b} o_b[t]``, what it scores alone; without, ``Σ_t o[t]`` over all T steps.
    """
    x, y = _checked(model, x, y)
    mask = None if lengths is None else step_mask(lengths, x.shape[0], x.dtype).to(x.device)
    if mask is not None and mask.shape[1] != x.shape[1]:
        raise ValueError(f"{mask.shape[1]} lengths for a batch of {x.shape[1]} samples")
    model.eval()
    model.reset_state()
    logits = model.forward_no_graph(x, mask)
    loss = float(F.cross_entropy(logits, y)) if y is not None else float("nan")
    return BatchResult(loss, logits)
