"""Node kind ``Readout``: dense synapses into a non-spiking leaky integrator (the logits).

Per time step ``t`` (integers; docs/fixed_point.md)::

    o[t] = clip24(decay(o[t−1], dv) + (W·x[t] << 6) + bias)      (dv = 4096: no memory)

Plastic with Ψ ≡ 1 and no post trace: ``forward`` advances the pre-trace ``P`` and
``learn`` with the third factor ``L[t]`` applies ``W ← stllr_weight_step(W; L, −, P, x)``
(stream ``STREAM_W``), then the consolidation pull where its spec schedules one
(:func:`quantization.consolidation.consolidate_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from quantization.backend import int_linear
from quantization.consolidation import consolidate_weights
from quantization.float_nodes import FloatReadout
from quantization.formats import ACT_SHIFT, UV_LIMIT
from quantization.kernels import (
    STREAM_W,
    node_stream_key,
    readout_int_step,
    stllr_trace_step,
    stllr_weight_step,
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
    """Non-spiking integrator ``o = decay(o, dv) + (W·x << 6) + bias`` (the logits)."""

    name: str
    inputs: tuple[str, ...]
    weight: torch.Tensor  # [K, in]
    weight_exp: int
    dv: int  # 0 … 4096 (4096: no memory)
    bias_mant: torch.Tensor | None = None
    bias_exp: int = 0
    weight_bits: int = 8
    lambda_pre: float = 1.0  # decay of the pre-trace for on-device learning
    learning: LearningSpec | None = None

    @property
    def weight_lsb(self) -> float:
        """Float value of one weight LSB, ``2^weight_exp`` (readouts are power-of-two)."""
        return 2.0**self.weight_exp

    @property
    def recurrent(self) -> bool:
        return False


class ReadoutState(NamedTuple):
    """``v`` the integrator (the logits, ``[B, K]``); plastic: ``traces`` (``P`` only) and
    this step's input ``x`` (for ``learn``)."""

    v: Any
    traces: Traces | None = None
    x: Any = None


def synaptic_sum(node: Readout, w, x, dtype=torch.float64, keep_float: bool = False):
    """``W·x`` (a readout after a conv reads C·H·W)."""
    return int_linear(flat_batch(x), w, dtype, keep_float)


def forward(node: Readout, state: ReadoutState | None, inputs, host, step: int,
            index: int) -> Step:  # fmt: skip
    (x,) = inputs
    a = host.synapse(node, x, False)
    v = readout_int_step(None if state is None else state.v, a, node.dv, host.bias_of(node, a))
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
    new, dw = stllr_weight_step(weights.w, signal, None, state.traces.p, state.x, spec, key,
                                dense_correlate)  # fmt: skip
    host.count_range(node.name + "/weight", weights.w + dw, spec.w_min, spec.w_max)
    # the pull toward the deployed weights, at the steps the spec schedules
    return consolidate_weights(node, weights._replace(w=new), step, index)


def out_shape(node: Readout, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a readout needs a flat input, got {shape}")
    w = node.weight.detach().cpu().numpy().astype(np.int64)
    return int_linear(np.zeros(shape, dtype=np.int64), w).shape


def value_bound(node: Readout, in_bounds, in_shapes) -> int:
    """The 24-bit integrator's range."""
    return UV_LIMIT


def from_float(spec: FloatReadout, scales: dict, cfg: PTQConfig) -> Quantized:
    """PTQ of the float readout at ``s = 2^e``; its output (the integrator) has scale
    ``2^e / 64``."""
    ms, e, w_lsb, rep = quantize_weights(spec.name, [spec.weight * scales[spec.inputs[0]]], cfg)
    bias, bias_exp = quantize_bias(spec.name, spec.bias, w_lsb, e)
    dv = quantize_decay(spec.gamma, allow_full=True)
    rep.dv, rep.bias_exp = dv, bias_exp
    node = Readout(spec.name, spec.inputs, ms[0], e, dv, bias, bias_exp, cfg.weight_bits,
                   spec.lambda_pre)  # fmt: skip
    return Quantized(node, rep, 2.0**e / 2**ACT_SHIFT)


KIND = register_kind(NodeKind(Readout, forward, out_shape, value_bound, learn,
                              synaptic_sum, FloatReadout, from_float))  # fmt: skip
