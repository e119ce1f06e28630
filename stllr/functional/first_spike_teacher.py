"""A causal, per-step teaching signal for a spiking first-spike output layer
(docs/first_spike.md, "On-device learning of a first-spike network").

The first-spike loss needs the whole output sequence; this is its online approximation,
computable at step ``t`` from the label and the output spikes emitted up to ``t`` (what a
host sees of the device). Steps are 1-based, ``t = 1 … T``; shapes ``[B, K]`` (B samples,
K output neurons); ``y`` ``[B]``.

State after step ``t`` (:class:`TeachState`): ``k[b, n]``, the first spike step of neuron
``n`` so far (``inf`` while it has not fired), and ``t``. Then::

    t̂[n]  = k[n]            if k[n] ≤ t        (fired: its first-spike time is known)
    t̂[n]  = t + 1           otherwise          (the earliest it can still fire)
    z[n]   = α · (min_m t̂[m] − t̂[n])          the loss's logits on the running times
    p̂     = softmax(z)
    w[n]   = exp(−(t − k[n])² / 2σ²)  if fired (σ = 0: 1 at t = k[n], 0 after)
    w[n]   = 1                        otherwise
    δ[n]   = w[n] · (p̂[n] − [n = y])

``δ = ∂L/∂s[t]`` up to the positive factor ``A·α`` (folded into the learning rate): the
label neuron gets ``δ_y < 0`` (fire) at every step until it fires, then the right half of
the Gaussian around its spike; a wrong neuron gets ``δ_n > 0`` (stay down) at every step
while silent, and the Gaussian tail after its first spike, large when it fired before the
label. ``Σ_n |δ[n]| ≤ 2`` (as ``softmax − onehot``). With ``stop_correct`` the signal is
0 once the decision is made and right: the label neuron has fired and no neuron fired
earlier or, at the same step, with a lower index.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class TeachState(NamedTuple):
    """First spike steps so far ``k`` ``[B, K]`` (float64, 1-based, ``inf`` = not yet)
    and the number of steps seen ``t``."""

    k: torch.Tensor
    t: int


class FSTeacher(NamedTuple):
    """Settings of the teaching signal: ``alpha`` (α_FS of the loss, per step), ``sigma``
    (σ of the Gaussian tail, steps), ``stop_correct`` (0 once decided right)."""

    alpha: float
    sigma: float
    stop_correct: bool = False


def teach_init(batch: int, num_classes: int, device=None) -> TeachState:
    """The state before step 1: nothing has fired."""
    k = torch.full((batch, num_classes), math.inf, dtype=torch.float64, device=device)
    return TeachState(k, 0)


def teach_step(state: TeachState, s: torch.Tensor) -> TeachState:
    """The state after the next step, whose output spikes are ``s`` ``[B, K]`` (> 0: spike)."""
    t = state.t + 1
    fired_now = (s.reshape(state.k.shape) > 0) & torch.isinf(state.k)
    return TeachState(torch.where(fired_now, float(t), state.k), t)


def running_logits(state: TeachState, alpha: float) -> torch.Tensor:
    """``z = α·(min_m t̂[m] − t̂)`` ``[B, K]`` float64 (module docstring)."""
    t_hat = torch.where(torch.isfinite(state.k), state.k, float(state.t + 1))
    return alpha * (t_hat.amin(dim=1, keepdim=True) - t_hat)


def tail_window(state: TeachState, sigma: float) -> torch.Tensor:
    """``w`` ``[B, K]`` float64: 1 while silent, ``exp(−(t − k)²/2σ²)`` after the first spike."""
    fired = torch.isfinite(state.k)
    lag = torch.where(fired, state.t - state.k, torch.zeros_like(state.k))
    if sigma > 0:
        tail = torch.exp(-(lag**2) / (2.0 * sigma**2))
    else:
        tail = (lag == 0).to(torch.float64)
    return torch.where(fired, tail, torch.ones_like(tail))


def decided_correctly(state: TeachState, y: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: some neuron has fired and the FS decision (earliest, lowest index on
    ties) is the label."""
    fired = torch.isfinite(state.k).any(dim=1)
    first = state.k.argmin(dim=1)  # argmin returns the first index of the minimum
    return fired & (first == y.to(first.device))


def teaching_signal(state: TeachState, y: torch.Tensor, teacher: FSTeacher) -> torch.Tensor:
    """``δ`` ``[B, K]`` float64 at step ``state.t`` (module docstring)."""
    p = torch.softmax(running_logits(state, teacher.alpha), dim=1)
    onehot = torch.zeros_like(p)
    onehot[torch.arange(p.shape[0]), y.long()] = 1.0
    delta = tail_window(state, teacher.sigma) * (p - onehot)
    if teacher.stop_correct:
        delta = delta.masked_fill(decided_correctly(state, y).view(-1, 1), 0.0)
    return delta


__all__ = [
    "FSTeacher",
    "TeachState",
    "decided_correctly",
    "running_logits",
    "tail_window",
    "teach_init",
    "teach_step",
    "teaching_signal",
]
