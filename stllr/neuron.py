"""Leaky integrate-and-fire dynamics as pure step functions.

Discrete-time LIF used by every S-TLLR and BPTT layer (docs/rule.md §2)::

    m[t] = γ · ũ[t−1] + I[t]              γ = sigmoid(leak)
    v[t] = m[t] − θ_eff                    θ_eff = max(θ, 0.5)
    s[t] = H(v[t])                         H(z) = 1 if z > 0 else 0
    ũ[t] = m[t] − θ_eff · s[t]             soft (subtractive) reset, the default
    ũ[t] = m[t] · (1 − s[t])               hard reset (option)

``I[t]`` is the synaptic current (any shape, e.g. ``[B, N]`` or ``[B, C, H, W]``);
``ũ`` is the membrane after reset, the state carried to the next step. All
quantities are dimensionless (threshold units); time is in steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

ResetMechanism = Literal["soft", "hard"]
RESET_MECHANISMS: tuple[str, ...] = ("soft", "hard")

#: Lower clamp applied to the threshold by the reference implementation.
THRESHOLD_FLOOR = 0.5


def decay_from_leak(leak: float) -> float:
    """The membrane (or readout) decay per step, ``γ = sigmoid(leak)``, as a Python float.

    The one home of γ: LIF populations, the leaky readouts and the OTTT factors take it
    from here.
    """
    return 1.0 / (1.0 + math.exp(-leak))


@dataclass(frozen=True)
class LIFParams:
    """Constant parameters of a LIF population.

    Attributes:
        leak: pre-sigmoid leak; the decay is ``γ = sigmoid(leak)``.
        threshold: firing threshold θ; the effective one is ``max(θ, 0.5)``.
        reset: ``"soft"`` (subtract θ_eff) or ``"hard"`` (reset to zero).
    """

    leak: float = 2.0
    threshold: float = 0.6
    reset: ResetMechanism = "soft"

    def __post_init__(self) -> None:
        if self.reset not in RESET_MECHANISMS:
            raise ValueError(
                f"LIFParams.reset must be one of {RESET_MECHANISMS}, got {self.reset!r}"
            )
        if not math.isfinite(self.leak) or not math.isfinite(self.threshold):
            raise ValueError(
                f"LIFParams.leak and .threshold must be finite, got {self.leak}, {self.threshold}"
            )

    @property
    def gamma(self) -> float:
        """Membrane decay per step, ``γ = sigmoid(leak)`` (:func:`decay_from_leak`)."""
        return decay_from_leak(self.leak)

    @property
    def theta_eff(self) -> float:
        """Effective threshold ``θ_eff = max(θ, 0.5)``."""
        return max(self.threshold, THRESHOLD_FLOOR)


def heaviside(v: torch.Tensor) -> torch.Tensor:
    """``H(v)``: 1 where ``v > 0``, else 0, as a new tensor of ``v``'s dtype.

    The comparison is written straight into a tensor of ``v``'s dtype: one kernel, several
    times faster on the CPU than ``(v > 0).to(v.dtype)`` (a bool result, then a
    conversion), with the same values.
    """
    return torch.gt(v, 0, out=torch.empty_like(v))


def lif_step(
    current: torch.Tensor, u_prev: torch.Tensor, params: LIFParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LIF step.

    Args:
        current: synaptic current I[t], any shape.
        u_prev: membrane after reset at t−1, ũ[t−1], same shape (zeros at t = 0).
        params: the population's constants.

    Returns:
        ``(s, v, u)``: spikes s[t] ∈ {0, 1}, the threshold-centred membrane
        v[t] = m[t] − θ_eff (the argument of Ψ), and ũ[t] after reset.
    """
    m = params.gamma * u_prev + current
    v = m - params.theta_eff
    s = heaviside(v)
    u = reset(m, s, params)
    return s, v, u


def lif_step_(
    current: torch.Tensor,
    u: torch.Tensor,
    params: LIFParams,
    gamma: float | torch.Tensor | None = None,
    theta: float | torch.Tensor | None = None,
    zero: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """In-place :func:`lif_step`, bitwise equal to it (for runs without autograd).

    ``u`` (ũ[t−1]) is overwritten with ũ[t]; ``current`` is used as scratch and
    returned holding v[t]. Returns ``(s, v)``, ``s`` a new tensor. ``gamma``, ``theta``
    and ``zero`` may be given as 0-dim tensors of ``u``'s dtype holding γ, θ_eff and 0
    (same values, so the same results; a loop over many steps saves the conversion of
    Python numbers into tensors that every operation with one does).
    """
    m = u.mul_(params.gamma if gamma is None else gamma).add_(current)
    v = torch.sub(m, params.theta_eff if theta is None else theta, out=current)
    s = torch.gt(v, zero, out=torch.empty_like(v))  # heaviside(v)
    if params.reset == "soft":
        # m − θ_eff·s: with s ∈ {0, 1} the product is exact, so a fused multiply-add
        # rounds exactly like reset()'s separate multiplication and subtraction.
        m.sub_(s, alpha=params.theta_eff)
    else:
        m.mul_(1.0 - s)
    return s, v


def reset(m: torch.Tensor, s: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """Membrane after the reset: ``m − θ_eff·s`` (soft) or ``m·(1 − s)`` (hard)."""
    return reset_membrane(m, s, params.theta_eff, params.reset)


def reset_membrane(m: torch.Tensor, s: torch.Tensor, theta: float, mode: str) -> torch.Tensor:
    """The one home of the reset: ``m − θ·s`` (``"soft"``) or ``m·(1 − s)`` (``"hard"``,
    to zero); used by the LIF here and by the neurons of :mod:`stllr.neurons`."""
    if mode == "soft":
        return m - theta * s
    return m * (1.0 - s)
