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
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stllr.functional.readout import AccumulateStep
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
        self.gamma = 1.0 / (1.0 + math.exp(-leak))
        self.lambda_pre = lambda_pre
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_normal_(self.weight)
        #: optional hook on the weight (see the module docstring)
        self.weight_quantizer: WeightQuantizer | None = None
        self._wq = StandardizedWeightCache(keep_graph=False, standardize=False)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None  # (P_o, o)

    def reset_state(self) -> None:
        self.state = None
        self._wq.clear()

    def effective_weights(self) -> tuple[torch.Tensor]:
        """``(W,)`` after the weight quantizer: what the step multiplies by."""
        if self.weight_quantizer is None:
            return (self.weight,)
        return (self._wq.get(self.weight, None, self.weight_quantizer),)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_float_tensor("h", h)
        check_shape("h", h, [None, self.in_features], "[B, in_features]")
        if self.state is None or self.state[0].shape[0] != h.shape[0]:
            self.state = (torch.zeros_like(h), h.new_zeros(h.shape[0], self.out_features))
        p_prev, o_prev = self.state
        (w,) = self.effective_weights()
        o, p = AccumulateStep.apply(h, w, self.bias, p_prev, o_prev, self.gamma, self.lambda_pre)
        self.state = (p, o.detach())
        return o

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"gamma={self.gamma:.4f}, lambda_pre={self.lambda_pre}"
        )
