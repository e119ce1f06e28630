"""What every node kind shares: the registry, the host interface, typed weights and traces
(docs/node_kinds.md).

A *node kind* (one module of this package) owns, for its kind of
:class:`~quantization.network.QNetwork` node: the node dataclass (the quantized
parameters), a typed per-sample state, ``forward`` (one time step, batched torch or
per-sample numpy through :mod:`quantization.backend`), ``learn`` (the on-device S-TLLR
weight step, plastic kinds only), its output shape and value bound. It is registered once
with :func:`register_kind`; the emulator (:mod:`quantization.emulator`), the Lava
``fixed_pt`` models (:mod:`lava_models.processes.models`), the Lava exporter and the
saved-network loader all look kinds up here.

The *host* runs a kind: the batched emulator or one Lava process. It supplies what
depends on how the numbers are held, not on the node's math (:class:`Host`): how the
synaptic products are computed (exact float32/float64 on torch, int64 on numpy), the
emulator's one-step ``delay``, and the saturation counts. Everything that bit-exactness
depends on (the order of the LIF, Ψ and the traces, the random-stream keys, dropping the
second S-TLLR term when ``α_post = 0``, the recurrent input) is in the kind, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from quantization.errors import UnsupportedNodeError


class Host(Protocol):
    """What a node kind asks of the code that runs it (the emulator or a Lava process)."""

    def fast(self, node) -> bool:
        """Whether ``node`` runs on float32 tensors holding exact integers (emulator only)."""

    def synapse(self, node, x, keep_float: bool):
        """``W·x`` of this step as it reaches the neuron (the emulator's ``delay`` applied)."""

    def recurrent(self, node, s_prev, keep_float: bool):
        """``W_rec·s[t−1]``."""

    def bias_of(self, node, like):
        """The node's bias (``bias_mant << bias_exp``) broadcastable over ``like`` (0: none)."""

    def synaptic_delay(self) -> int:
        """Steps between ``W·x`` and the neuron on this host: 0, or 1 (Lava's ``Dense``)."""

    def a_bound(self, node) -> int | None:
        """A static bound on ``|W·x (+ W_rec·s)|``, or ``None`` if none is known."""

    def psi_table(self, node):
        """The node's Ψ table in the host's array type."""

    def count(self, label: str, values, limit: int | None) -> None:
        """Count the ``values`` at or beyond ``limit`` (``None``: a static bound says none)."""

    def count_range(self, label: str, raw, lo: int, hi: int) -> None:
        """Count the values of ``raw`` outside ``[lo, hi]`` (saturated weight updates)."""


class SynapseWeights(NamedTuple):
    """The integer weights of one node (the parts on-device learning changes).

    ``w`` ``[out, in]`` or ``[C_out, C_in/g, kH, kW]``; ``w_rec`` ``[out, out]`` or ``None``;
    ``bias`` ``bias_mant << bias_exp`` (membrane units) or ``None``.
    """

    w: Any
    w_rec: Any = None
    bias: Any = None


class Traces(NamedTuple):
    """S-TLLR traces of one plastic node (unsigned integers, ``LearningSpec.trace_bits``).

    ``p`` pre-trace of the input ``[B, *in]``; ``q`` post-trace ``[B, *out]`` (``None`` for a
    readout: Ψ ≡ 1, no second term); ``r`` pre-trace of the recurrent input ``[B, out]``;
    ``pi``, ``ri`` the current traces ``P^i``, ``R^i`` of a current-based node (else ``None``).
    """

    p: Any
    q: Any = None
    r: Any = None
    pi: Any = None
    ri: Any = None


class Quantized(NamedTuple):
    """What a kind's ``from_float`` makes of a float spec: the integer node, its
    :class:`~quantization.layer_quantization.LayerReport` (``None``: no weights) and the
    float value of one unit of its output (its consumers fold it into their weights)."""

    node: Any
    report: Any
    scale: float


class Step(NamedTuple):
    """What ``forward`` returns: the output (int64), the new state, and the same output
    as exact float32 where the host computed it so (``None`` otherwise)."""

    out: Any
    state: Any
    exact: Any = None


@dataclass(frozen=True)
class NodeKind:
    """One node kind: its node class and its functions (see the module docstring).

    ``synapse(node, w, x, dtype, keep_float)`` computes ``W·x`` for hosts (nodes with
    synapses); ``forward(node, state, inputs, host, step, index) -> Step`` (``state`` ``None`` at a
    sample's first step; ``step`` the global step and ``index`` the node's position key
    the random streams); ``learn(node, weights, state, signal, host, step, index) ->
    SynapseWeights`` (``None``: never plastic); ``out_shape(node, in_shapes)`` per-sample
    shape (raises :class:`UnsupportedNodeError`); ``value_bound(node, in_bounds,
    in_shapes)`` the largest |output| given the inputs' bounds; ``from_float(spec, scales,
    cfg) -> Quantized`` its float → integer converter for float specs of class
    ``float_spec`` (``scales``: the float value of one unit of every earlier output).
    """

    node: type
    forward: Callable
    out_shape: Callable
    value_bound: Callable
    learn: Callable | None = None
    #: ``W·x`` of the node's synapses (``None``: a node without weights)
    synapse: Callable | None = None
    float_spec: type | None = None
    from_float: Callable | None = None

    @property
    def has_weights(self) -> bool:
        return self.synapse is not None


_KINDS: dict[type, NodeKind] = {}
_BY_NAME: dict[str, type] = {}
_BY_FLOAT: dict[type, NodeKind] = {}


def register_kind(kind: NodeKind) -> NodeKind:
    """Make ``kind`` known to the emulator, Lava, the exporter and the saved-network loader."""
    _KINDS[kind.node] = kind
    _BY_NAME[kind.node.__name__] = kind.node
    if kind.float_spec is not None:
        _BY_FLOAT[kind.float_spec] = kind
    return kind


def kind_of(node) -> NodeKind:
    """The registered kind of ``node`` (:class:`UnsupportedNodeError` if none)."""
    kind = _KINDS.get(type(node))
    if kind is None:
        raise UnsupportedNodeError(
            f"node {getattr(node, 'name', '?')!r}: {type(node).__name__} is not a registered "
            f"node kind (known: {sorted(_BY_NAME)})"
        )
    return kind


def kind_for_float(spec) -> NodeKind:
    """The kind that quantizes float spec ``spec`` (``TypeError`` naming it if none)."""
    kind = _BY_FLOAT.get(type(spec))
    if kind is None:
        raise TypeError(f"no node kind quantizes {type(spec).__name__} ({spec.name})")
    return kind


def node_class(name: str) -> type | None:
    """The node class registered under ``name`` (for loading saved networks)."""
    return _BY_NAME.get(name)


def registered_kinds() -> tuple[NodeKind, ...]:
    """Every registered kind, in registration order."""
    return tuple(_KINDS.values())


def kind_names() -> list[str]:
    return sorted(_BY_NAME)


def as_int64(x):
    """``x`` (booleans, or floats holding integers) as int64, numpy or torch."""
    if isinstance(x, torch.Tensor):
        return x if x.dtype == torch.int64 else x.to(torch.int64)
    return np.asarray(x).astype(np.int64)


def as_dtype_of(x, like):
    """``x`` in ``like``'s dtype (both torch, or both numpy: then unchanged)."""
    if isinstance(x, torch.Tensor) and x.dtype != like.dtype:
        return x.to(like.dtype)
    return x


def max_abs_fan_in(w, geometry: str = "dense") -> int:
    """``max_o Σ |w|`` over the weights that feed output ``o`` (a bound on ``|W·x|`` per unit
    of ``max |x|``): a row of a dense ``[out, in]`` or conv ``[C_out, ...]`` weight; for a
    transposed conv (``"deconv"``, ``[C_in, C_out/g, kH, kW]``) the sum over input channels
    and kernel taps per output channel (an upper bound: not every tap reaches every
    position)."""
    if not w.numel():
        return 0
    if geometry == "deconv":
        w = w.transpose(0, 1)
    return int(w.abs().flatten(1).sum(1).max())


def zeros_like(x, dtype=None):
    if isinstance(x, torch.Tensor):
        return torch.zeros_like(x, dtype=dtype)
    return np.zeros_like(x, dtype=dtype)


def flat_batch(x):
    """A dense synapse's input: a batched torch ``[B, ...]`` flattened to ``[B, N]`` (a dense
    layer after a conv reads C·H·W); a per-sample numpy input as it is."""
    if isinstance(x, torch.Tensor) and x.dim() > 2:
        return x.flatten(1)
    return x
