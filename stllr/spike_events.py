"""Event-driven products of a dense S-TLLR synapse with a sparse (spiking) operand.

A dense synapse multiplies its pre-synaptic activity ``x`` ``[B, n]`` by Ŵ ``[m, n]``
twice per learning step (docs/event_driven.md):

* the forward current ``I = x Ŵᵀ + b`` (``[B, m]``), and
* the non-causal half of the weight gradient ``Σ_b a[b]ᵀ x[b]`` (``[m, n]``, with
  ``a = α_post · δ ⊙ Q[t−1]``).

When only a few entries of ``x`` are non-zero (input and hidden spikes of the SHD network
are 3–5 % dense) both products need only those entries. :func:`row_events` lists them once
per step (:class:`RowEvents`, sample by sample), and

* :func:`events_current` computes ``I[b] = b + Σ_{j: x[b,j]≠0} x[b,j] · Ŵᵀ[j]`` as a
  sum of rows of Ŵᵀ (``torch.nn.functional.embedding_bag``, one bag per sample),
* :func:`events_weight_grad_t` computes ``Gᵀ[j] = Σ_{b: x[b,j]≠0} x[b,j] · a[b]``, the
  transposed ``[n, m]`` weight gradient, as a sum of rows of ``a`` (one bag per input).

The results equal the dense products up to float rounding (the terms are summed in another
order); the cost is one scan of ``x`` plus ``nnz · m`` multiply-adds instead of
``B · n · m``. Which path a layer takes is its ``event_inputs`` switch
(:data:`EVENT_INPUT_MODES`, :func:`use_events`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

# The switch's values (the config key ``event_inputs`` takes the same): ``dense``: dense
# products; ``sparse``: event-driven products; ``auto``: event-driven when the operand's
# measured density is at most SPARSE_MAX_DENSITY (and the tensor is on the CPU).
from stllr.config import EVENT_INPUT_MODES

#: The density (fraction of non-zero entries) up to which ``auto`` takes the event-driven
#: path: the crossover of the SHD step measured on the CPU (benchmarks/event_driven.py,
#: docs/event_driven.md §3). The two paths give the same results, so the threshold only
#: decides the speed.
SPARSE_MAX_DENSITY = 0.2

#: ``auto`` keeps products smaller than this many multiply-adds (``B · n · m``) dense: the
#: event-driven path has a fixed cost of some tens of µs (the conversion's kernels) that
#: only a large enough dense product pays for (docs/event_driven.md §3).
MIN_EVENT_MACS = 2**21

#: ``auto`` estimates the density of a non-binary operand from its first elements (at most
#: this many); a binary one (spikes) is counted exactly.
DENSITY_SAMPLE = 8192


class RowEvents(NamedTuple):
    """The non-zero entries of a 2-D operand ``x`` ``[B, n]``, sample by sample (CSR).

    ``rows`` and ``cols`` (``[nnz]``, int64) are the positions in row-major order,
    ``values`` (``[nnz]``) the entries, or None when every entry is 1 (spikes);
    ``offsets`` ``[B]`` the index of each row's first entry in ``cols``.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor | None
    offsets: torch.Tensor
    shape: tuple[int, int]


def row_events(x: torch.Tensor, binary: bool = False) -> RowEvents:
    """The non-zero entries of ``x`` ``[B, n]``; ``binary``: ``x`` holds only 0 and 1
    (spikes), so the values need not be gathered."""
    nz = x.nonzero()
    rows, cols = nz[:, 0], nz[:, 1]
    values = None if binary else x[rows, cols]
    offsets = torch.searchsorted(rows, torch.arange(x.shape[0], device=x.device))
    return RowEvents(rows, cols, values, offsets, (x.shape[0], x.shape[1]))


def events_current(ev: RowEvents, w_t: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x Ŵᵀ + b`` ``[B, m]`` from the events of ``x`` and ``w_t`` = Ŵᵀ ``[n, m]`` (a
    contiguous copy: :func:`transposed`)."""
    out = F.embedding_bag(ev.cols, w_t, ev.offsets, mode="sum", per_sample_weights=ev.values)
    return out if b is None else out.add_(b)


def events_weight_grad_t(a: torch.Tensor, ev: RowEvents) -> torch.Tensor:
    """``(Σ_b a[b]ᵀ x[b])ᵀ = xᵀ a`` ``[n, m]`` for ``a`` ``[B, m]`` and the events of
    ``x`` ``[B, n]`` (the entries regrouped input by input: one bag per input j)."""
    order = torch.argsort(ev.cols, stable=True)
    cols = ev.cols[order]
    starts = torch.searchsorted(cols, torch.arange(ev.shape[1], device=cols.device))
    weights = None if ev.values is None else ev.values[order]
    return F.embedding_bag(ev.rows[order], a, starts, mode="sum", per_sample_weights=weights)


def transposed(w: torch.Tensor) -> torch.Tensor:
    """Ŵᵀ as a contiguous tensor (the rows :func:`events_current` sums)."""
    return w.detach().t().contiguous()


def check_event_mode(mode: str, where: str = "event_inputs") -> str:
    """``mode`` if it is one of :data:`EVENT_INPUT_MODES`, else a ValueError naming ``where``."""
    if mode not in EVENT_INPUT_MODES:
        raise ValueError(f"{where} must be one of {EVENT_INPUT_MODES}, got {mode!r}")
    return mode


def density(x: torch.Tensor, binary: bool = False) -> float:
    """The fraction of non-zero entries of ``x``: exact for a binary ``x`` (its sum),
    else estimated from its first :data:`DENSITY_SAMPLE` elements."""
    if x.numel() == 0:
        return 0.0
    if binary:
        return float(x.sum()) / x.numel()
    head = x.reshape(-1)[:DENSITY_SAMPLE]
    return int(torch.count_nonzero(head)) / head.numel()


def use_events(mode: str, x: torch.Tensor, out_features: int, binary: bool = False) -> bool:
    """Whether a layer whose switch is ``mode`` takes the event-driven path for ``x``
    ``[B, n]`` multiplied into ``out_features`` outputs: always (``sparse``), never
    (``dense``), or (``auto``) for a CPU tensor whose product has at least
    :data:`MIN_EVENT_MACS` multiply-adds and whose density is at most
    :data:`SPARSE_MAX_DENSITY`."""
    if mode == "dense":
        return False
    if mode == "sparse":
        return True
    return (
        x.device.type == "cpu"
        and x.numel() * out_features >= MIN_EVENT_MACS
        and density(x, binary) <= SPARSE_MAX_DENSITY
    )


def maybe_events(
    mode: str, x: torch.Tensor, out_features: int, binary: bool = False
) -> RowEvents | None:
    """:func:`row_events` of ``x`` if the switch ``mode`` picks the event-driven path."""
    return row_events(x, binary) if use_events(mode, x, out_features, binary) else None


def set_event_inputs(model: torch.nn.Module, mode: str) -> int:
    """Set the ``event_inputs`` switch of every layer of ``model`` that has one; returns
    how many layers have it (0: the model has no event-driven path)."""
    check_event_mode(mode)
    layers = [m for m in model.modules() if isinstance(m, EventInputSwitch)]
    for layer in layers:
        layer.event_inputs = mode
    return len(layers)


class TransposeCache:
    """Ŵᵀ (:func:`transposed`) of the last weight asked for, reused while that tensor
    (same object, same in-place version) is unchanged: the effective weights stay the
    same over the steps of a batch. The cache holds a reference to the weight, so a new
    weight can never be mistaken for it."""

    __slots__ = ("_w", "_version", "_w_t")

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._w = None
        self._version = -1
        self._w_t = None

    def get(self, w: torch.Tensor) -> torch.Tensor:
        if w is not self._w or w._version != self._version:
            self._w, self._version, self._w_t = w, w._version, transposed(w)
        return self._w_t


class EventInputSwitch:
    """Mixin of the S-TLLR layers (before their ``nn.Module`` base): the
    ``event_inputs`` switch, ``"dense"`` (the default here), ``"sparse"`` or ``"auto"``
    (dense layers: :func:`use_events`; feature-map layers: :mod:`stllr.sample_skip`),
    and a :class:`TransposeCache` per weight for the event-driven current of a dense
    layer (which has ``out_features``); ``reset_state`` clears the caches too."""

    def _init_event_inputs(self, n_weights: int) -> None:
        self._event_inputs = "dense"
        self._transposes = tuple(TransposeCache() for _ in range(n_weights))

    @property
    def event_inputs(self) -> str:
        return self._event_inputs

    @event_inputs.setter
    def event_inputs(self, mode: str) -> None:
        self._event_inputs = check_event_mode(mode)

    def reset_state(self) -> None:
        super().reset_state()
        for cache in self._transposes:
            cache.clear()

    def _events(self, x: torch.Tensor, binary: bool = False):
        """The events of ``x`` if the switch sends it down the event-driven path, else None."""
        return maybe_events(self._event_inputs, x, self.out_features, binary)
