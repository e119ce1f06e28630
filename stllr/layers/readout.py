"""The accumulate readout of the SHD network (``LinearSTLLR(accumulate=True)``).

A non-spiking leaky integrator whose membrane is the logit (raw weights, no
weight standardisation); see :mod:`stllr.functional.readout` for the equations.
Called once per step with ``h[t]`` ``[B, in]``; returns ``o[t]`` ``[B, K]``.

``weight_quantizer`` (default None) is the optional hook of
:data:`~stllr.weight_standardization.WeightQuantizer`: the step multiplies by
``weight_quantizer((W,))[0]`` (:meth:`AccumulateReadout.effective_weights`), cached
while ``W`` is unchanged and, during S-TLLR training, differentiated once per optimiser
step like the hidden layers' Ŵ (``deferred_weight_gradients``). Without a quantizer the
step uses ``W`` itself.

A step that needs no graph (gradients disabled, or nothing requiring grad) runs the
same arithmetic without the autograd Function and updates the pre-trace ``P_o`` in
place (bitwise equal results; a trace from a step with a graph is copied first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stllr.factors import trace_step_
from stllr.functional.readout import AccumulateStep
from stllr.functional.stllr_step import needs_graph
from stllr.neuron import decay_from_leak
from stllr.validation import check_float_tensor, check_shape
from stllr.weight_standardization import StandardizedWeightCache, WeightQuantizer


class AccumulateReadout(nn.Module):
    """``o[t] = γ·o[t−1] + W h[t] + b`` with an S-TLLR pre-trace ``λ``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        leak: float = 5.0,
        lambda_pre: float = 0.99,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.gamma = decay_from_leak(leak)
        self.lambda_pre = lambda_pre
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_normal_(self.weight)
        #: optional hook on the weight (see the module docstring)
        self.weight_quantizer: WeightQuantizer | None = None
        self._wq = StandardizedWeightCache(keep_graph=False, standardize=False)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None  # (P_o, o)
        self._own_trace: torch.Tensor | None = None  # a P_o that no-graph steps may overwrite

    def reset_state(self) -> None:
        self.state = None
        self._own_trace = None
        self._wq.clear()

    def effective_weights(self) -> tuple[torch.Tensor]:
        """``(W,)`` after the weight quantizer: what the step multiplies by."""
        if self.weight_quantizer is None:
            return (self.weight,)
        return (self._wq.get(self.weight, None, self.weight_quantizer),)

    def _current_state(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.state is None or self.state[0].shape[0] != h.shape[0]:
            self.state = (torch.zeros_like(h), h.new_zeros(h.shape[0], self.out_features))
            self._own_trace = self.state[0]
        return self.state

    def _owned_trace(self, p: torch.Tensor) -> torch.Tensor:
        """``P_o`` as a tensor that no-graph steps may overwrite (a copy if needed)."""
        return p if p is self._own_trace else p.clone()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_float_tensor("h", h)
        check_shape("h", h, [None, self.in_features], "[B, in_features]")
        p_prev, o_prev = self._current_state(h)
        (w,) = self.effective_weights()
        b = self.bias
        if not needs_graph(h, w, b):
            # AccumulateStep's forward without autograd: P_o in place, o a new tensor.
            p = self._owned_trace(p_prev)
            self._own_trace = trace_step_(p, h, self.lambda_pre)
            o = (self.gamma * o_prev).add_(F.linear(h, w, b))
            self.state = (p, o)
            return o
        o, p = AccumulateStep.apply(h, w, b, p_prev, o_prev, self.gamma, self.lambda_pre)
        self.state = (p, o.detach())
        return o

    def no_graph_run(self, h: torch.Tensor) -> ReadoutNoGraphRun:
        """Steps without autograd for inputs like ``h`` ``[B, in]`` (checked here, once):
        the readout's twin of :class:`~stllr.layers.stllr_layers.RecurrentNoGraphRun`."""
        check_float_tensor("h", h)
        check_shape("h", h, [None, self.in_features], "[B, in_features]")
        return ReadoutNoGraphRun(self, h)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"gamma={self.gamma:.4f}, lambda_pre={self.lambda_pre}"
        )


class ReadoutNoGraphRun:
    """Consecutive no-graph steps of an :class:`AccumulateReadout` (``step(h_t) -> o[t]``,
    as ``readout(h_t)`` under ``no_grad``); W and the constants prepared once, ``P_o``
    updated in place, ``close()`` stores the state in the layer."""

    __slots__ = ("layer", "w", "b", "p", "o", "gamma", "lam")

    def __init__(self, layer: AccumulateReadout, h: torch.Tensor):
        self.layer = layer
        p, self.o = layer._current_state(h)
        self.p = layer._owned_trace(p)
        with torch.no_grad():
            (self.w,) = layer.effective_weights()
        self.b = layer.bias

        def c(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=h.dtype, device=h.device)

        self.gamma = c(layer.gamma)
        self.lam = None if layer.lambda_pre == 1.0 else c(layer.lambda_pre)

    def step(self, h: torch.Tensor) -> torch.Tensor:
        """One step, ``h`` ``[B, in]``; returns the logits o[t] (a new tensor)."""
        trace_step_(self.p, h, self.lam)
        self.o = torch.mul(self.o, self.gamma).add_(F.linear(h, self.w, self.b))
        return self.o

    def close(self) -> None:
        """Store the state reached in the layer."""
        self.layer.state = (self.p, self.o)
        self.layer._own_trace = self.p
