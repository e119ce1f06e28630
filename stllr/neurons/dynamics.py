"""Current-based and adaptive neurons as pure step functions (docs/neurons.md §1–§2).

Discrete time, one step per frame; every state starts at zero. ``c[t]`` is the synaptic
input of the step (``Ŵx[t] + b``, plus ``Ŵ_rec s[t−1]`` in a recurrent layer). Symbols
(docs/neurons.md §1 relates them to Lava's ``LIF``):

* ``i``: the synaptic **current** (Lava's ``u``), decay ``β = e^{−1/τ_syn}``;
* ``v``: the membrane **voltage** (Lava's ``v``), decay ``α = e^{−1/τ_mem}``; the state
  carries ``v`` after the reset;
* ``w``: the **adaptation** variable, decay ``ρ = e^{−1/τ_adapt}``, coupled to the
  voltage by ``a`` and to the spikes by ``b``;
* ``h``: the voltage of the previous step before its reset, which drives ``w``;
* ``s``: spikes, ``s[t] = H(v[t] − θ)``.

The update order is the reference repository's (first-spike coding, Liu et al. 2023):
the voltage integrates the **previous** current and adaptation, then the current and the
adaptation advance, then the neuron fires and resets::

    CuLIF     v[t] = α·v̂[t−1] + (1−α)·i[t−1]              i[t] = β·i[t−1] + c[t]
    AdLIF     v[t] = α·v̂[t−1] + (1−α)·(c[t] − w[t−1])      w[t] = ρ·w[t−1] + a·h[t−1] + b·s[t−1]
    CuAdLIF   v[t] = α·v̂[t−1] + (1−α)·(i[t−1] − w[t−1])    i[t], w[t] as above
    all       s[t] = H(v[t] − θ)     h[t] = v[t]
              v̂[t] = v[t] − θ·s[t]  (soft)   or   v[t]·(1 − s[t])  (hard, to 0)

``H(z) = 1`` for ``z > 0`` (:func:`stllr.neuron.heaviside`; the reference fires at
``v ≥ θ``, which differs only where ``v`` equals ``θ`` exactly). PCuLIF is CuLIF with
learnable decays (:mod:`stllr.neurons.population`). Decays and ``a``, ``b`` may be
Python floats, 0-dim tensors (one per layer) or ``[N]`` tensors (one per neuron);
states are ``[B, N]``. Quantities are dimensionless (threshold units), time in steps.

``spike`` (default :func:`~stllr.neuron.heaviside`) maps ``v − θ`` to spikes; BPTT passes
a surrogate-gradient function. The reset always uses the detached spike (as the
toolkit's BPTT LIF); the spike that drives ``w`` keeps its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from stllr.neuron import RESET_MECHANISMS, heaviside, reset_membrane

Decay = float | torch.Tensor
SpikeFunction = Callable[[torch.Tensor], torch.Tensor]


class CuLIFParams(NamedTuple):
    """CuLIF/PCuLIF constants: voltage decay α, current decay β, threshold θ, reset."""

    alpha: Decay
    beta: Decay
    threshold: float
    reset: str


class AdLIFParams(NamedTuple):
    """AdLIF constants: α, adaptation decay ρ, couplings ``a`` (voltage) and ``b`` (spikes)."""

    alpha: Decay
    rho: Decay
    a: Decay
    b: Decay
    threshold: float
    reset: str


class CuAdLIFParams(NamedTuple):
    """Current-based AdLIF constants: those of AdLIF plus the current decay β."""

    alpha: Decay
    beta: Decay
    rho: Decay
    a: Decay
    b: Decay
    threshold: float
    reset: str


class CuLIFState(NamedTuple):
    """CuLIF state after step t: current ``i[t]`` and voltage after reset ``v̂[t]``, ``[B, N]``."""

    i: torch.Tensor
    v: torch.Tensor


class AdLIFState(NamedTuple):
    """AdLIF state after step t, each ``[B, N]``: ``v̂[t]``, ``w[t]``, ``h[t] = v[t]`` (before
    the reset) and ``s[t]``."""

    v: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor


class CuAdLIFState(NamedTuple):
    """Current-based AdLIF state after step t: ``i[t]`` and the AdLIF state's fields."""

    i: torch.Tensor
    v: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor


def check_reset(reset: str) -> None:
    """``ValueError`` unless ``reset`` is ``"soft"`` or ``"hard"``."""
    if reset not in RESET_MECHANISMS:
        raise ValueError(f"reset must be one of {RESET_MECHANISMS}, got {reset!r}")


def _fire(v: torch.Tensor, threshold: float, reset: str, spike: SpikeFunction):
    """``(s, v − θ, v̂)``: spikes, the centred voltage (Ψ's argument) and the reset voltage."""
    centred = v - threshold
    s = spike(centred)
    return s, centred, reset_membrane(v, s.detach(), threshold, reset)


def culif_step(
    c: torch.Tensor, state: CuLIFState, p: CuLIFParams, spike: SpikeFunction = heaviside
) -> tuple[torch.Tensor, torch.Tensor, CuLIFState]:
    """One CuLIF step (module docstring); returns ``(s[t], v[t] − θ, state[t])``."""
    v = p.alpha * state.v + (1.0 - p.alpha) * state.i
    i = p.beta * state.i + c
    s, centred, v_hat = _fire(v, p.threshold, p.reset, spike)
    return s, centred, CuLIFState(i, v_hat)


def adlif_step(
    c: torch.Tensor, state: AdLIFState, p: AdLIFParams, spike: SpikeFunction = heaviside
) -> tuple[torch.Tensor, torch.Tensor, AdLIFState]:
    """One AdLIF step (module docstring); returns ``(s[t], v[t] − θ, state[t])``."""
    v = p.alpha * state.v + (1.0 - p.alpha) * (c - state.w)
    w = p.rho * state.w + p.a * state.h + p.b * state.s
    s, centred, v_hat = _fire(v, p.threshold, p.reset, spike)
    return s, centred, AdLIFState(v_hat, w, v, s)


def cuadlif_step(
    c: torch.Tensor, state: CuAdLIFState, p: CuAdLIFParams, spike: SpikeFunction = heaviside
) -> tuple[torch.Tensor, torch.Tensor, CuAdLIFState]:
    """One current-based AdLIF step (module docstring); returns ``(s[t], v[t] − θ, state[t])``."""
    v = p.alpha * state.v + (1.0 - p.alpha) * (state.i - state.w)
    i = p.beta * state.i + c
    w = p.rho * state.w + p.a * state.h + p.b * state.s
    s, centred, v_hat = _fire(v, p.threshold, p.reset, spike)
    return s, centred, CuAdLIFState(i, v_hat, w, v, s)


def zero_state(kind_state: type, like: torch.Tensor):
    """A state of type ``kind_state`` with every field ``zeros_like(like)`` (step 0)."""
    return kind_state(*(torch.zeros_like(like) for _ in kind_state._fields))
