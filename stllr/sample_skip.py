"""Feature-map S-TLLR steps that skip the samples whose input is all zero.

A convolutional S-TLLR layer multiplies its pre-synaptic activity ``x`` ``[B, C, H, W]``
(spikes of the layer below, or frames) three times per learning step (docs/rule.md §5,
:mod:`stllr.functional.stllr_step`)::

    I     = Ŵ ⊛ x + b                                        forward current
    ∂/∂Ŵ  = Σ_b corr(α_pre·g[b], P[b]) + corr(α_post·δ[b]⊙Q[t−1][b], x[b])

where ``corr`` is the weight gradient of the synapse (a correlation over positions). A
sample ``b`` whose ``x[b]`` is all zero contributes nothing to ``Ŵ ⊛ x[b]`` (its current
is the bias alone) nor to the non-causal half; one whose pre-trace ``P[b]`` is all zero
(no input since the sequence began) contributes nothing to the causal half. In deep
layers of a spiking network, and in whole layers that are silent, these products are
pure multiplications of zeros.

:func:`active_samples` lists the samples with a non-zero entry (one ``any`` pass over
the operand); :func:`subset_current` and :func:`subset_weight_grad` then run the
synapse's dense products (``SynapseOps``: any connectivity) on those samples only. The
values are the dense products' with the zero terms left out: the current of a silent
sample is ``b`` exactly, the others the same convolution of the same sample (bitwise
equal wherever the kernel's per-sample arithmetic does not depend on the batch size:
always in float64, and in float32 for the batch sizes measured except a batch of one),
and the weight gradient is the same sum without its zero terms, up to float rounding
(docs/event_driven.md §6.2).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from stllr.factors import STLLRFactors
from stllr.synapse_ops import SynapseOps


class ActiveSamples(NamedTuple):
    """The samples of a batch-first operand that have a non-zero entry.

    ``index``: their positions in the batch, ``[n]`` int64 ascending (``n`` may be 0);
    ``batch``: the batch size B.
    """

    index: torch.Tensor
    batch: int


def active_samples(x: torch.Tensor) -> ActiveSamples | None:
    """The samples of ``x`` ``[B, ...]`` with a non-zero (or NaN) entry, or None when
    every sample has one (nothing to skip)."""
    batch = x.shape[0]
    nonzero = x.reshape(batch, -1).any(dim=1)
    index = nonzero.nonzero().flatten()
    return None if index.numel() == batch else ActiveSamples(index, batch)


def _rows(t: torch.Tensor, rows: ActiveSamples | None) -> torch.Tensor:
    return t if rows is None else t.index_select(0, rows.index)


def subset_current(
    ops: SynapseOps,
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    rows: ActiveSamples,
    out_shape: torch.Size,
) -> torch.Tensor:
    """``ops.current(x, w, b)`` ``[B, *out]`` computed for the samples ``rows`` only; the
    others (all-zero ``x[b]``) get ``b`` (zeros without a bias), a new contiguous tensor."""
    if b is None:
        out = x.new_zeros(out_shape)
    else:
        # clone, not contiguous(): for a [1, O, 1, …] output the expanded view is already
        # contiguous, and the caller's in-place LIF step would then write into the bias
        out = b.view(1, -1, *([1] * (len(out_shape) - 2))).expand(out_shape).clone()
    if rows.index.numel():
        out.index_copy_(0, rows.index, ops.current(x.index_select(0, rows.index), w, b))
    return out


def subset_weight_grad(
    ops: SynapseOps,
    f: STLLRFactors,
    g: torch.Tensor,
    delta: torch.Tensor,
    q_prev: torch.Tensor,
    trace: torch.Tensor,
    trace_rows: ActiveSamples | None,
    x: torch.Tensor,
    x_rows: ActiveSamples | None,
    w_shape: torch.Size,
) -> torch.Tensor:
    """``α_pre Σ_b corr(g, trace) + α_post Σ_b corr(δ⊙Q[t−1], x)`` (the weight gradient of
    :func:`~stllr.functional.stllr_step.stacked_operands`) over the samples ``trace_rows``
    of the causal half and ``x_rows`` of the non-causal half (None: all samples); the
    operands are batch-stacked into one ``ops.weight_grad`` call, as in the dense step.
    Zeros of ``w_shape`` when no sample is left."""
    posts, pres = [], []
    if trace_rows is None or trace_rows.index.numel():
        posts.append(f.alpha_pre * _rows(g, trace_rows))
        pres.append(_rows(trace, trace_rows))
    if f.alpha_post != 0.0 and (x_rows is None or x_rows.index.numel()):
        posts.append(f.alpha_post * (_rows(delta, x_rows) * _rows(q_prev, x_rows)))
        pres.append(_rows(x, x_rows))
    if not posts:
        return g.new_zeros(w_shape)
    post = posts[0] if len(posts) == 1 else torch.cat(posts, dim=0)
    pre = pres[0] if len(pres) == 1 else torch.cat(pres, dim=0)
    return ops.weight_grad(post, pre, w_shape)


def skips_samples(mode: str, x: torch.Tensor) -> bool:
    """Whether a feature-map layer whose ``event_inputs`` switch is ``mode`` looks for
    silent samples in ``x``: never (``dense``), always (``sparse``), or (``auto``) for a
    CPU tensor (on a GPU the listing would synchronise the device)."""
    if mode == "dense":
        return False
    return mode == "sparse" or x.device.type == "cpu"
