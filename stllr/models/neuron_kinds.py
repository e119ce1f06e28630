"""The neuron a spiking-output network uses, chosen by name (config keys ``neuron`` and
``out_neuron``; docs/first_spike.md, "Neurons").

A neuron module takes the synaptic input ``I[t]`` ``[B, *shape]`` once per step and
returns the spikes ``s[t]`` (differentiable through a surrogate); after each step its
``membrane`` holds the potential before reset ``[B, *shape]`` (what the first-spike
read-out ranks silent neurons by); ``reset_state()`` starts a sequence.

``lif`` is registered here: the toolkit's LIF (:mod:`stllr.neuron`) with
``γ = exp(−1/τ_mem)`` (``τ_syn`` unused: no current state) and a soft reset. The
reference repository's neurons (``culif``, ``pculif``, ``adlif``, ``cuadlif``) are the
populations of :mod:`stllr.neurons` (docs/neurons.md), registered here through
:class:`PopulationNeurons` and differentiated through time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from stllr.errors import UserError
from stllr.layers.bptt import SpikeFn, bptt_lif_step_membrane
from stllr.neuron import LIFParams
from stllr.neurons.population import NeuronPopulation
from stllr.neurons.population import NeuronSpec as PopulationSpec
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
    #: the populations of stllr.neurons only: adaptation time constant, reset ("" = the
    #: neuron's default, hard) and decay mode ("" = the kind's default: docs/neurons.md)
    tau_adapt: float = 100.0
    reset: str = ""
    decay_mode: str = ""

    @property
    def decay_mem(self) -> float:
        """``α = exp(−1/τ_mem)`` per step."""
        return math.exp(-1.0 / self.tau_mem)


#: ``factory(spec, psi, size)``: ``size`` the number of neurons of a dense population,
#: ``None`` for a feature map (then decays are one per layer)
NeuronFactory = Callable[[NeuronSpec, str, "int | None"], nn.Module]
_NEURONS: dict[str, NeuronFactory] = {}


def register_neuron(kind: str, factory: NeuronFactory) -> None:
    """Make ``neuron = kind`` buildable; ``factory(spec, psi, size)`` returns the module."""
    _NEURONS[kind] = factory


def neuron_kinds() -> list[str]:
    """Kinds a network can be built with now."""
    return sorted(_NEURONS)


def check_neuron_kind(kind: str, key: str) -> None:
    """UserError naming ``key`` unless ``kind`` is registered or declared."""
    if kind not in _NEURONS and kind not in DECLARED_NEURONS:
        known = sorted({*_NEURONS, *DECLARED_NEURONS})
        raise UserError(f"{key} = {kind!r} is not a neuron kind; expected one of {known}")


def make_neuron(spec: NeuronSpec, psi: str, key: str, size: int | None = None) -> nn.Module:
    """The module for ``spec`` (``size``: neurons of a dense layer, ``None`` for a feature
    map); a UserError naming ``key`` for a declared kind that no module has registered
    yet, or an unknown one."""
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
    return _NEURONS[spec.kind](spec, psi, size)


class LIFNeurons(nn.Module):
    """The toolkit's LIF (soft reset, θ_eff = max(θ, 0.5)) with ``γ = exp(−1/τ_mem)``,
    differentiated through time (:func:`stllr.layers.bptt.bptt_lif_step_membrane`)."""

    def __init__(self, spec: NeuronSpec, psi: str = "e", size: int | None = None):
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


class PopulationNeurons(nn.Module):
    """A population of :mod:`stllr.neurons` (CuLIF, PCuLIF, AdLIF, CuAdLIF) stepped once per
    ``forward``, through the surrogate (BPTT); ``membrane`` is ``v[t]`` before its reset.

    Per-neuron decays need the layer's size; a feature map (``size`` ``None``) takes one
    decay per layer, and asking it for per-neuron decays is a UserError.
    """

    def __init__(self, spec: NeuronSpec, psi: str = "e", size: int | None = None):
        super().__init__()
        try:
            pspec = PopulationSpec(spec.kind, spec.tau_mem, spec.tau_syn, spec.tau_adapt,
                                   spec.threshold, spec.reset or "hard",
                                   spec.decay_mode)  # fmt: skip
        except ValueError as err:
            raise UserError(f"neuron {spec.kind!r}: {err}") from None
        if size is None and pspec.mode == "neuron":
            raise UserError(
                f"neuron {spec.kind!r} on a feature map: per-neuron decays need a dense "
                "layer; set decay_mode=layer"
            )
        self.pop = NeuronPopulation(size or 1, pspec)
        self.psi_name = canonical_name(psi)
        self.state = None
        self.membrane: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.state = None
        self.membrane = None
        self.pop.reset_state()

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.state is None or self.state.v.shape != current.shape:
            self.state = self.pop.zero_state(current.detach())
        psi = get_surrogate(self.psi_name)
        s, centred, self.state = self.pop.step(current, self.state,
                                               spike=lambda z: SpikeFn.apply(z, psi))  # fmt: skip
        self.membrane = (centred + self.pop.spec.threshold).detach()
        return s


register_neuron("lif", LIFNeurons)
for _kind in DECLARED_NEURONS:
    register_neuron(_kind, PopulationNeurons)
