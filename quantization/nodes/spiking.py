"""Node kind ``SpikingLayer``: dense, conv or transposed-conv synapses (+ recurrent) into
the integer LIF, plastic with S-TLLR. The one home of its step, used by the emulator and by
Lava.

Per time step ``t``, all quantities integers (docs/fixed_point.md, docs/rule.md)::

    a[t]          = W·x[t]  (+ W_rec·s[t−1] if recurrent)      W·x: dense, conv or convT
    s, v_c, u, v  = LIF(a[t])                (quantization.loihi.lif_int_step)

``du = 4095`` (the default) is the toolkit's LIF: the current ``u`` has no memory. Any other
``du`` is the current-based LIF (CuLIF, docs/neurons.md §1), Lava's ``LIF`` behind a one-step
synaptic delay::

    u[t] = wrap24(decay(u[t−1], du + 1) + (a[t−1] << 6) + bias·[t ≥ 1])
    v[t] = decay(v[t−1], dv) + u[t]

Its bias enters the current with the synaptic input (as the float CuLIF's ``c`` does, so
not at the first step), and its voltage reads the
previous step's synaptic sum: the node keeps ``a[t−1]`` itself when its host has no
synaptic delay (the emulator with ``delay=0``, the toolkit's Lava processes), and takes the
host's delay where there is one (``delay=1``, Lava's ``Dense``). On-device S-TLLR of such
a layer adds the current traces ``P^i``, ``R^i`` (``stllr_current_trace_step``;
docs/fixed_point.md, "Current-based layers"); its post gain ``κ = 1 − α`` is in the
spec's α's (quantization.learning).

and, if the node carries a ``LearningSpec``, after the neuron::

    Ψ[t]     = table[clip(v_c >> shift, −half, half) + half]
    P, Q, R  ← stllr_trace_step(P, Q, R; x[t], Ψ[t], s[t−1])     Q[t−1] kept for learn

``learn`` with the third factor ``L[t]`` (after ``forward`` of the same step)::

    g = L ⊙ Ψ[t];   h = (L ⊙ Q[t−1]) << (psi_frac − q_frac), dropped when α_post = 0
    W     ← stllr_weight_step(W;     g, h, P[t], x[t])          stream STREAM_W
    W_rec ← stllr_weight_step(W_rec; g, h, R[t], s[t−1])        stream STREAM_WREC
    W, W_rec ← consolidate_weights(...)   at the steps the spec schedules (consolidation.py)

A dense node with synaptic delays (``delay`` ``[out, in]``, 0 … 62 steps: Lava's
``DelayDense``, netx's ``delay``) feeds ``a[t] = Σ_j W_ij·x_j[t − δ − d_ij]`` through its
delay line instead (quantization/synaptic_delay.py; ``δ`` the host's synaptic delay).

Naming: ``u`` is the synaptic current and ``v`` the membrane voltage (Lava's names,
docs/node_kinds.md, "Naming").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from quantization.backend import int_conv2d, int_conv_transpose2d, int_linear, round_float
from quantization.consolidation import consolidate_weights
from quantization.float_nodes import FloatSpiking
from quantization.formats import ACT_SHIFT, DECAY_UNITY, DU_NONE, UV_LIMIT
from quantization.kernels import (
    STREAM_W,
    STREAM_WREC,
    node_stream_key,
    psi_lookup,
    stllr_current_trace_step,
    stllr_eligibility_terms,
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
from quantization.learning_formats import LearningSpec, PsiTable, psi_table
from quantization.loihi import LIFFixedParams, LIFFixedState, decay_toward_zero, lif_int_step
from quantization.nodes.base import (
    NodeKind,
    Quantized,
    Step,
    SynapseWeights,
    Traces,
    UnsupportedNodeError,
    as_dtype_of,
    as_int64,
    flat_batch,
    register_kind,
    zeros_like,
)
from quantization.synaptic_delay import DelayPlan, check_delays, delay_plan, delay_step


@dataclass(frozen=True)
class SpikingLayer:
    """Integer spiking layer. ``weight`` int64 ``[out, in]``, ``[C_out, C_in/g, kH, kW]``
    (conv) or ``[C_in, C_out/g, kH, kW]`` (deconv: transposed convolution)."""

    name: str
    inputs: tuple[str, ...]
    kind: str  # "dense" | "conv" | "deconv"
    weight: torch.Tensor
    weight_exp: int
    dv: int  # 12-bit voltage decay, round((1 − γ)·4096)
    vth: int  # threshold mantissa in weight units (compared with v at << 6)
    reset: str  # "soft" | "hard"
    bias_mant: torch.Tensor | None = None  # [out]
    bias_exp: int = 0
    weight_rec: torch.Tensor | None = None  # [out, out], same exponent as weight
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_bits: int = 8
    psi: PsiTable | None = None
    factors: tuple[float, float, float, float] = (0.5, 0.8, -0.2, 1.0)  # λ_post λ_pre α_post α_pre
    learning: LearningSpec | None = None
    #: ``k = 2^weight_exp / s`` for a layer quantized at a non-power-of-two scale ``s``
    #: (PTQ's exact-threshold scale): its integers are those of the spike-equivalent float
    #: layer with weights, bias and threshold multiplied by ``k``; 1 for a power of two.
    gain: float = 1.0
    #: deconv only: extra rows/columns on one side of the output (PyTorch's output_padding)
    output_padding: tuple[int, int] = (0, 0)
    #: 12-bit current decay (Lava's du): 4095 = no current memory (the toolkit's LIF),
    #: smaller = a current-based LIF (CuLIF)
    du: int = DU_NONE
    #: dense only: per-synapse delays ``[out, in]`` in 0 … 62 steps (Lava's DelayDense,
    #: netx's ``delay``; quantization/synaptic_delay.py), ``None``: no delays
    delay: torch.Tensor | None = None
    #: current-based only: λ_syn of the float rule's current trace (docs/neurons.md §3b);
    #: ``None``: the integer current's own decay ``(4095 − du)/4096``
    lambda_syn: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.du <= DU_NONE:
            raise ValueError(
                f"SpikingLayer {self.name}: du must be in 0 … {DU_NONE}, got {self.du}"
            )
        if self.learning is not None and (self.du != DU_NONE) != self.current_traces:
            raise ValueError(
                f"SpikingLayer {self.name}: a layer with du = {self.du} needs a LearningSpec "
                f"{'with' if self.du != DU_NONE else 'without'} current traces (pi_frac)"
            )
        if self.delay is not None:
            if self.kind != "dense" or self.learning is not None:
                raise ValueError(
                    f"SpikingLayer {self.name}: synaptic delays need a dense layer without "
                    f"on-device learning (kind {self.kind!r}, learning "
                    f"{'on' if self.learning else 'off'})"
                )
            check_delays(self.delay, *self.weight.shape, f"SpikingLayer {self.name}")

    @property
    def delay_plan(self) -> DelayPlan | None:
        """How :attr:`delay` is applied (computed once; ``None`` without delays)."""
        if self.delay is None:
            return None
        plan = self.__dict__.get("_delay_plan")
        if plan is None:
            plan = delay_plan(self.delay.detach().cpu().numpy())
            object.__setattr__(self, "_delay_plan", plan)
        return plan

    @property
    def current_traces(self) -> bool:
        """Plastic and current-based: the traces include ``P^i`` (and ``R^i``)."""
        return self.learning is not None and self.learning.pi_frac is not None

    @property
    def current_trace_decay(self) -> float:
        """λ_syn of the current traces: ``lambda_syn``, else the current's own decay."""
        if self.lambda_syn is not None:
            return self.lambda_syn
        return (DU_NONE - self.du) / DECAY_UNITY

    @property
    def out_channels(self) -> int:
        if self.kind == "deconv":
            return int(self.weight.shape[1]) * self.groups
        return int(self.weight.shape[0])

    @property
    def weight_lsb(self) -> float:
        """Float value of one weight LSB in the source model's units, ``2^weight_exp / gain``
        (the membrane LSB is ``weight_lsb / 64``, the threshold ``vth · weight_lsb``)."""
        return 2.0**self.weight_exp / self.gain

    @property
    def recurrent(self) -> bool:
        return self.weight_rec is not None


class SpikingState(NamedTuple):
    """State of one spiking node after a step (batched ``[B, *out]`` or one sample).

    ``u`` current and ``v`` voltage (after reset) of the LIF; ``s`` this step's spikes
    (int64, the next step's recurrent input). Plastic nodes also keep ``traces``, this
    step's ``psi`` and what ``learn`` needs of this step: ``q_prev`` (``Q[t−1]``), ``x``
    (the input) and ``s_prev`` (the recurrent input ``s[t−1]``, recurrent nodes only).
    """

    u: Any
    v: Any
    s: Any
    traces: Traces | None = None
    psi: Any = None
    q_prev: Any = None
    x: Any = None
    s_prev: Any = None
    #: current-based nodes on a host without synaptic delay: this step's ``a`` (read next step)
    a_prev: Any = None
    #: nodes with synaptic delays: the delay line ``[*batch, out, K]`` (synaptic_delay.py)
    line: Any = None


def synaptic_sum(node: SpikingLayer, w, x, dtype=torch.float64, keep_float: bool = False):
    """``W·x``: the convolution or dense product of the node's geometry (exact integers,
    products in ``dtype``; see :func:`quantization.backend.int_linear`)."""
    if node.kind == "conv":
        conv = (node.stride, node.padding, node.dilation, node.groups)
        return int_conv2d(x, w, *conv, dtype, keep_float)
    if node.kind == "deconv":
        return int_conv_transpose2d(x, w, node.stride, node.padding, node.output_padding,
                                    node.dilation, node.groups, dtype, keep_float)  # fmt: skip
    return int_linear(flat_batch(x), w, dtype, keep_float)


def forward(node: SpikingLayer, state: SpikingState | None, inputs, host, step: int,
            index: int) -> Step:  # fmt: skip
    """One time step (module docstring); ``state`` ``None`` is the zero state."""
    (x,) = inputs
    fast = host.fast(node)  # float32 tensors holding exact integers (emulator)
    a = host.synapse(node, x, fast)  # W·x[t], or W·x[t−1] on a host with a delay
    line = None
    if node.delay is not None:  # Σ_j W_ij·x_j[t − δ − d_ij] through the node's delay line
        a, line = _delayed(node, None if state is None else state.line, a, x, host)
    s_last = None if state is None else state.s
    a_rec = None  # W_rec·s[t−1]
    if node.recurrent and s_last is not None:
        a_rec = host.recurrent(node, s_last, fast)
    if state is None:
        lif = LIFFixedState(zeros_like(a), zeros_like(a))
    else:  # the host may have changed path between calls (exact either way)
        lif = LIFFixedState(as_dtype_of(state.u, a), as_dtype_of(state.v, a))
    a_bound = host.a_bound(node)
    bias = host.bias_of(node, a)
    a_next = None
    if node.du != DU_NONE:  # current-based: a[t−1] and the bias into the current
        # the node delays what its host does not: everything on a host without delay, the
        # recurrent sum on a host whose delay holds W·x back (docs/node_kinds.md)
        prev = None if state is None else state.a_prev
        if host.synaptic_delay() == 0:
            first = prev is None  # (a Lava process keeps a_prev itself, reset per sample)
            a_next = a if a_rec is None else a + a_rec  # all of a[t] waits one step
            a = zeros_like(a) if prev is None else prev
        else:
            first = state is None
            a_next = a_rec  # W·x arrives delayed already; W_rec·s[t−1] waits here
            if prev is not None:
                a = a + prev
        if first:  # the bias is part of c[t], which reaches v one step later
            bias = 0
        host.count(node.name + "/current", decay_toward_zero(lif.u, node.du + 1)
                   + (a << ACT_SHIFT) + bias, UV_LIMIT)  # fmt: skip
        p = LIFFixedParams(node.du, node.dv, node.vth, 0, 0, node.reset, bias)
    else:
        if a_rec is not None:
            a = a + a_rec
        if a_bound is not None and (a_bound << ACT_SHIFT) < UV_LIMIT:
            host.count(node.name + "/current", a, None)  # a static bound: it cannot wrap
        else:
            host.count(node.name + "/current", a << ACT_SHIFT, UV_LIMIT)
        p = LIFFixedParams(DU_NONE, node.dv, node.vth, bias, 0, node.reset)
    s, v_c, lif = lif_int_step(lif, a, p, a_bound)
    host.count(node.name + "/membrane", lif.v, UV_LIMIT - 1)
    out = as_int64(s)
    exact = s if fast else None
    spec = node.learning
    if spec is None:
        return Step(out, SpikingState(lif.u, lif.v, out, a_prev=a_next, line=line), exact)
    psi = psi_lookup(v_c, host.psi_table(node), node.psi.shift, node.psi.half)
    s_prev = None
    if node.recurrent:
        s_prev = s_last if s_last is not None else zeros_like(out)
    tr = state.traces if state is not None and state.traces is not None else None
    if tr is None:
        tr = _zero_traces(node, x, out, s_prev)
    top = (1 << spec.trace_bits) - 1
    if node.current_traces:
        p_new, pi_new, q_new, r_new, ri_new = stllr_current_trace_step(
            tr.p, tr.pi, tr.q, tr.r, tr.ri, x, psi, s_prev, spec, node.psi.frac, step, index
        )
        host.count(node.name + "/trace_current", pi_new, top)
        traces = Traces(p_new, q_new, r_new, pi_new, ri_new)
    else:
        p_new, q_new, r_new = stllr_trace_step(tr.p, tr.q, tr.r, x, psi, s_prev, spec,
                                               node.psi.frac, step, index)  # fmt: skip
        traces = Traces(p_new, q_new, r_new)
    host.count(node.name + "/trace_pre", p_new, top)
    host.count(node.name + "/trace_post", q_new, top)
    new = SpikingState(lif.u, lif.v, out, traces, psi, tr.q, x, s_prev, a_prev=a_next)
    return Step(out, new, exact)


def _delayed(node: SpikingLayer, line, a, x, host):
    """``(a[t], new line)`` of a node with synaptic delays (quantization/synaptic_delay.py)."""
    w = node.weight if isinstance(a, torch.Tensor) else node.weight.detach().cpu().numpy()
    if isinstance(a, torch.Tensor):
        w = w.to(a.device)

    def masked_sum(wk, xk):
        total = synaptic_sum(node, wk, xk)
        return total.to(a.dtype) if isinstance(total, torch.Tensor) else total.astype(a.dtype)

    return delay_step(node.delay_plan, line, a, x, w, host.synaptic_delay(), masked_sum)


def _zero_traces(node: SpikingLayer, x, out, s_prev) -> Traces:
    p = zeros_like(x, dtype=_int64(x))
    r = None if s_prev is None else zeros_like(s_prev)
    if not node.current_traces:
        return Traces(p, zeros_like(out), r)
    return Traces(p, zeros_like(out), r, zeros_like(p), None if r is None else zeros_like(r))


def _int64(x):
    return torch.int64 if isinstance(x, torch.Tensor) else np.int64


def learn(node: SpikingLayer, weights: SynapseWeights, state: SpikingState, signal, host,
          step: int, index: int) -> SynapseWeights:  # fmt: skip
    """The S-TLLR weight step of this step's third factor ``signal`` ``[B, *out]`` (int)."""
    spec = node.learning
    g, h = stllr_eligibility_terms(signal, state.psi, state.q_prev, node.psi.frac - spec.q_frac)
    h = h if spec.a_post else None
    conv = (node.stride, node.padding, node.dilation, node.groups)
    w_shape = tuple(weights.w.shape)

    def correlate(a, x):
        return synapse_correlation(node.kind, a, x, w_shape, *conv)

    return update_synapses(node, weights, state, g, h, host, step, index, correlate)


def dense_correlate(a, x):
    """:func:`~quantization.kernels.synapse_correlation` of a dense ``[out, in]`` weight."""
    return synapse_correlation("dense", a, x, (a.shape[-1], x.shape[-1]))


def update_synapses(node, weights: SynapseWeights, state, g, h, host, step: int, index: int,
                    correlate) -> SynapseWeights:  # fmt: skip
    """One S-TLLR step of a dense/conv layer's ``W`` (pre-trace P, input x, ``correlate``)
    and, when recurrent, of ``W_rec`` (trace R, input s[t−1], dense), each from its own
    random stream (:func:`~quantization.kernels.stllr_weight_step`, saturated updates
    counted on the host), then the pull toward the deployed weights at the steps the spec
    schedules. ``g``, ``h``: the post-synaptic eligibility terms ``[B, *out]``; ``state``
    has ``traces``, ``x`` and ``s_prev`` (the spiking and adaptive kinds' states)."""
    spec = node.learning

    def counted(label, w, pre_trace, pre_input, stream, corr):
        key = node_stream_key(spec.seed, step, index, stream)
        new, dw = stllr_weight_step(w, g, h, pre_trace, pre_input, spec, key, corr)
        host.count_range(f"{node.name}/{label}", w + dw, spec.w_min, spec.w_max)
        return new

    w = counted("weight", weights.w, state.traces.p, state.x, STREAM_W, correlate)
    w_rec = weights.w_rec
    if node.recurrent:
        w_rec = counted("weight_rec", w_rec, state.traces.r, state.s_prev, STREAM_WREC,
                        dense_correlate)  # fmt: skip
    return consolidate_weights(node, weights._replace(w=w, w_rec=w_rec), step, index)


def out_shape(node: SpikingLayer, in_shapes) -> tuple[int, ...]:
    """Per-sample output shape from the input shape (evaluated on zeros: no formula retyped)."""
    (shape,) = in_shapes
    w = node.weight.detach().cpu().numpy().astype(np.int64)
    zeros = np.zeros(shape, dtype=np.int64)
    if node.kind in ("conv", "deconv"):
        if len(shape) != 3:
            raise UnsupportedNodeError(f"a {node.kind} layer needs a [C, H, W] input, got {shape}")
        return synaptic_sum(node, w, zeros).shape
    if node.kind != "dense":
        raise UnsupportedNodeError(f"kind {node.kind!r} is not supported (dense, conv, deconv)")
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a dense layer needs a flat input, got {shape}")
    out = int_linear(zeros, w).shape
    if node.weight_rec is not None and tuple(node.weight_rec.shape) != out * 2:
        raise UnsupportedNodeError(f"weight_rec {tuple(node.weight_rec.shape)} is not {out * 2}")
    return out


def value_bound(node: SpikingLayer, in_bounds, in_shapes) -> int:
    """Spikes: 0 or 1."""
    return 1


def from_float(spec: FloatSpiking, scales: dict, cfg: PTQConfig) -> Quantized:
    """PTQ of a float spiking layer (quantization.ptq): the input's scale folded into ``W``,
    one exponent for ``W`` and ``W_rec``, threshold, bias, 12-bit decay and Ψ's table at
    the membrane LSB ``s / 64``. Its output (spikes) has scale 1.

    A current-based spec (``current_decay`` β) becomes ``u = (1−α)·i`` in membrane units
    (docs/neurons.md §1): ``W``, ``W_rec`` and the bias times ``1−α``, ``dv`` from α and
    ``du = 4095 − round(β·4096)`` (Lava's current keeps ``(4095 − du)/4096``), θ itself."""
    alpha = spec.lif.gamma
    k = 1.0 if spec.current_decay is None else 1.0 - alpha
    theta = spec.lif.theta_eff if spec.current_decay is None else spec.lif.threshold
    tensors = [spec.weight * scales[spec.inputs[0]] * k]
    if spec.weight_rec is not None:
        tensors.append(spec.weight_rec * k)
    ms, e, w_lsb, rep = quantize_weights(spec.name, tensors, cfg, theta)
    bias, bias_exp = quantize_bias(spec.name, None if spec.bias is None else spec.bias * k,
                                   w_lsb, e)  # fmt: skip
    dv = quantize_decay(alpha, allow_full=False)
    du = DU_NONE if spec.current_decay is None else current_decay_du(spec.current_decay)
    rep.dv, rep.bias_exp = dv, bias_exp
    # a float deconv holds stllr's [C_out, C_in, k, k]; the node PyTorch's [C_in, C_out, k, k]
    w = ms[0].transpose(0, 1).contiguous() if spec.kind == "deconv" else ms[0]
    node = SpikingLayer(
        spec.name, spec.inputs, spec.kind, w, e, dv, rep.vth, spec.lif.reset, bias, bias_exp,
        ms[1] if len(ms) > 1 else None, spec.stride, spec.padding, spec.dilation, spec.groups,
        cfg.weight_bits, psi_table(spec.psi, w_lsb / 2**ACT_SHIFT),
        tuple(spec.factors.as_list()), gain=rep.gain, output_padding=spec.output_padding, du=du,
        lambda_syn=None if spec.current_decay is None else spec.lambda_syn,
    )  # fmt: skip
    return Quantized(node, rep, 1.0)


def current_decay_du(beta: float) -> int:
    """Lava's ``du`` for a current that keeps ``β`` of itself per step: the integer current
    keeps ``(4095 − du)/4096`` (docs/lava.md), so ``du = 4095 − round(β·4096)`` in 0 … 4095."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"current decay β must be in [0, 1), got {beta}")
    return max(0, min(DU_NONE, DU_NONE - int(round_float(beta * 4096, "nearest_even"))))


KIND = register_kind(NodeKind(SpikingLayer, forward, out_shape, value_bound, learn,
                              synaptic_sum, FloatSpiking, from_float))  # fmt: skip
