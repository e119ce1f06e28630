"""Backward products of a feature-map S-TLLR step that leave out exact zeros.

At step t the backward of a feature-map layer (docs/rule.md §5,
:mod:`stllr.functional.stllr_step`) computes, for δ = ∂L/∂s[t] ``[B, O, H', W']`` and
g = Ψ(v[t]) ⊙ δ::

    ∂/∂x  = Ŵᵀ ⊛ g                                            input gradient
    ∂/∂Ŵ  = α_pre Σ_b corr(g[b], P[b]) + α_post Σ_b corr(δ[b]⊙Q[t−1][b], x[b])

Two kinds of exact zeros are left out here (the sample and event skipping of the
forward's ``x`` is :mod:`stllr.sample_skip` and :mod:`stllr.conv_events`):

* **the pre-trace P**: :func:`feature_map_weight_grad` runs the causal half on the samples
  whose P is non-zero, or, when at most
  :data:`~stllr.conv_events.CONV_EVENT_MAX_DENSITY` of P is non-zero (a layer that got a
  few spikes in the sequence), sums it over P's events
  (:func:`~stllr.conv_events.events_conv_weight_grad`).
* **δ on the even lattice** (:func:`even_lattice_ops`): below a 2 × 2 max pooling the
  gradient δ reaches one position per window, the one the pooling picked; in a window
  whose spikes are all zero the pooling picks the first position, so below a silent
  layer δ is zero except at even rows and even columns. Then every product with δ or g
  needs only that lattice: for a convolution with stride s, output position (2i, 2j)
  reads the input at (2s·i − p + a·d, 2s·j − p + e·d), which is the convolution with
  stride 2s at position (i, j). The input gradient and the dense weight-gradient
  products then run with stride 2s on ``δ[..., ::2, ::2]`` (a quarter of the
  multiply-adds). The test is on the values (one pass over three quarters of δ, after
  a look at one odd row), so it holds whatever produced δ.

The left-out terms are exact zeros: the results are the dense products' up to float
rounding (the same non-zero terms, added in another order; bitwise in the cases where
the kernel's order does not change). docs/event_driven.md §6.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch

from stllr.conv_events import (
    CONV_EVENT_MAX_DENSITY,
    ConvEvents,
    conv_events_at,
    events_conv_current,
    events_conv_weight_grad,
    sparse_input,
)
from stllr.factors import STLLRFactors
from stllr.sample_skip import ActiveSamples, subset_weight_grad
from stllr.synapse_ops import Conv2dOps, SynapseOps


class EvenLattice(NamedTuple):
    """δ on (or nearly on) the even lattice.

    ``ops``: the convolution with its stride doubled, which computes the dense products
    on the lattice (on :func:`on_lattice` of the operands). The entries of δ off the
    lattice, if any (None: there are none), summed as events through the convolution
    ``adjoint`` (:func:`adjoint_ops`): ``off`` ``[n, 4]`` their positions (row-major
    order) and ``delta_off``, ``g_off`` ``[n]`` their values of δ and of Ψ ⊙ δ.
    """

    ops: Conv2dOps
    adjoint: Conv2dOps | None = None
    off: torch.Tensor | None = None
    delta_off: torch.Tensor | None = None
    g_off: torch.Tensor | None = None

    def off_events(self, values: torch.Tensor, shape: torch.Size, kernel) -> ConvEvents:
        """The events of the off-lattice entries with ``values`` for the adjoint
        convolution (its input has ``shape``, δ's)."""
        return conv_events_at(self.off, values, shape, self.adjoint, kernel)


def adjoint_ops(ops: Conv2dOps, kernel: tuple[int, int]) -> Conv2dOps | None:
    """For a stride-1 convolution (``groups = 1``) with a ``kernel``-sized Ŵ: the
    convolution ``ops'`` with ``conv(g, Ŵ', ops') = Ŵᵀ ⊛ g`` (the input gradient) for
    ``Ŵ' = flip(Ŵ)ᵀ`` ``[C, O, kH, kW]`` (:func:`adjoint_weight`): padding
    ``d·(k − 1) − p``, the same dilation. None for other convolutions (or p > d·(k − 1))."""
    if ops.stride != (1, 1) or ops.groups != 1:
        return None
    pads = tuple(d * (k - 1) - p for p, d, k in zip(ops.padding, ops.dilation, kernel, strict=True))
    if min(pads) < 0:
        return None
    return Conv2dOps((1, 1), pads, ops.dilation, 1)


def adjoint_weight(w: torch.Tensor) -> torch.Tensor:
    """``Ŵ' = flip(Ŵ)ᵀ``: ``[O, C, kH, kW]`` → ``[C, O, kH, kW]``, kernel flipped. Its
    own inverse (so it also maps a gradient with respect to Ŵ' onto one for Ŵ)."""
    return w.transpose(0, 1).flip(2, 3)


def even_lattice(
    ops: SynapseOps, delta: torch.Tensor, psi: torch.Tensor, kernel: tuple[int, int]
) -> EvenLattice | None:
    """The lattice of ``delta`` ``[B, O, H', W']`` (H', W' ≥ 2; ``psi``: Ψ(v), same shape)
    for the convolution
    ``ops`` (:class:`Conv2dOps`, ``groups = 1``, a ``kernel``-sized Ŵ) when every
    non-zero entry of ``delta`` sits at an even row and column, or (where
    :func:`adjoint_ops` exists, to sum the rest as events) all but at most
    :data:`~stllr.conv_events.CONV_EVENT_MAX_DENSITY` of its entries do; else None."""
    if not isinstance(ops, Conv2dOps) or ops.groups != 1:
        return None
    if delta.dim() != 4 or min(delta.shape[2:]) < 2:
        return None
    adjoint = adjoint_ops(ops, kernel)
    allowed = 0 if adjoint is None else int(CONV_EVENT_MAX_DENSITY * delta.numel())
    # one odd row first: rules out a dense δ at little cost
    if int(torch.count_nonzero(delta[0, :, 1])) > allowed:
        return None
    # the entries off the lattice: a copy with the lattice zeroed, counted contiguously
    # (a count over the strided views of the odd rows and columns is slower)
    rest = delta.clone()
    on_lattice(rest).zero_()
    n_off = int(torch.count_nonzero(rest))
    if n_off > allowed:
        return None
    lattice = replace(ops, stride=(2 * ops.stride[0], 2 * ops.stride[1]))
    if n_off == 0:
        return EvenLattice(lattice)
    off = rest.nonzero()
    b, o, i, j = off.unbind(1)
    delta_off = delta[b, o, i, j]
    return EvenLattice(lattice, adjoint, off, delta_off, psi[b, o, i, j] * delta_off)


def on_lattice(t: torch.Tensor) -> torch.Tensor:
    """``t[..., ::2, ::2]``: the even rows and columns (a view)."""
    return t[..., ::2, ::2]


def input_grad(
    ops: SynapseOps,
    lattice: EvenLattice | None,
    g: torch.Tensor,
    w: torch.Tensor,
    x_shape: torch.Size,
) -> torch.Tensor:
    """``Ŵᵀ ⊛ g`` ``[B, C, H, W]`` for ``g = Ψ ⊙ δ``: ``ops.input_grad``, or on the lattice
    plus the events of ``g`` off it through the adjoint convolution."""
    if lattice is None:
        return ops.input_grad(g, w, x_shape)
    grad = lattice.ops.input_grad(on_lattice(g), w, x_shape)
    if lattice.off is not None:
        ev = lattice.off_events(lattice.g_off, g.shape, tuple(w.shape[2:]))
        grad += events_conv_current(ev, adjoint_weight(w), None)
    return grad


def feature_map_weight_grad(
    ops: SynapseOps,
    lattice: EvenLattice | None,
    f: STLLRFactors,
    g: torch.Tensor,
    delta: torch.Tensor,
    q_prev: torch.Tensor,
    p: torch.Tensor,
    x: torch.Tensor,
    x_in: ActiveSamples | ConvEvents | None,
    w_shape: torch.Size,
) -> torch.Tensor:
    """``α_pre Σ_b corr(g, P) + α_post Σ_b corr(δ⊙Q[t−1], x)`` ``[O, C, kH, kW]`` with the
    zeros left out (module docstring).

    ``x_in``: what the forward found for ``x`` (its active samples, its events, or None:
    every sample); the pre-trace ``p`` is looked at here
    (:func:`~stllr.conv_events.sparse_input`). A half whose pre-synaptic operand is given
    as events is summed over them with the whole post-synaptic operand. With ``lattice``
    (:func:`even_lattice`) the dense halves run with ``lattice.ops`` on the lattice of
    ``g``, ``δ``, ``Q[t−1]``, and the entries of δ off the lattice as events.
    """
    kernel = tuple(w_shape[2:])
    p_in = sparse_input(p, ops, kernel)
    none = ActiveSamples(torch.empty(0, dtype=torch.long, device=p.device), p.shape[0])
    p_rows = none if isinstance(p_in, ConvEvents) else p_in
    x_rows = none if isinstance(x_in, ConvEvents) or f.alpha_post == 0.0 else x_in
    if lattice is None:
        grad = subset_weight_grad(ops, f, g, delta, q_prev, p, p_rows, x, x_rows, w_shape)
    else:
        grad = subset_weight_grad(
            lattice.ops, f, on_lattice(g), on_lattice(delta), on_lattice(q_prev),
            p, p_rows, x, x_rows, w_shape,
        )  # fmt: skip
    if isinstance(p_in, ConvEvents):
        grad += events_conv_weight_grad(p_in, f.alpha_pre * g, w_shape)
    if isinstance(x_in, ConvEvents) and f.alpha_post != 0.0:
        grad += events_conv_weight_grad(x_in, f.alpha_post * (delta * q_prev), w_shape)
    if lattice is not None and lattice.off is not None:
        # the dense halves' terms off the lattice: events of δ through the adjoint
        # convolution, whose weight gradient is corr(·, ·) for Ŵ' (adjoint_weight)
        adjoint_shape = (w_shape[1], w_shape[0], *kernel)
        if _runs(p_rows):
            ev = lattice.off_events(f.alpha_pre * lattice.g_off, delta.shape, kernel)
            grad += adjoint_weight(events_conv_weight_grad(ev, p, adjoint_shape))
        if _runs(x_rows):
            b, o, i, j = lattice.off.unbind(1)
            a_off = f.alpha_post * (lattice.delta_off * q_prev[b, o, i, j])
            ev = lattice.off_events(a_off, delta.shape, kernel)
            grad += adjoint_weight(events_conv_weight_grad(ev, x, adjoint_shape))
    return grad


def _runs(rows: ActiveSamples | None) -> bool:
    """Whether a dense half runs on some samples (None: all of them)."""
    return rows is None or rows.index.numel() > 0
