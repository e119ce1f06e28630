"""Event-driven current of a 2-D convolution with a very sparse input.

For an input ``x`` ``[B, C, H, W]`` with few non-zero entries (the spikes reaching a deep
layer), the current ``I = Ŵ ⊛ x + b`` ``[B, O, H', W']`` is a sum over the events::

    I[b, :, i', j'] = b + Σ_{(c, i, j): x[b,c,i,j] ≠ 0} Σ_{(a, e): i = i'·s_h − p_h + a·d_h,
                                                           j = j'·s_w − p_w + e·d_w}
                      x[b, c, i, j] · Ŵ[:, c, a, e]

:func:`conv_events` lists, once per step, every (event, kernel offset) pair that lands on
an output position, sorted by that position; :func:`events_conv_current` sums the matching
rows of Ŵ laid out as ``[C·kH·kW, O]`` (``embedding_bag``, one bag per output position).
The cost is a scan of ``x`` plus ``nnz·kH·kW·O`` multiply-adds and a sort of
``nnz·kH·kW`` keys, against ``B·H'·W'·C·kH·kW·O`` for the dense convolution; the sort and
the gathers run far slower per multiply-add than oneDNN's convolution, so the event path
only pays below a fraction of a percent of non-zero inputs (:data:`CONV_EVENT_MAX_DENSITY`,
docs/event_driven.md §6). The terms are added in another order than the dense kernel's:
equal up to float rounding.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from stllr.sample_skip import ActiveSamples, active_samples
from stllr.synapse_ops import Conv2dOps

#: ``auto`` computes a convolution's current from the events of its input at or below this
#: density (non-zero fraction): the measured crossover of the event path and oneDNN's
#: convolution lies between 0.3 % and 1 % for VGG-9's layers (docs/event_driven.md §6).
CONV_EVENT_MAX_DENSITY = 0.0025


class ConvEvents(NamedTuple):
    """The (event, kernel offset) pairs of an input, grouped by output position.

    ``rows``: the index of the weight row ``c·kH·kW + a·kW + e`` of each pair;
    ``positions``: its output position ``(b·H' + i')·W' + j'`` (ascending);
    ``values``: the input value of its event; ``offsets`` ``[B·H'·W']``: where each output
    position's pairs start; ``out_shape``: ``(B, H', W')``; ``samples``: the samples with
    an event (:class:`~stllr.sample_skip.ActiveSamples`, None when every sample has one).
    """

    rows: torch.Tensor
    positions: torch.Tensor
    values: torch.Tensor
    offsets: torch.Tensor
    out_shape: tuple[int, int, int]
    samples: ActiveSamples | None


def conv_events(x: torch.Tensor, ops: Conv2dOps, kernel: tuple[int, int]) -> ConvEvents:
    """The events of ``x`` ``[B, C, H, W]`` for the convolution ``ops`` with a
    ``kernel`` = ``(kH, kW)`` weight (``ops.groups`` must be 1)."""
    if ops.groups != 1:
        raise ValueError(f"event-driven convolution needs groups=1, got {ops.groups}")
    nz = x.nonzero()
    b, c, i, j = nz.unbind(1)
    return conv_events_at(nz, x[b, c, i, j], x.shape, ops, kernel)


def conv_events_at(
    index: torch.Tensor,
    values: torch.Tensor,
    shape: torch.Size,
    ops: Conv2dOps,
    kernel: tuple[int, int],
) -> ConvEvents:
    """:func:`conv_events` for an input of ``shape`` ``[B, C, H, W]`` given by its
    non-zero entries: ``index`` ``[nnz, 4]`` (int64, in row-major order, as ``nonzero``
    lists them) and their ``values`` ``[nnz]``."""
    if ops.groups != 1:
        raise ValueError(f"event-driven convolution needs groups=1, got {ops.groups}")
    batch, _, height, width = shape
    kh, kw = kernel
    (sh, sw), (ph, pw), (dh, dw) = ops.stride, ops.padding, ops.dilation
    h_out = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    b, c, i, j = index.unbind(1)
    device = index.device
    a = torch.arange(kh, device=device).repeat_interleave(kw)
    e = torch.arange(kw, device=device).repeat(kh)
    oi_s = i[:, None] + ph - dh * a[None]  # i'·s_h for each pair
    oj_s = j[:, None] + pw - dw * e[None]
    oi, oj = oi_s.div(sh, rounding_mode="floor"), oj_s.div(sw, rounding_mode="floor")
    ok = (oi_s >= 0) & (oj_s >= 0) & (oi < h_out) & (oj < w_out)
    if sh != 1 or sw != 1:
        ok &= (oi_s % sh == 0) & (oj_s % sw == 0)
    position = ((b[:, None] * h_out + oi) * w_out + oj)[ok]
    rows = (c[:, None] * (kh * kw) + a * kw + e)[ok]
    pair_values = values[:, None].expand(ok.shape)[ok]
    position, order = torch.sort(position, stable=True)
    offsets = torch.searchsorted(position, torch.arange(batch * h_out * w_out, device=device))
    present = torch.unique_consecutive(b)
    samples = None if present.numel() == batch else ActiveSamples(present, batch)
    return ConvEvents(
        rows[order], position, pair_values[order], offsets, (batch, h_out, w_out), samples
    )


def events_conv_current(ev: ConvEvents, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``Ŵ ⊛ x + b`` ``[B, O, H', W']`` (contiguous) from the events of ``x`` and Ŵ
    ``[O, C, kH, kW]``."""
    table = w.detach().permute(1, 2, 3, 0).reshape(-1, w.shape[0])  # [C·kH·kW, O]
    out = F.embedding_bag(ev.rows, table, ev.offsets, mode="sum", per_sample_weights=ev.values)
    out = out.view(*ev.out_shape, w.shape[0]).permute(0, 3, 1, 2).contiguous()
    return out if b is None else out.add_(b.view(1, -1, 1, 1))


def events_conv_weight_grad(ev: ConvEvents, a: torch.Tensor, w_shape: torch.Size) -> torch.Tensor:
    """``Σ_b corr(a[b], x[b])`` ``[O, C, kH, kW]``, the weight gradient of the convolution
    for ``a`` ``[B, O, H', W']`` and the events of ``x``::

        G[:, c, a, e] = Σ_{pairs (event, (a, e)) with event channel c} x_event · a[b, :, i', j']

    (the same pairs as the current, regrouped by weight row: one bag per row)."""
    out_channels = w_shape[0]
    a_rows = a.permute(0, 2, 3, 1).reshape(-1, out_channels)  # [B·H'·W', O]
    order = torch.argsort(ev.rows, stable=True)
    rows = ev.rows[order]
    n_rows = math.prod(w_shape[1:])
    starts = torch.searchsorted(rows, torch.arange(n_rows, device=rows.device))
    g_t = F.embedding_bag(
        ev.positions[order], a_rows, starts, mode="sum", per_sample_weights=ev.values[order]
    )
    return g_t.view(*w_shape[1:], out_channels).permute(3, 0, 1, 2)


def sparse_input(x: torch.Tensor, ops, kernel: tuple[int, int]):
    """How a feature-map layer with synapse ``ops`` and a ``kernel``-sized weight takes
    ``x``: as events (:func:`conv_events`) when it is a convolution (``groups = 1``) and
    at most :data:`CONV_EVENT_MAX_DENSITY` of ``x`` is non-zero (but not nothing), else as
    its samples with a non-zero entry (:func:`~stllr.sample_skip.active_samples`; None:
    all of them).

    A dense input (the usual case of a spiking layer) is recognised from the first
    :data:`HEAD` entries of each sample: more non-zero entries there than the event
    threshold allows rules out events without counting the rest, and a non-zero entry
    there in every sample means every sample is active without looking at the rest. The
    result is the same as from the whole tensor."""
    batch = x.shape[0]
    head = x.reshape(batch, -1)[:, :HEAD]
    if isinstance(ops, Conv2dOps) and ops.groups == 1:
        limit = CONV_EVENT_MAX_DENSITY * x.numel()
        if torch.count_nonzero(head) <= limit:
            nnz = int(torch.count_nonzero(x))
            if nnz == 0:  # a silent input: no sample to run
                return ActiveSamples(torch.empty(0, dtype=torch.long, device=x.device), batch)
            if nnz <= limit:
                return conv_events(x, ops, kernel)
    if bool(head.any(dim=1).all()):
        return None
    return active_samples(x)


#: The entries per sample that :func:`sparse_input` looks at first.
HEAD = 4096
