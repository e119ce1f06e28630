"""The SHD recurrent network with current-based or adaptive neurons (docs/neurons.md §4).

The topology of docs/rule.md §10d with the LIF replaced by a population of
:mod:`stllr.neurons` (``neuron`` = culif, pculif, adlif or cuadlif):

* S-TLLR: :class:`~stllr.neurons.layers.RecurrentNeuronSTLLR` 700→H → feedback hook →
  ``AccumulateReadout`` H→K (γ = σ(5), λ_pre = 0.99), as ``SHDNetSTLLR``.
* BPTT: :class:`~stllr.neurons.layers.RecurrentNeuronBPTT` 700→H → ``nn.Linear`` H→K
  into a leaky integrator (γ = σ(5)), as ``SHDNetBPTT``.
"""

from __future__ import annotations

import torch
from torch import nn

from stllr.factors import STLLRFactors
from stllr.feedback import FeedbackHook
from stllr.layers.bptt import LeakyReadout
from stllr.layers.readout import AccumulateReadout
from stllr.models.base import SpikingModel
from stllr.models.shd import SHD_FACTORS
from stllr.neurons.layers import RecurrentNeuronBPTT, RecurrentNeuronSTLLR
from stllr.neurons.population import NeuronSpec


class SHDNeuronNetSTLLR(SpikingModel):
    """700 → H recurrent S-TLLR layer of ``spec.kind`` neurons → K accumulate readout."""

    family = "stllr"

    def __init__(
        self,
        spec: NeuronSpec,
        num_inputs: int = 700,
        hidden: int = 450,
        num_classes: int = 20,
        factors: STLLRFactors = SHD_FACTORS,
        psi: str = "e",
        feedback: str = "BP",
    ):
        super().__init__((num_inputs,), num_classes)
        self.rec = RecurrentNeuronSTLLR(num_inputs, hidden, spec, factors=factors, psi=psi)
        self.hook = FeedbackHook(num_classes, (hidden,), feedback)
        self.readout = AccumulateReadout(hidden, num_classes, leak=5.0, lambda_pre=0.99)
        nn.init.kaiming_normal_(self.rec.weight)
        nn.init.zeros_(self.rec.bias)

    def batch_summed_parameters(self) -> list[nn.Parameter]:
        return list(self.rec.parameters()) if self.hook.mode != "BP" else []

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        fb = self.feedback_context(target) if self.hook.mode != "BP" else None
        h = self.hook(self.rec(x), fb)
        logits = self.readout(h)
        if fb is not None:
            fb.set_output(logits)
        return logits


class SHDNeuronNetBPTT(SpikingModel):
    """700 → H recurrent layer of ``spec.kind`` neurons (BPTT) → K leaky readout."""

    family = "bptt"

    def __init__(
        self,
        spec: NeuronSpec,
        num_inputs: int = 700,
        hidden: int = 450,
        num_classes: int = 20,
        psi: str = "e",
    ):
        super().__init__((num_inputs,), num_classes)
        self.rec = RecurrentNeuronBPTT(num_inputs, hidden, spec, psi=psi)
        self.readout = LeakyReadout(hidden, num_classes, leak=5.0)
        for lin in (self.rec.ff, self.rec.rec, self.readout.linear):
            nn.init.kaiming_normal_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.readout(self.rec(x))
