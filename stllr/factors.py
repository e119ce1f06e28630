"""The four S-TLLR constants and the trace recursion.

``factors = [λ_post, λ_pre, α_post, α_pre]`` in the reference code's order
(docs/rule.md §3, §5). The traces are::

    P[t] = λ_pre  · P[t−1] + x[t]          pre-synaptic trace, includes the current input
    Q[t] = λ_post · Q[t−1] + Ψ(v[t])       post-synaptic trace

and the eligibility of synapse (i, j) at step t is::

    e_ij[t] = α_pre · Ψ_i[t] · P_j[t]  +  α_post · Q_i[t−1] · x_j[t]

The second (non-causal) term follows the code: it uses Q[t−1] with no extra
λ_post factor, so the code's α_post is the paper's α_post / λ_post.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class STLLRFactors:
    """S-TLLR trace decays and term weights (dimensionless)."""

    lambda_post: float = 0.5
    lambda_pre: float = 0.8
    alpha_post: float = -0.2
    alpha_pre: float = 1.0

    def __post_init__(self) -> None:
        for name in ("lambda_post", "lambda_pre", "alpha_post", "alpha_pre"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"STLLRFactors.{name} must be a finite number, got {value!r}")

    @classmethod
    def from_list(cls, factors: Sequence[float]) -> STLLRFactors:
        """Build from the code's ``[λ_post, λ_pre, α_post, α_pre]`` list."""
        if len(factors) != 4:
            raise ValueError(
                "factors must be [lambda_post, lambda_pre, alpha_post, alpha_pre] "
                f"(4 numbers), got {list(factors)!r}"
            )
        return cls(*(float(f) for f in factors))

    def as_list(self) -> list[float]:
        """The code's ``[λ_post, λ_pre, α_post, α_pre]`` order."""
        return [self.lambda_post, self.lambda_pre, self.alpha_post, self.alpha_pre]


def trace_step(trace: torch.Tensor, value: torch.Tensor, decay: float) -> torch.Tensor:
    """``trace[t] = decay · trace[t−1] + value[t]`` (a new tensor).

    The one home of the trace recursion (P, Q, R and the readout's P_o; its in-place twin
    is :func:`trace_step_`). Works on numpy arrays as well (the Lava float models use it).
    For ``decay == 1`` the multiplication is skipped (multiplying by 1 is exact).
    """
    if decay == 1.0:
        return trace + value
    return decay * trace + value


def trace_step_(
    trace: torch.Tensor, value: torch.Tensor, decay: float | torch.Tensor | None
) -> torch.Tensor:
    """In-place :func:`trace_step` (overwrites and returns ``trace``), bitwise equal to it.

    The same two operations in the same order; the multiplication is skipped for
    ``decay == 1`` (multiplying by 1 is exact) and for ``decay=None`` (a decay of 1).
    ``decay`` may be a 0-dim tensor of ``trace``'s dtype holding λ (a loop over many
    steps converts λ once; the values and results are the same), never compared with 1.
    """
    if decay is not None and (isinstance(decay, torch.Tensor) or decay != 1.0):
        trace.mul_(decay)
    return trace.add_(value)
