"""Evaluation of a spiking output layer: FS and FR accuracy, spike count, first-spike latency.

Inputs per batch: output spikes ``s`` ``[T, B, K]``, the first-spike times ``t_first``
``[B, K]`` (:func:`stllr.functional.first_spike.first_spike_times`), labels ``y`` ``[B]`` and
the samples' lengths ``T_b`` ``[B]``. Definitions (docs/first_spike.md, "Evaluation"):

* **FS accuracy**: ``argmin_n t_first == y``; **FR accuracy**: ``argmax_n Σ_k s == y``.
* **spike count**: output spikes per sample, ``Σ_{k ≤ T_b, n} s[k, b, n]``, averaged over
  samples; with ``hidden_spikes`` (the hidden layers' spikes summed over the batch) and
  ``hidden_neurons`` also the hidden spikes per neuron per sample.
* **first-spike latency**: ``ℓ_b = min_n k_first[b, n]``, the step (1 … T_b) of the first
  output spike of sample b, averaged over the samples with at least one output spike;
  ``silent`` counts those without.
* **decision step** ``k_p``: the FS accuracy-with-time curve
  ``A(k) = #{b : FS correct and ℓ_b ≤ k} / N`` reaches ``p · max_k A(k)`` first at step
  ``k_p`` (the reference repository's "time delay" at 50 % and 90 %, there counted from 0).

The FS decision itself (:func:`fs_times`, :func:`fs_decision`) is one pure function of
spikes and membranes, shared by the float evaluation's rule and the integer networks
(pipeline, emulator): the class is ``argmin_n t_first[b, n]`` with (docs/first_spike.md)

    t_first[b, n] = k_first[b, n]          if neuron n fires within T_b
                  = T_b + r_neuron(b, n)   otherwise

``r_neuron ∈ {1 … K}`` ranks the sample's neurons by their largest membrane over its own
steps (largest first, the lower index first on ties), and ``argmin`` takes the lowest
index on ties. So the earliest-firing neuron wins (lowest index among those firing at the
same step); a sample without output spikes goes to the neuron whose membrane came highest.
These are the values :func:`stllr.functional.first_spike_times` returns in its forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from stllr.functional.first_spike import firing_rates, fr_prediction, fs_prediction
from stllr.padding import step_mask


def first_spike_steps(s: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``k_first[b, n]`` ``[B, K]``: the first step (1-based) with ``s = 1`` within the
    sample's own steps, ``inf`` for a neuron that stays silent."""
    steps = s.shape[0]
    fired = s > 0
    if lengths is not None:
        fired = fired & step_mask(lengths, steps).to(s.device).unsqueeze(-1)
    k = torch.arange(1, steps + 1, dtype=torch.float64, device=s.device).view(steps, 1, 1)
    times = torch.where(fired, k, torch.full_like(k, math.inf))
    return times.amin(dim=0)


def peak_rank(peak: torch.Tensor) -> torch.Tensor:
    """``r_neuron`` ``[B, K]`` (float64, 1 … K) of the peaks ``[B, K]``: 1 for the largest,
    ties ranked by index (a stable descending sort)."""
    order = torch.sort(peak, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(1, peak.shape[1] + 1, dtype=torch.float64, device=peak.device)
    return torch.empty(peak.shape, dtype=torch.float64, device=peak.device).scatter_(
        1, order, ranks.expand(peak.shape[0], -1).contiguous()
    )


def fs_times_from(k_first: torch.Tensor, peak: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
    """``t_first`` ``[B, K]`` (module docstring) from the first spike steps ``k_first``
    (``inf`` if silent), the peak membranes ``peak`` ``[B, K]`` and ``T_b`` ``[B]``."""
    silent = horizon.to(torch.float64).view(-1, 1) + peak_rank(peak.to(torch.float64))
    return torch.where(torch.isfinite(k_first), k_first.to(torch.float64), silent)


def peak_membrane(v: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``max_{k ≤ T_b} v[k, b, n]`` ``[B, K]`` (float64) of membranes ``[T, B, K]``."""
    v = v.to(torch.float64)
    if lengths is not None:
        mask = step_mask(lengths, v.shape[0]).to(v.device).unsqueeze(-1)
        v = v.masked_fill(~mask.bool(), -math.inf)
    return v.amax(dim=0)


def fs_times(s: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``t_first`` ``[B, K]`` of spikes ``s`` and membranes ``v`` ``[T, B, K]`` (float or
    integer; module docstring). Only the membranes of a sample without any output spike
    decide, so a membrane after reset at a spike step gives the same decision."""
    horizon = lengths if lengths is not None else torch.full((s.shape[1],), s.shape[0])
    return fs_times_from(first_spike_steps(s, lengths), peak_membrane(v, lengths), horizon)


def fs_decision(s: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor | None = None):
    """The FS class ``[B]`` (int64): ``argmin_n`` :func:`fs_times` (lowest index on ties)."""
    return fs_prediction(fs_times(s, v, lengths))


class FirstSpikeTrack:
    """Per sample and output neuron, the first spike step ``k_first`` (1-based, ``inf``
    while silent) and the peak membrane over the sample's own steps, updated step by step
    (the streaming form of :func:`fs_times`, used by the integer emulator). The membrane
    may be a node's state ``v`` after the step: it equals the one before reset wherever
    the neuron does not spike, which is all that decides."""

    def __init__(self) -> None:
        self.k_first: torch.Tensor | None = None
        self.peak: torch.Tensor | None = None

    def add(self, t: int, s: torch.Tensor, v: torch.Tensor, active: torch.Tensor | None) -> None:
        s = s.reshape(s.shape[0], -1).cpu() > 0
        v = torch.as_tensor(v).reshape(s.shape).cpu().to(torch.float64)
        if active is not None:
            a = active.cpu().bool().view(-1, 1)
            s, v = s & a, v.masked_fill(~a, -math.inf)
        if self.k_first is None:
            self.k_first = torch.full(s.shape, math.inf, dtype=torch.float64)
            self.peak = torch.full(s.shape, -math.inf, dtype=torch.float64)
        new = s & torch.isinf(self.k_first)
        self.k_first = torch.where(new, float(t + 1), self.k_first)
        self.peak = torch.maximum(self.peak, v)

    def times(self, horizon: torch.Tensor) -> torch.Tensor:
        return fs_times_from(self.k_first, self.peak, horizon)


@dataclass(frozen=True)
class SpikeReadoutMetrics:
    """What :class:`SpikeReadoutTally` reports (accuracies in %, latencies in steps)."""

    samples: int
    fs_acc: float
    fr_acc: float
    spikes_per_sample: float
    latency: float
    silent: int
    decision_step_50: float
    decision_step_90: float
    hidden_spikes_per_neuron: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def text(self) -> str:
        return (
            f"FS {self.fs_acc:.1f}% FR {self.fr_acc:.1f}%, {self.spikes_per_sample:.1f} output "
            f"spikes/sample, first spike at step {self.latency:.1f} "
            f"(decision steps 50%/90%: {self.decision_step_50:g}/{self.decision_step_90:g}, "
            f"{self.silent} silent)"
        )


@dataclass
class SpikeReadoutTally:
    """Sums over evaluation batches (:meth:`add`), reduced by :meth:`result`."""

    samples: int = 0
    fs_correct: int = 0
    fr_correct: int = 0
    output_spikes: float = 0.0
    latency_sum: float = 0.0
    firing: int = 0
    hidden_spikes: float = 0.0
    hidden_neurons: int = 0
    #: correct FS decisions by their latency ℓ (index ℓ − 1)
    correct_at: list[int] = field(default_factory=list)

    def add(
        self,
        s: torch.Tensor,
        t_first: torch.Tensor,
        y: torch.Tensor,
        lengths: torch.Tensor | None = None,
        hidden_spikes: float = 0.0,
        hidden_neurons: int = 0,
    ) -> None:
        rate = firing_rates(s, lengths)
        fs_ok = fs_prediction(t_first) == y
        self.samples += y.numel()
        self.fs_correct += int(fs_ok.sum())
        self.fr_correct += int((fr_prediction(rate) == y).sum())
        counts = rate * (s.shape[0] if lengths is None else lengths.to(rate).view(-1, 1))
        self.output_spikes += float(counts.sum())
        latency = first_spike_steps(s, lengths).amin(dim=1)  # [B]
        fired = torch.isfinite(latency)
        self.firing += int(fired.sum())
        self.latency_sum += float(latency[fired].sum())
        self.hidden_spikes += float(hidden_spikes)
        self.hidden_neurons = hidden_neurons or self.hidden_neurons
        for ell in latency[fired & fs_ok].long().tolist():
            if len(self.correct_at) < ell:
                self.correct_at.extend([0] * (ell - len(self.correct_at)))
            self.correct_at[ell - 1] += 1

    def decision_step(self, fraction: float) -> float:
        """First step k with ``A(k) ≥ fraction · max A`` (module docstring); inf if none."""
        total, best, curve = 0, 0, []
        for c in self.correct_at:
            total += c
            curve.append(total)
        best = max(curve, default=0)
        if best == 0:
            return math.inf
        return float(next(k for k, a in enumerate(curve, 1) if a >= fraction * best - 1e-9))

    def result(self) -> SpikeReadoutMetrics:
        n = max(self.samples, 1)
        per_neuron = self.hidden_spikes / n / self.hidden_neurons if self.hidden_neurons else 0.0
        return SpikeReadoutMetrics(
            samples=self.samples,
            fs_acc=100.0 * self.fs_correct / n,
            fr_acc=100.0 * self.fr_correct / n,
            spikes_per_sample=self.output_spikes / n,
            latency=self.latency_sum / self.firing if self.firing else math.inf,
            silent=self.samples - self.firing,
            decision_step_50=self.decision_step(0.5),
            decision_step_90=self.decision_step(0.9),
            hidden_spikes_per_neuron=per_neuron,
        )
