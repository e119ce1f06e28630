"""Node kind ``Readout``: dense or 1×1-conv synapses into a non-spiking leaky integrator
(the logits, or a graded map such as a flow head's).

Per time step ``t`` (integers; docs/fixed_point.md)::

    o[t] = clip24(decay(o[t−1], dv) + (W·x[t] << 6) + bias)      (dv = 4096: no memory)

``W`` ``[K, in]`` reads a flat input; ``W`` ``[K, C, 1, 1]`` is a 1×1 convolution over a
``[C, H, W]`` map (``o`` ``[K, H, W]``, bias per channel). A readout with ``a_shift ≠ 6``
replaces ``<< 6`` by ``<< a_shift`` (a right shift rounded half up when negative): its
output LSB is then ``2^(weight_exp + 6 − a_shift) / 64``, chosen by PTQ when the output
feeds other nodes (docs/node_kinds.md, "Graded outputs").

Plastic with Ψ ≡ 1 and no post trace: ``forward`` advances the pre-trace ``P`` and
``learn`` with the third factor ``L[t]`` applies ``W ← stllr_weight_step(W; L, −, P, x)``
(stream ``STREAM_W``; with the spec's per-input shifts ``pre_shift``, column ``i`` steps
``2^−s_i`` times the rate, :mod:`quantization.preconditioning`), then the consolidation
pull where its spec schedules one (:func:`quantization.consolidation.consolidate_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from quantization.backend import int_conv2d, int_linear
from quantization.consolidation import consolidate_weights
from quantization.float_nodes import FloatReadout
from quantization.formats import ACT_SHIFT, UV_LIMIT
from quantization.kernels import (
    STREAM_W,
    node_stream_key,
    readout_int_step,
    stllr_trace_step,
    stllr_weight_step,
    synapse_correlation,
)
from quantization.layer_quantization import (
    PTQConfig,
    quantize_bias,
    quantize_decay,
    quantize_weights,
)
from quantization.learning_formats import LearningSpec
from quantization.nodes.base import (
    NodeKind,
    Quantized,
    Step,
    SynapseWeights,
    Traces,
    UnsupportedNodeError,
    flat_batch,
    register_kind,
    zeros_like,
)
from quantization.nodes.spiking import dense_correlate


@dataclass(frozen=True)
class Readout:
    """Non-spiking integrator ``o = decay(o, dv) + (W·x << a_shift) + bias`` (the logits)."""

    name: str
    inputs: tuple[str, ...]
    weight: torch.Tensor  # [K, in] (dense) or [K, C, 1, 1] (1×1 conv)
    weight_exp: int
    dv: int  # 0 … 4096 (4096: no memory)
    bias_mant: torch.Tensor | None = None
    bias_exp: int = 0
    weight_bits: int = 8
    lambda_pre: float = 1.0  # decay of the pre-trace for on-device learning
    learning: LearningSpec | None = None
    #: shift of ``W·x`` into ``o`` (left if ≥ 0, right rounded half up if < 0)
    a_shift: int = ACT_SHIFT

    @property
    def weight_lsb(self) -> float:
        """Float value of one weight LSB, ``2^weight_exp`` (readouts are power-of-two)."""
        return 2.0**self.weight_exp

    @property
    def out_lsb(self) -> float:
        """Float value of one unit of ``o``: ``2^weight_exp / 2^a_shift``."""
        return 2.0 ** (self.weight_exp - self.a_shift)

    @property
    def conv(self) -> bool:
        """A 1×1 convolution over a feature map (``weight`` ``[K, C, 1, 1]``)."""
        return self.weight.dim() == 4

    @property
    def recurrent(self) -> bool:
        return False


class ReadoutState(NamedTuple):
    """``v`` the integrator (the logits, ``[B, K]``, or ``[B, K, H, W]``); plastic:
    ``traces`` (``P`` only) and this step's input ``x`` (for ``learn``)."""

    v: Any
    traces: Traces | None = None
    x: Any = None


def synaptic_sum(node: Readout, w, x, dtype=torch.float64, keep_float: bool = False):
    """``W·x`` (a dense readout after a conv reads C·H·W; ``w`` ``[K, C, 1, 1]``: the 1×1
    convolution)."""
    if w.ndim == 4:
        return int_conv2d(x, w, (1, 1), (0, 0), (1, 1), 1, dtype, keep_float)
    return int_linear(flat_batch(x), w, dtype, keep_float)


def forward(node: Readout, state: ReadoutState | None, inputs, host, step: int,
            index: int) -> Step:  # fmt: skip
    (x,) = inputs
    a = host.synapse(node, x, False)
    v = readout_int_step(None if state is None else state.v, a, node.dv, host.bias_of(node, a),
                         node.a_shift)  # fmt: skip
    host.count(node.name + "/membrane", v, UV_LIMIT - 1)
    spec = node.learning
    if spec is None:
        return Step(v, ReadoutState(v))
    p = zeros_like(x) if state is None or state.traces is None else state.traces.p
    p, _, _ = stllr_trace_step(p, None, None, x, None, None, spec, 0, step, index)
    host.count(node.name + "/trace_pre", p, (1 << spec.trace_bits) - 1)
    return Step(v, ReadoutState(v, Traces(p), x))


def learn(node: Readout, weights: SynapseWeights, state: ReadoutState, signal, host,
          step: int, index: int) -> SynapseWeights:  # fmt: skip
    """``W ← stllr_weight_step(W; g = L, no second term, P, x)``."""
    spec = node.learning
    key = node_stream_key(spec.seed, step, index, STREAM_W)
    correlate = dense_correlate
    if node.conv:
        w_shape = tuple(weights.w.shape)

        def correlate(a, x):
            return synapse_correlation("conv", a, x, w_shape)

    new, dw = stllr_weight_step(weights.w, signal, None, state.traces.p, state.x, spec, key,
                                correlate, spec.pre_shift)  # fmt: skip
    host.count_range(node.name + "/weight", weights.w + dw, spec.w_min, spec.w_max)
    # the pull toward the deployed weights, at the steps the spec schedules
    return consolidate_weights(node, weights._replace(w=new), step, index)


def out_shape(node: Readout, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    w = node.weight.detach().cpu().numpy().astype(np.int64)
    if node.conv:
        if len(shape) != 3 or tuple(w.shape[1:]) != (shape[0], 1, 1):
            raise UnsupportedNodeError(
                f"a 1×1-conv readout with weight {tuple(w.shape)} needs a [{w.shape[1]}, H, W] "
                f"input, got {shape}"
            )
        return synaptic_sum(node, w, np.zeros(shape, dtype=np.int64)).shape
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a readout needs a flat input, got {shape}")
    return int_linear(np.zeros(shape, dtype=np.int64), w).shape


def value_bound(node: Readout, in_bounds, in_shapes) -> int:
    """The 24-bit integrator's range."""
    return UV_LIMIT


def from_float(spec: FloatReadout, scales: dict, cfg: PTQConfig) -> Quantized:
    """PTQ of the float readout at ``s = 2^e``; its output (the integrator) has scale
    ``2^e / 64``, or ``spec.out_scale`` (a power of two) with ``a_shift = 6 + e − log2
    out_scale``."""
    ms, e, w_lsb, rep = quantize_weights(spec.name, [spec.weight * scales[spec.inputs[0]]], cfg)
    a_shift = ACT_SHIFT if spec.out_scale is None else output_shift(spec.name, e, spec.out_scale)
    out_lsb = 2.0 ** (e - a_shift)
    bias, bias_exp = quantize_bias(spec.name, spec.bias, out_lsb * 2**ACT_SHIFT, e)
    dv = quantize_decay(spec.gamma, allow_full=True)
    rep.dv, rep.bias_exp = dv, bias_exp
    node = Readout(spec.name, spec.inputs, ms[0], e, dv, bias, bias_exp, cfg.weight_bits,
                   spec.lambda_pre, a_shift=a_shift)  # fmt: skip
    return Quantized(node, rep, out_lsb)


def output_shift(name: str, e: int, out_scale: float) -> int:
    """``a_shift`` that gives ``o`` the LSB ``out_scale`` at weight exponent ``e``:
    ``2^(e − a_shift) = out_scale``; a :class:`ValueError` naming the node if
    ``out_scale`` is not a power of two."""
    k = math.log2(out_scale) if out_scale > 0 else float("nan")
    if not k == round(k):
        raise ValueError(f"readout {name}: out_scale {out_scale} is not a power of two")
    return e - int(k)


KIND = register_kind(NodeKind(Readout, forward, out_shape, value_bound, learn,
                              synaptic_sum, FloatReadout, from_float))  # fmt: skip
