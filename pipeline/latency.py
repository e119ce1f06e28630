"""Latency of a deployed readout network, float and integer: the quantize stage's metric.

Two numbers per sample ``b`` of ``T_b`` steps, in steps (1 … T_b; multiply by the frame
length for time), for a network whose output node is a readout fed by a spiking layer:

* **first-spike latency** ``ℓ_b = min_n k_first[b, n]``: the step of the first spike of
  the readout's input layer (docs/first_spike.md's definition, on the layer the readout
  reads; :func:`stllr.spike_metrics.first_spike_steps`), averaged over the samples with
  a spike; ``silent`` counts the others;
* **decision step** ``d_b``: the first step from which the running prediction
  ``argmax_k Σ_{t ≤ j} o[t, b, k]`` stays equal to the final one (the prediction of the
  whole sample) for every ``j`` up to ``T_b``, averaged over all samples.

The float model is run step by step with a forward hook on the module of the readout's
input node (:func:`quantization.convert.node_modules`); the integer network by the
emulator (:meth:`quantization.emulator.IntegerEmulator.run` with records), on the same
test samples. A network whose output is not fed by one spiking layer has no latency here
(:func:`latency_node` returns ``None``).
"""

from __future__ import annotations

import math

import torch

from stllr.padding import step_mask
from stllr.spike_metrics import first_spike_steps


def latency_node(qnet) -> str | None:
    """The spiking layer whose spikes the output node reads alone, or ``None``."""
    from quantization.network import SPIKING_NODES, Readout

    out = qnet.nodes[-1]
    if not isinstance(out, Readout) or len(out.inputs) != 1 or out.inputs[0] == "input":
        return None
    src = qnet.node(out.inputs[0])
    return src.name if isinstance(src, SPIKING_NODES) else None


def first_spike_latency(spikes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``ℓ_b`` ``[B]`` (float64, ``inf`` for a silent sample) of spikes ``[T, B, *N]``."""
    flat = spikes.reshape(spikes.shape[0], spikes.shape[1], -1)
    return first_spike_steps(flat, lengths).amin(dim=1)


def decision_steps(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``d_b`` ``[B]`` (int64) of per-step logits ``[T, B, K]`` (steps ``t ≥ T_b`` ignored)."""
    steps = logits.shape[0]
    mask = step_mask(lengths, steps, logits.dtype).to(logits.device)
    running = torch.cumsum(logits * mask.unsqueeze(-1), dim=0).argmax(dim=2)  # [T, B]
    final = running[(lengths - 1).clamp(min=0), torch.arange(logits.shape[1])]
    differs = (running != final) & (mask > 0)
    t = torch.arange(1, steps + 1).unsqueeze(1).expand_as(differs)
    last_differ = torch.where(differs, t, torch.zeros_like(t)).amax(dim=0)  # 0: never
    return last_differ + 1


class LatencyTally:
    """Sums of :func:`first_spike_latency` and :func:`decision_steps` over batches."""

    def __init__(self) -> None:
        self.samples = self.silent = 0
        self.latency_sum = self.decision_sum = 0.0

    def add(self, spikes, logits, lengths) -> None:
        lat = first_spike_latency(spikes, lengths)
        fired = torch.isfinite(lat)
        self.samples += int(lat.numel())
        self.silent += int((~fired).sum())
        self.latency_sum += float(lat[fired].sum())
        self.decision_sum += float(decision_steps(logits, lengths).double().sum())

    def result(self) -> dict:
        n_fired = self.samples - self.silent
        return {
            "samples": self.samples,
            "first_spike_latency": self.latency_sum / n_fired if n_fired else math.nan,
            "silent": self.silent,
            "decision_step": self.decision_sum / self.samples if self.samples else math.nan,
        }


def float_latency(model, node: str, test, batch_size: int) -> dict:
    """:class:`LatencyTally` of the float model on ``test`` (eval mode, no graph)."""
    from quantization.convert import node_modules
    from stllr.trainer import batches

    module = node_modules(model)[node]
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(out.detach()))
    tally = LatencyTally()
    model.eval()
    try:
        with torch.no_grad():
            for x, _, lengths in batches(test, batch_size):
                model.reset_state()
                seen.clear()
                logits = torch.stack([model(x[t]) for t in range(x.shape[0])])
                tally.add(torch.stack(seen), logits, lengths)
    finally:
        handle.remove()
        model.reset_state()
    return tally.result()


def integer_latency(qnet, node: str, test, batch_size: int) -> dict:
    """:class:`LatencyTally` of the integer emulator (``delay = 0``) on ``test``."""
    from quantization.emulator import IntegerEmulator
    from stllr.trainer import batches

    out = qnet.nodes[-1].name
    tally = LatencyTally()
    emu = IntegerEmulator(qnet, delay=0)
    for x, _, lengths in batches(test, batch_size):
        rec = emu.run(x, record=(node, out), lengths=lengths).records
        tally.add(torch.stack(rec[node]), torch.stack(rec[out]).double(), lengths)
    return tally.result()
