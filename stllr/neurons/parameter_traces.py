"""S-TLLR eligibility of the neurons' own parameters (docs/neurons.md §3c).

Each neuron keeps, per sample, the derivative of its voltage with respect to each of its
parameters ``π ∈ {α, β, ρ, a, b}``, with the same simplifications as the weights'
eligibility: the reset's derivative and the spikes' are dropped, the input ``c`` is held
fixed, and the adaptation does not feed the voltage's derivative back into ``w``'s
(``a·∂h/∂π`` is dropped). With ``u[t] = drive[t] − w[t−1]`` (``drive = i[t−1]`` for the
current-based kinds, ``c[t]`` otherwise; ``w = 0`` without adaptation)::

    κ_α[t] = α·κ_α[t−1] + v̂[t−1] − u[t]                      ∂v[t]/∂α
    ι[t]   = β·ι[t−1] + i[t−1]                                ∂i[t]/∂β
    κ_β[t] = α·κ_β[t−1] + (1−α)·ι[t−1]                        ∂v[t]/∂β
    ω_π[t] = ρ·ω_π[t−1] + σ_π[t−1]    σ_ρ = w, σ_a = h, σ_b = s   ∂w[t]/∂π
    κ_π[t] = α·κ_π[t−1] − (1−α)·ω_π[t−1]                     ∂v[t]/∂π, π ∈ {ρ, a, b}

and the gradient of a parameter at step t is ``Σ_batch δ ⊙ Ψ ⊙ κ_π[t]`` (summed over the
neurons too when the parameter is one per layer); autograd carries it on through the
sigmoid from the decay to its logit. All traces are ``[B, N]`` and start at zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: the parameters, in the order of the population's params NamedTuple fields
PARAMETERS: tuple[str, ...] = ("alpha", "beta", "rho", "a", "b")


class ParameterTraces(NamedTuple):
    """``κ_π`` (∂v/∂π) for each parameter of the kind, plus the auxiliary ``ι`` (∂i/∂β) and
    ``ω_π`` (∂w/∂π); fields a kind lacks are None."""

    kappa: dict[str, torch.Tensor]
    iota: torch.Tensor | None
    omega: dict[str, torch.Tensor]


def names_of(params) -> tuple[str, ...]:
    """The parameters a params NamedTuple of :mod:`stllr.neurons.dynamics` has."""
    return tuple(n for n in PARAMETERS if n in params._fields)


def zero_parameter_traces(params, like: torch.Tensor) -> ParameterTraces:
    """Zero traces for the parameters of ``params``, each ``zeros_like(like)``."""
    names = names_of(params)
    z = torch.zeros_like
    adaptive = [n for n in ("rho", "a", "b") if n in names]
    return ParameterTraces(
        {n: z(like) for n in names},
        z(like) if "beta" in names else None,
        {n: z(like) for n in adaptive},
    )


def parameter_trace_step(tr: ParameterTraces, prev, c: torch.Tensor, params) -> ParameterTraces:
    """One step of the module docstring's recursion.

    ``prev``: the population's state at t−1 (fields v, and i, w, h, s where the kind has
    them); ``c``: the input c[t]; ``params``: the step's constants (detached).
    """
    alpha = params.alpha
    drive = prev.i if "i" in prev._fields else c
    u = drive - prev.w if "w" in prev._fields else drive
    kappa = {"alpha": alpha * tr.kappa["alpha"] + prev.v - u}
    iota = tr.iota
    if iota is not None:
        kappa["beta"] = alpha * tr.kappa["beta"] + (1.0 - alpha) * iota
        iota = params.beta * iota + prev.i
    omega = {}
    sources = {"rho": "w", "a": "h", "b": "s"}
    for name, old in tr.omega.items():
        kappa[name] = alpha * tr.kappa[name] - (1.0 - alpha) * old
        omega[name] = params.rho * old + getattr(prev, sources[name])
    return ParameterTraces(kappa, iota, omega)
