"""BPTT twins of the S-TLLR layers: surrogate gradients through time.

Same LIF dynamics as :mod:`stllr.neuron`, but the membrane stays in the graph
across steps (only the reset spike is detached), and the spike's derivative is
Ψ(v) (:mod:`stllr.surrogates`)::

    m[t] = γ ũ[t−1] + Ŵ x[t] + b     s[t] = H(m[t] − θ_eff),  ∂s/∂v := Ψ(v)
    ũ[t] = m[t] − θ_eff · sg(s[t])   (soft reset; sg = stop-gradient)

Weights use scaled weight standardisation like the S-TLLR layers
(``ScaledWSLinear``/``ScaledWSConv2d`` in the reference code), with the same
optional ``weight_quantizer`` hook on Ŵ (:mod:`stllr.layers.stllr_layers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from stllr.neuron import LIFParams, decay_from_leak, heaviside, reset
from stllr.surrogates import Surrogate, canonical_name, get_surrogate
from stllr.synapse_ops import ConvTranspose2dOps
from stllr.validation import check_float_tensor
from stllr.weight_standardization import StandardizedWeightCache, WeightQuantizer


class SpikeFn(torch.autograd.Function):
    """Heaviside forward ``s = H(v)``; backward ``∂L/∂v = Ψ(v) · ∂L/∂s``."""

    @staticmethod
    def forward(ctx, v, psi: Surrogate):
        ctx.save_for_backward(v)
        ctx.psi = psi
        return heaviside(v)

    @staticmethod
    def backward(ctx, grad_s):
        (v,) = ctx.saved_tensors
        return grad_s * ctx.psi(v), None


def bptt_lif_step(current, u_prev, params: LIFParams, psi: Surrogate):
    """One differentiable LIF step; returns ``(s, ũ)`` with ũ kept in the graph."""
    s, u, _ = bptt_lif_step_membrane(current, u_prev, params, psi)
    return s, u


def bptt_lif_step_membrane(current, u_prev, params: LIFParams, psi: Surrogate):
    """:func:`bptt_lif_step` that also returns the membrane before reset:
    ``(s, ũ, m)``, ``m[t] = γ ũ[t−1] + I[t]`` (what a first-spike read-out ranks)."""
    m = params.gamma * u_prev + current
    s = SpikeFn.apply(m - params.theta_eff, psi)
    return s, reset(m, s.detach(), params), m


class BPTTLIF(nn.Module):
    """A LIF population whose membrane is differentiated through time."""

    def __init__(self, lif: LIFParams | None = None, psi: str = "b"):
        super().__init__()
        self.lif = lif or LIFParams()
        self.psi_name = canonical_name(psi)
        self.u: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.u = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.u is None or self.u.shape != current.shape:
            self.u = torch.zeros_like(current)
        s, self.u = bptt_lif_step(current, self.u, self.lif, get_surrogate(self.psi_name))
        return s

    def extra_repr(self) -> str:
        return f"gamma={self.lif.gamma:.4f}, theta={self.lif.threshold}, psi={self.psi_name}"


class _StandardizedWeights:
    """``weight`` standardised with the trainable ``gain`` through ``_ws`` (a
    StandardizedWeightCache), then ``weight_quantizer``: shared by the scaled-WS synapses."""

    def reset_state(self) -> None:
        """New sequence: Ŵ is recomputed (and differentiated once for the sequence)."""
        self._ws.clear()

    def effective_weights(self) -> tuple[torch.Tensor]:
        """``(Ŵ,)`` after the weight quantizer: what the layer multiplies by."""
        return (self._ws.get(self.weight, self.gain, self.weight_quantizer),)


class ScaledWSLinear(_StandardizedWeights, nn.Linear):
    """``nn.Linear`` whose weight is standardised with a trainable gain.

    ``weight_quantizer`` (default None): optional hook; the layer multiplies by
    ``weight_quantizer((Ŵ,))[0]`` (:meth:`effective_weights`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.gain = nn.Parameter(torch.ones(out_features, 1))
        self.weight_quantizer: WeightQuantizer | None = None
        self._ws = StandardizedWeightCache(keep_graph=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x)
        (w,) = self.effective_weights()
        return F.linear(x, w, self.bias)


class ScaledWSConv2d(_StandardizedWeights, nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardised with a trainable gain.

    ``weight_quantizer``: as in :class:`ScaledWSLinear`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__(in_channels, out_channels, _pair(kernel_size), stride, padding, bias=bias)
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1))
        self.weight_quantizer: WeightQuantizer | None = None
        self._ws = StandardizedWeightCache(keep_graph=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x)
        (w,) = self.effective_weights()
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class LeakyReadout(nn.Module):
    """Non-spiking leaky integrator ``o[t] = γ o[t−1] + W h[t] + b`` (o kept in the graph)."""

    def __init__(self, in_features: int, out_features: int, leak: float = 5.0):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gamma = decay_from_leak(leak)
        self.o: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.o = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.linear(h)
        self.o = a if self.o is None or self.o.shape != a.shape else self.gamma * self.o + a
        return self.o


class ScaledWSConvTranspose2d(_StandardizedWeights, nn.Module):
    """Transposed convolution with a standardised weight ``[C_out, C_in, k, k]`` and gain
    (output channel first, as :class:`~stllr.layers.stllr_layers.ConvTranspose2dSTLLR`),
    differentiated by autograd; ``weight_quantizer`` as in :class:`ScaledWSLinear`."""

    def __init__(self, in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=True):
        super().__init__()
        k = _pair(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *k))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.ops = ConvTranspose2dOps(_pair(stride), _pair(padding))
        self.weight_quantizer: WeightQuantizer | None = None
        self._ws = StandardizedWeightCache(keep_graph=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x)
        (w,) = self.effective_weights()
        return self.ops.current(x, w, self.bias)
