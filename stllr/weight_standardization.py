"""Scaled weight standardisation (kept inside autograd).

For a weight ``W`` of shape ``[out, *fan_in_dims]`` and a gain ``g`` of shape
``[out, 1, ...]``::

    Ŵ = g ⊙ (W − mean) / sqrt(var · fan_in + eps)

with ``mean`` and the *unbiased* ``var`` taken per output unit over all fan-in
dimensions and ``fan_in = ∏ fan_in_dims``. S-TLLR's custom Functions return
∂L/∂Ŵ; autograd maps it onto ``W`` and ``g`` through this function, which is why
it must run with gradients enabled.
"""

from __future__ import annotations

import math

import torch

WS_EPS = 1e-4


def standardize_weight(weight: torch.Tensor, gain: torch.Tensor | None, eps: float = WS_EPS):
    """Return Ŵ for ``weight`` ``[out, ...]`` and optional ``gain`` ``[out, 1, ...]``."""
    dims = tuple(range(1, weight.dim()))
    fan_in = math.prod(weight.shape[1:])
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=True)
    w_hat = (weight - mean) / torch.sqrt(var * fan_in + eps)
    if gain is not None:
        w_hat = w_hat * gain
    return w_hat


class StandardizedWeightCache:
    """Reuse Ŵ while ``W`` and ``g`` are unchanged within one sequence.

    Ŵ only changes when the optimiser updates ``W`` or ``g`` (which bumps their
    in-place version counters), so recomputing it at every time step is wasted
    work. The cache is keyed on grad mode, the tensors' identities and versions,
    and is cleared by the owning layer's ``reset_state()``.

    ``keep_graph=False`` (S-TLLR layers) caches only under ``no_grad``: with a
    backward at every step, each step needs its own small WS graph.
    ``keep_graph=True`` (BPTT layers) also caches the graph-carrying Ŵ, which
    autograd then differentiates once for all steps of the sequence.
    """

    def __init__(self, keep_graph: bool):
        self.keep_graph = keep_graph
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None

    def clear(self) -> None:
        self._key = None
        self._value = None

    def get(self, weight: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        grad = torch.is_grad_enabled()
        if grad and not self.keep_graph:
            return standardize_weight(weight, gain)
        key = (grad, weight.data_ptr(), weight._version, weight.dtype)
        if gain is not None:
            key += (gain.data_ptr(), gain._version)
        if key != self._key:
            self._value = standardize_weight(weight, gain)
            self._key = key
        return self._value
