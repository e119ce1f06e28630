"""Leaky integrate-and-fire dynamics as pure step functions.

Discrete-time LIF used by every S-TLLR and BPTT layer (STLLR.md §1)::

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
        """Membrane decay per step, ``γ = sigmoid(leak)``."""
        return 1.0 / (1.0 + math.exp(-self.leak))

    @property
    def theta_eff(self) -> float:
        """Effective threshold ``θ_eff = max(θ, 0.5)``."""
        return max(self.threshold, THRESHOLD_FLOOR)


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
    s = (v > 0).to(current.dtype)
    u = reset(m, s, params)
    return s, v, u


def reset(m: torch.Tensor, s: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """Membrane after the reset: ``m − θ_eff·s`` (soft) or ``m·(1 − s)`` (hard)."""
    if params.reset == "soft":
        return m - params.theta_eff * s
    return m * (1.0 - s)
