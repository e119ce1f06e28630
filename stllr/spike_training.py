"""Training and evaluation of a spiking-output network on one batch (docs/first_spike.md).

The whole sequence ``x`` ``[T, B, *input_shape]`` runs forward with a graph, collecting the
output spikes ``s`` and membranes ``v`` ``[T, B, K]``; then one loss over the sequence
(:mod:`stllr.functional.first_spike`), one backward (BPTT), optional gradient-norm clipping,
one optimiser step. Each sample is read over its own ``T_b`` steps (``lengths``), in training
and evaluation alike. The loss is:

``first_spike``  ``L_FS`` with the regulariser λ, β in training (λ = 0 in evaluation)
``rate``         ``L_FR``

:class:`~stllr.training.BatchResult`'s ``logits`` are ``−t_first`` (first_spike: its argmax
is the FS prediction) or the rates (rate: the FR prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stllr.config import ExperimentConfig
from stllr.functional.first_spike import (
    firing_rate_loss,
    firing_rates,
    first_spike_loss,
    first_spike_times,
)
from stllr.models.spiking_output import SpikingOutputNet
from stllr.spike_metrics import SpikeReadoutTally
from stllr.training import BatchResult
from stllr.validation import check_labels, check_sequence


@dataclass(frozen=True)
class SpikeReadout:
    """The read-out and loss settings of a spiking-output run (config keys of that name)."""

    kind: str = "first_spike"
    fs_alpha: float = 0.2
    fs_d: int = 16
    fs_a: float = 200.0
    fr_alpha: float = 20.0
    treg_lambda: float = 0.01
    treg_beta: float = 0.02
    clip_norm: float = 0.0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> SpikeReadout | None:
        """The settings of ``cfg``, or None for ``readout = accumulate``."""
        if cfg.readout == "accumulate":
            return None
        return cls(
            cfg.readout,
            cfg.fs_alpha,
            cfg.fs_d,
            cfg.fs_a,
            cfg.fr_alpha,
            cfg.treg_lambda,
            cfg.treg_beta,
            cfg.clip_norm,
        )


def run_sequence(model: SpikingOutputNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, v)`` ``[T, B, K]``: output spikes (in the graph) and membranes (detached)."""
    model.reset_state()
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        spikes.append(model(x[t]))
        membranes.append(model.output_membrane())
    return torch.stack(spikes), torch.stack(membranes)


def sequence_loss(ro: SpikeReadout, s, v, y, lengths, training: bool):
    """``(loss, t_first, logits)`` of one batch's output (module docstring)."""
    t_first = first_spike_times(s, v, ro.fs_d, ro.fs_a, lengths)
    if ro.kind == "first_spike":
        lam = ro.treg_lambda if training else 0.0
        horizon = s.shape[0] if lengths is None else lengths.to(s.device).view(-1, 1)
        loss = first_spike_loss(t_first, y, horizon, ro.fs_alpha, lam, ro.treg_beta)
        return loss, t_first, -t_first.detach()
    rate = firing_rates(s, lengths)
    return firing_rate_loss(rate, y, ro.fr_alpha), t_first, rate.detach()


def _checked(model: SpikingOutputNet, x, y, lengths):
    layout = f"[T, B, {', '.join(str(d) for d in model.input_shape)}]"
    x = check_sequence("x", x, model.input_shape, layout)
    y = check_labels("y", y, x.shape[1], model.num_classes)
    if lengths is not None:
        lengths = torch.as_tensor(lengths).to(x.device)
    return x, y, lengths


def train_spike_batch(
    model: SpikingOutputNet,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    ro: SpikeReadout,
    lengths: torch.Tensor | None = None,
) -> BatchResult:
    """One BPTT step on the batch (module docstring)."""
    x, y, lengths = _checked(model, x, y, lengths)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    s, v = run_sequence(model, x)
    loss, _, logits = sequence_loss(ro, s, v, y, lengths, training=True)
    loss.backward()
    if ro.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), ro.clip_norm)
    optimizer.step()
    return BatchResult(float(loss.detach()), logits)


@torch.no_grad()
def evaluate_spike_batch(
    model: SpikingOutputNet,
    x: torch.Tensor,
    y: torch.Tensor,
    ro: SpikeReadout,
    lengths: torch.Tensor | None = None,
    tally: SpikeReadoutTally | None = None,
) -> BatchResult:
    """Loss (λ = 0) and logits of the batch; FS/FR metrics added to ``tally`` if given."""
    x, y, lengths = _checked(model, x, y, lengths)
    model.eval()
    s, v = run_sequence(model, x)
    loss, t_first, logits = sequence_loss(ro, s, v, y, lengths, training=False)
    if tally is not None:
        tally.add(s, t_first, y, lengths, model.hidden_spikes, model.hidden_neurons)
    return BatchResult(float(loss), logits)
