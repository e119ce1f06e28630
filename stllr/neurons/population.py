"""A population of current-based or adaptive neurons: its parameters and its step.

Kinds (docs/neurons.md §1):

=========  ==============================================  ===========================
kind       dynamics (:mod:`stllr.neurons.dynamics`)        trained parameters (BPTT)
=========  ==============================================  ===========================
culif      :func:`culif_step`, α and β fixed               none
pculif     :func:`culif_step`                              α = σ(d_mem), β = σ(d_syn)
adlif      :func:`adlif_step`                              α, ρ = σ(d_adapt), a, b
cuadlif    :func:`cuadlif_step`                            α, β, ρ, a, b
=========  ==============================================  ===========================

Decays are stored as logits ``d`` with ``σ(d) = e^{−1/τ}``, initialised at
``d = −log(e^{1/τ} − 1)``; ``decay_mode`` ``"layer"`` gives one value per population
(0-dim), ``"neuron"`` one per neuron (``[N]``). ``a`` and ``b`` start uniform in
[0, 1] and are projected back into [0, 1] by :meth:`NeuronPopulation.project_` (at
every ``reset_state``, i.e. before each batch, after the optimiser's step), as the
reference clamps them before each step. CuLIF keeps its decays as buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from stllr.neuron import heaviside
from stllr.neurons.dynamics import (
    AdLIFParams,
    AdLIFState,
    CuAdLIFParams,
    CuAdLIFState,
    CuLIFParams,
    CuLIFState,
    SpikeFunction,
    adlif_step,
    check_reset,
    cuadlif_step,
    culif_step,
    zero_state,
)

NEURON_KINDS: tuple[str, ...] = ("culif", "pculif", "adlif", "cuadlif")
DECAY_MODES: tuple[str, ...] = ("layer", "neuron")
#: the reference's default decay_mode per kind ('s' = layer, 'm' = neuron)
DEFAULT_DECAY_MODE = {"culif": "layer", "pculif": "layer", "adlif": "neuron", "cuadlif": "neuron"}
_STEPS = {
    "culif": (culif_step, CuLIFState),
    "pculif": (culif_step, CuLIFState),
    "adlif": (adlif_step, AdLIFState),
    "cuadlif": (cuadlif_step, CuAdLIFState),
}


def decay_from_tau(tau: float) -> float:
    """The decay per step of a time constant of ``tau`` steps, ``e^{−1/τ}`` (the one home of
    this conversion: the populations' initial decays and the traces' default decays)."""
    return math.exp(-1.0 / tau)


def decay_logit(tau: float) -> float:
    """``d = −log(e^{1/τ} − 1)``, so that ``σ(d) = e^{−1/τ}`` (τ in steps, > 0)."""
    return -math.log(math.expm1(1.0 / tau))


@dataclass(frozen=True)
class NeuronSpec:
    """Constant description of a population (time constants in steps, θ in input units).

    ``decay_mode`` ``""`` picks the reference's default for the kind
    (:data:`DEFAULT_DECAY_MODE`); the reset defaults to the reference networks' hard reset.
    """

    kind: str = "culif"
    tau_mem: float = 5.0
    tau_syn: float = 5.0
    tau_adapt: float = 100.0
    threshold: float = 0.5
    reset: str = "hard"
    decay_mode: str = ""

    def __post_init__(self) -> None:
        if self.kind not in NEURON_KINDS:
            raise ValueError(f"neuron kind must be one of {NEURON_KINDS}, got {self.kind!r}")
        for name in ("tau_mem", "tau_syn", "tau_adapt"):
            tau = getattr(self, name)
            if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
                raise ValueError(f"{name} must be a finite number of steps > 0, got {tau!r}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        check_reset(self.reset)
        if self.decay_mode not in ("", *DECAY_MODES):
            raise ValueError(f"decay_mode must be one of {DECAY_MODES}, got {self.decay_mode!r}")

    @property
    def mode(self) -> str:
        """The decay mode in force (``decay_mode`` or the kind's default)."""
        return self.decay_mode or DEFAULT_DECAY_MODE[self.kind]

    @property
    def current_based(self) -> bool:
        """Whether the neuron has a current state ``i`` (the input reaches ``v`` a step later)."""
        return self.kind in ("culif", "pculif", "cuadlif")

    @property
    def adaptive(self) -> bool:
        return self.kind in ("adlif", "cuadlif")


class NeuronPopulation(nn.Module):
    """``size`` neurons of ``spec.kind``; :meth:`step` advances them by one step."""

    def __init__(self, size: int, spec: NeuronSpec):
        super().__init__()
        self.size = size
        self.spec = spec
        shape = (size,) if spec.mode == "neuron" else ()
        learn = self.learnable()

        def decay(name: str, tau: float) -> None:
            value = torch.full(shape, decay_logit(tau))
            if learn:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

        decay("mem_logit", spec.tau_mem)
        if spec.current_based:
            decay("syn_logit", spec.tau_syn)
        if spec.adaptive:
            decay("adapt_logit", spec.tau_adapt)
            self.a = nn.Parameter(torch.empty(shape).uniform_(0.0, 1.0))
            self.b = nn.Parameter(torch.empty(shape).uniform_(0.0, 1.0))

    def params(self) -> CuLIFParams | AdLIFParams | CuAdLIFParams:
        """The step's constants: decays ``σ(d)`` (in the graph when learnable), a, b, θ."""
        s = self.spec
        alpha = torch.sigmoid(self.mem_logit)
        if s.kind in ("culif", "pculif"):
            return CuLIFParams(alpha, torch.sigmoid(self.syn_logit), s.threshold, s.reset)
        rho = torch.sigmoid(self.adapt_logit)
        if s.kind == "adlif":
            return AdLIFParams(alpha, rho, self.a, self.b, s.threshold, s.reset)
        beta = torch.sigmoid(self.syn_logit)
        return CuAdLIFParams(alpha, beta, rho, self.a, self.b, s.threshold, s.reset)

    def learnable(self) -> bool:
        """Whether the kind has trainable parameters (all but CuLIF)."""
        return self.spec.kind != "culif"

    def zero_state(self, like: torch.Tensor):
        """The state at step 0, every field ``zeros_like(like)`` (``like``: ``[B, N]``)."""
        return zero_state(_STEPS[self.spec.kind][1], like)

    def step(self, c: torch.Tensor, state, params=None, spike: SpikeFunction = heaviside):
        """``(s[t], v[t] − θ, state[t])`` for input ``c[t]`` ``[B, N]`` (``params``:
        :meth:`params`, computed here when not given)."""
        fn = _STEPS[self.spec.kind][0]
        return fn(c, state, self.params() if params is None else params, spike)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp ``a`` and ``b`` into [0, 1] (the reference's limits)."""
        if self.spec.adaptive:
            self.a.clamp_(0.0, 1.0)
            self.b.clamp_(0.0, 1.0)

    def reset_state(self) -> None:
        """Start of a sequence (the model calls it before each batch): project a, b."""
        self.project_()

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"kind={s.kind}, size={self.size}, tau_mem={s.tau_mem}, tau_syn={s.tau_syn}, "
            f"tau_adapt={s.tau_adapt}, threshold={s.threshold}, reset={s.reset}, mode={s.mode}"
        )
