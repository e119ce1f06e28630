"""The SHD recurrent network (``stllr_shd_net`` / ``bptt_shd_net``), docs/rule.md §10d.

S-TLLR: ``RecurrentLinearSTLLR`` 700→H (γ = σ(5), θ = 0.6, Ψ (a), WS on W and
W_rec) → feedback hook → ``AccumulateReadout`` H→K (γ = σ(5), λ_pre = 0.99).

BPTT: ``ScaledWSLinear`` 700→H plus ``ScaledWSLinear`` H→H (no bias) on the
previous spikes → ``BPTTLIF`` (leak 15, Ψ (a)) → ``nn.Linear`` H→K into a
leaky integrator (γ = σ(5)).
"""

from __future__ import annotations

import torch
from torch import nn

from stllr.factors import STLLRFactors
from stllr.feedback import FeedbackHook
from stllr.layers.bptt import BPTTLIF, LeakyReadout, ScaledWSLinear
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams
from stllr.padding import masked_step

SHD_FACTORS = STLLRFactors(lambda_post=0.5, lambda_pre=1.0, alpha_post=1.0, alpha_pre=1.0)


class SHDNetSTLLR(SpikingModel):
    """700 → H recurrent S-TLLR LIF → K accumulate readout."""

    family = "stllr"

    def __init__(
        self,
        num_inputs: int = 700,
        hidden: int = 450,
        num_classes: int = 20,
        factors: STLLRFactors = SHD_FACTORS,
        psi: str = "a",
        feedback: str = "BP",
        threshold: float = 0.6,
        leak: float = 5.0,
    ):
        super().__init__((num_inputs,), num_classes)
        lif = LIFParams(leak=leak, threshold=threshold)
        self.rec = RecurrentLinearSTLLR(num_inputs, hidden, lif=lif, factors=factors, psi=psi)
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

    def forward_no_graph(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``Σ_t o[t]`` over ``x`` ``[n, B, num_inputs]`` without autograd (see
        :meth:`SpikingModel.forward_no_graph`): one loop over the two layers' no-graph
        runs (weights, constants and state prepared once, the state updated in place),
        with the results of n calls ``model(x[t])`` (the feedback hook is the identity
        without a graph); ``mask`` as there."""
        if x.shape[0] == 0 or self.has_forward_hooks():
            return super().forward_no_graph(x, mask)
        total = x.new_zeros(x.shape[1], self.num_classes)
        with torch.no_grad():
            rec = self.rec.no_graph_run(x[0])
            out = self.readout.no_graph_run(rec.state.u)
            try:
                for t in range(x.shape[0]):
                    total += masked_step(out.step(rec.step(x[t])), mask, t)
            finally:
                rec.close()
                out.close()
        return total


class SHDNetBPTT(SpikingModel):
    """700 → H recurrent LIF (BPTT, leak 15) → K leaky readout."""

    family = "bptt"

    def __init__(
        self,
        num_inputs: int = 700,
        hidden: int = 450,
        num_classes: int = 20,
        psi: str = "a",
        threshold: float = 0.6,
        leak: float = 15.0,
    ):
        super().__init__((num_inputs,), num_classes)
        self.ff = ScaledWSLinear(num_inputs, hidden)
        self.rec = ScaledWSLinear(hidden, hidden, bias=False)
        self.lif = BPTTLIF(LIFParams(leak=leak, threshold=threshold), psi=psi)
        self.readout = LeakyReadout(hidden, num_classes, leak=5.0)
        for lin in (self.ff, self.rec, self.readout.linear):
            nn.init.kaiming_normal_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self._prev: torch.Tensor | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self._prev = None

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        current = self.ff(x)
        if self._prev is not None:
            current = current + self.rec(self._prev)
        s = self.lif(current)
        self._prev = s
        return self.readout(s)
