"""The neuron a spiking-output network uses, chosen by name (config keys ``neuron`` and
``out_neuron``; docs/first_spike.md, "Neurons").

A neuron module takes the synaptic input ``I[t]`` ``[B, *shape]`` once per step and
returns the spikes ``s[t]`` (differentiable through a surrogate); after each step its
``membrane`` holds the potential before reset ``[B, *shape]`` (what the first-spike
read-out ranks silent neurons by); ``reset_state()`` starts a sequence.

``lif`` is registered here: the toolkit's LIF (:mod:`stllr.neuron`) with
``γ = exp(−1/τ_mem)`` (``τ_syn`` unused: no current state) and a soft reset. The
reference repository's neurons (``culif``, ``pculif``, ``adlif``, ``cuadlif``) are declared
names: configs may name them, and a network is built with them once a module registers them
with :func:`register_neuron`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from stllr.errors import UserError
from stllr.layers.bptt import bptt_lif_step_membrane
from stllr.neuron import LIFParams
from stllr.surrogates import canonical_name, get_surrogate

#: the reference repository's neuron kinds, accepted by configs before they are registered
DECLARED_NEURONS: tuple[str, ...] = ("culif", "pculif", "adlif", "cuadlif")


@dataclass(frozen=True)
class NeuronSpec:
    """A population's constants: kind, time constants in steps, threshold θ."""

    kind: str = "lif"
    tau_mem: float = 5.0
    tau_syn: float = 5.0
    threshold: float = 0.5

    @property
    def decay_mem(self) -> float:
        """``α = exp(−1/τ_mem)`` per step."""
        return math.exp(-1.0 / self.tau_mem)


NeuronFactory = Callable[[NeuronSpec, str], nn.Module]
_NEURONS: dict[str, NeuronFactory] = {}


def register_neuron(kind: str, factory: NeuronFactory) -> None:
    """Make ``neuron = kind`` buildable; ``factory(spec, psi)`` returns the module."""
    _NEURONS[kind] = factory


def neuron_kinds() -> list[str]:
    """Kinds a network can be built with now."""
    return sorted(_NEURONS)


def check_neuron_kind(kind: str, key: str) -> None:
    """UserError naming ``key`` unless ``kind`` is registered or declared."""
    if kind not in _NEURONS and kind not in DECLARED_NEURONS:
        known = sorted({*_NEURONS, *DECLARED_NEURONS})
        raise UserError(f"{key} = {kind!r} is not a neuron kind; expected one of {known}")


def make_neuron(spec: NeuronSpec, psi: str, key: str) -> nn.Module:
    """The module for ``spec``; a UserError naming ``key`` for a declared kind that no
    module has registered yet, or an unknown one."""
    check_neuron_kind(spec.kind, key)
    if spec.kind not in _NEURONS:
        raise UserError(
            f"{key} = {spec.kind!r}: this neuron is declared but not implemented yet; "
            f"available now: {neuron_kinds()} (e.g. --set {key}=lif)"
        )
    if not (spec.tau_mem > 0 and spec.tau_syn > 0 and math.isfinite(spec.threshold)):
        raise UserError(
            f"{key}: need τ_mem > 0, τ_syn > 0 and a finite threshold, got "
            f"{spec.tau_mem}, {spec.tau_syn}, {spec.threshold}"
        )
    return _NEURONS[spec.kind](spec, psi)


class LIFNeurons(nn.Module):
    """The toolkit's LIF (soft reset, θ_eff = max(θ, 0.5)) with ``γ = exp(−1/τ_mem)``,
    differentiated through time (:func:`stllr.layers.bptt.bptt_lif_step_membrane`)."""

    def __init__(self, spec: NeuronSpec, psi: str = "e"):
        super().__init__()
        gamma = spec.decay_mem
        self.lif = LIFParams(leak=math.log(gamma / (1.0 - gamma)), threshold=spec.threshold)
        self.psi_name = canonical_name(psi)
        self.u: torch.Tensor | None = None
        self.membrane: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.u = None
        self.membrane = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.u is None or self.u.shape != current.shape:
            self.u = torch.zeros_like(current)
        psi = get_surrogate(self.psi_name)
        s, self.u, m = bptt_lif_step_membrane(current, self.u, self.lif, psi)
        self.membrane = m.detach()
        return s

    def extra_repr(self) -> str:
        return f"gamma={self.lif.gamma:.4f}, theta={self.lif.threshold}, psi={self.psi_name}"


register_neuron("lif", LIFNeurons)
