"""The float layer graph's node specs: what a converter (:mod:`quantization.convert`)
emits for a float model and what each node kind's ``from_float`` quantizes
(:mod:`quantization.nodes`). The weightless kinds (``Pool``, ``Add``) are their own
float specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from stllr.factors import STLLRFactors
from stllr.neuron import LIFParams

#: Factors given to layers trained without S-TLLR (BPTT twins) for on-device learning.
DEFAULT_FACTORS = STLLRFactors()


@dataclass(frozen=True)
class FloatSpiking:
    """A spiking layer in float: ``I = Ŵ x + b (+ Ŵ_rec s[t−1])``, LIF (γ, θ_eff, reset)."""

    name: str
    inputs: tuple[str, ...]
    kind: str  # "dense" | "conv" | "deconv" (weight [C_out, C_in, k, k], stllr's layout)
    weight: torch.Tensor
    bias: torch.Tensor | None
    lif: LIFParams
    psi: str
    factors: STLLRFactors
    weight_rec: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    #: current-based neuron (CuLIF, docs/neurons.md): the current's decay β per step; then
    #: ``v[t] = α·v̂[t−1] + (1−α)·i[t−1]``, ``i[t] = β·i[t−1] + I[t]`` with α = ``lif.gamma``
    #: and θ = ``lif.threshold`` (no θ_eff floor); ``None``: the toolkit's LIF
    current_decay: float | None = None
    #: deconv only: PyTorch's output_padding
    output_padding: tuple[int, int] = (0, 0)
    #: current-based only: the decay λ_syn of the S-TLLR current trace P^i (docs/neurons.md
    #: §3b); ``None``: ``current_decay``
    lambda_syn: float | None = None
    #: the float model's module this node was converted from (node → module: one home,
    #: quantization.convert.node_modules); not part of the spec's value
    source: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FloatAdaptive:
    """A dense AdLIF layer (docs/neurons.md §2): ``c = Ŵx + b (+ Ŵ_rec s[t−1])``,
    ``v[t] = α·v̂[t−1] + (1−α)·(c[t] − w[t−1])``, ``w[t] = ρ·w[t−1] + a·h[t−1] + b_s·s[t−1]``;
    ``alpha``, ``rho``, ``a``, ``b`` (the spike coupling b_s) per neuron ``[out]`` or scalar.
    ``beta`` (the current decay β, per neuron or scalar) makes it the current-based AdLIF:
    ``v[t] = α·v̂[t−1] + (1−α)·(i[t−1] − w[t−1])``, ``i[t] = β·i[t−1] + c[t]``.
    ``psi`` (the surrogate's name) and ``factors`` are those of its S-TLLR rule
    (docs/neurons.md §3b, "direct (AdLIF)"), used when it learns on device."""

    name: str
    inputs: tuple[str, ...]
    weight: torch.Tensor
    bias: torch.Tensor | None
    alpha: torch.Tensor
    rho: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    threshold: float
    reset: str
    weight_rec: torch.Tensor | None = None
    #: the float model's module (see FloatSpiking.source)
    source: Any = field(default=None, compare=False, repr=False)
    psi: str = "e"
    factors: STLLRFactors = field(default_factory=STLLRFactors)
    beta: torch.Tensor | None = None
    #: current-based only: λ_syn of its S-TLLR current traces (one per layer)
    lambda_syn: float | None = None


@dataclass(frozen=True)
class FloatReadout:
    """``o[t] = γ o[t−1] + W x[t] + b`` (γ = 0: a plain linear head); λ for its pre-trace.

    ``weight`` ``[K, in]`` (dense, a flat input) or ``[K, C, 1, 1]`` (a 1×1 convolution
    over a ``[C, H, W]`` feature map, e.g. a flow head: ``o`` is ``[K, H, W]``).
    ``out_scale``: the float value of one unit of the integer ``o`` (a power of two), for
    a readout whose output feeds other nodes; ``None``: the natural ``2^e / 64``.
    """

    name: str
    inputs: tuple[str, ...]
    weight: torch.Tensor
    bias: torch.Tensor | None
    gamma: float
    lambda_pre: float = 1.0
    out_scale: float | None = None
    #: the float model's module this node was converted from (see FloatSpiking.source)
    source: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FloatGlobalPool:
    """Global average pooling over ``positions`` = H·W spatial positions."""

    name: str
    inputs: tuple[str, ...]
    positions: int
