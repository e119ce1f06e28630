"""Ψ: the surrogate derivative used both as the spatial gradient and in the eligibility trace.

Every function maps the threshold-centred membrane ``v = m − θ_eff`` (any shape)
to Ψ(v) ≥ 0 with its peak at v = 0 (docs/rule.md §4):

=========  =================================  ====================================
name       Ψ(v)                               code names in the reference repo
=========  =================================  ====================================
``a``      1 / (100·|v| + 1)²                 STLLRLinearGrad, STLLRLinearRecGrad
``b``      0.3 · max(1 − |v|, 0)              STLLRConv2dGrad, LinearSpike
``c``      4·σ(4v)·(1 − σ(4v))                STLLRConv2dSigmoid, GradSigmoid
``d``      1 / (1 + (10·v)²)                  (optical-flow code)
``e``      1 / (5·|v| + 1)²                   MySoftSign (first-spike-coding networks,
                                              docs/neurons.md §2,
                                              docs/first_spike.md)
=========  =================================  ====================================

Variant (c) follows the code (slope 4 inside the sigmoid, peak 1), not the
paper's 4σ(v)(1−σ(v)). Names ``"exp"``/``"triangle"``/``"sigmoid"``/``"arctan"``/
``"softsign"`` are accepted aliases of a–e.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Surrogate = Callable[[torch.Tensor], torch.Tensor]


def psi_a(v: torch.Tensor) -> torch.Tensor:
    """(a) ``1 / (100·|v| + 1)²``: very narrow, ∫Ψ dv = 0.02."""
    return 1.0 / (100.0 * v.abs() + 1.0) ** 2


def psi_b(v: torch.Tensor) -> torch.Tensor:
    """(b) ``0.3 · max(1 − |v|, 0)``: triangle of height 0.3, ∫Ψ dv = 0.3."""
    return 0.3 * torch.clamp(1.0 - v.abs(), min=0.0)


def psi_c(v: torch.Tensor) -> torch.Tensor:
    """(c) ``4·σ(4v)·(1 − σ(4v))``: peak 1, ∫Ψ dv = 1."""
    sig = torch.sigmoid(4.0 * v)
    return 4.0 * sig * (1.0 - sig)


def psi_d(v: torch.Tensor) -> torch.Tensor:
    """(d) ``1 / (1 + (10·v)²)``: Lorentzian of peak 1, ∫Ψ dv = π/10."""
    return 1.0 / (1.0 + (10.0 * v) ** 2)


def psi_e(v: torch.Tensor) -> torch.Tensor:
    """(e) ``1 / (5·|v| + 1)²``: (a)'s shape with slope 5, ∫Ψ dv = 0.4."""
    return 1.0 / (5.0 * v.abs() + 1.0) ** 2


def psi_a_(v: torch.Tensor) -> torch.Tensor:
    """In-place :func:`psi_a` (overwrites ``v``)."""
    return v.abs_().mul_(100.0).add_(1.0).pow_(-2)  # pow(−2) is 1/(t·t): bitwise equal


def psi_b_(v: torch.Tensor) -> torch.Tensor:
    """In-place :func:`psi_b` (overwrites ``v``)."""
    return v.abs_().neg_().add_(1.0).clamp_(min=0.0).mul_(0.3)


def psi_c_(v: torch.Tensor) -> torch.Tensor:
    """In-place :func:`psi_c` (overwrites ``v``)."""
    sig = v.mul_(4.0).sigmoid_()
    one_minus = 1.0 - sig
    return sig.mul_(4.0).mul_(one_minus)


def psi_d_(v: torch.Tensor) -> torch.Tensor:
    """In-place :func:`psi_d` (overwrites ``v``)."""
    return v.mul_(10.0).pow_(2).add_(1.0).reciprocal_()


def psi_e_(v: torch.Tensor) -> torch.Tensor:
    """In-place :func:`psi_e` (overwrites ``v``)."""
    return v.abs_().mul_(5.0).add_(1.0).pow_(-2)


SURROGATES: dict[str, Surrogate] = {"a": psi_a, "b": psi_b, "c": psi_c, "d": psi_d, "e": psi_e}
#: In-place twins (same operations, same order: bitwise equal results), keyed by function.
_IN_PLACE: dict[Surrogate, Surrogate] = {
    psi_a: psi_a_,
    psi_b: psi_b_,
    psi_c: psi_c_,
    psi_d: psi_d_,
    psi_e: psi_e_,
}


def in_place(psi: Surrogate) -> Surrogate:
    """A Ψ that may overwrite its argument: the in-place twin of a built-in variant,
    or ``psi`` itself (out of place) for any other callable."""
    return _IN_PLACE.get(psi, psi)


ALIASES: dict[str, str] = {
    "exp": "a",
    "triangle": "b",
    "sigmoid": "c",
    "arctan": "d",
    "softsign": "e",
}


def get_surrogate(name: str) -> Surrogate:
    """Look a Ψ variant up by name (``"a"``–``"e"`` or an alias)."""
    key = ALIASES.get(name, name)
    if key not in SURROGATES:
        choices = sorted(SURROGATES) + sorted(ALIASES)
        raise ValueError(f"unknown surrogate psi={name!r}; expected one of {choices}")
    return SURROGATES[key]


def canonical_name(name: str) -> str:
    """The one-letter name of a Ψ variant (validates ``name``)."""
    get_surrogate(name)
    return ALIASES.get(name, name)


def psi_peak(name: str) -> float:
    """Ψ(0), the peak of a variant, in float64 (the fixed-point formats scale Ψ by it)."""
    return float(get_surrogate(name)(torch.zeros(1, dtype=torch.float64)))


def support_half_width(name: str, floor: float) -> float:
    """A half-width ``v_max`` beyond which Ψ stays below ``floor`` (the variants decay
    monotonically): from 1e-3, grown by ×1.25 until ``Ψ(v_max) < floor``; the Ψ lookup
    tables of the fixed-point learning cover ``[−v_max, v_max]``."""
    fn = get_surrogate(name)
    v_max = 1e-3
    while float(fn(torch.tensor([v_max], dtype=torch.float64))) >= floor:
        v_max *= 1.25
        if v_max > 1e6:
            raise ValueError(f"Ψ variant {name!r} does not decay to zero")
    return v_max
