"""Node kind ``AdaptiveLayer``: dense (+ recurrent) synapses into the integer AdLIF
(docs/neurons.md §1, §2; docs/fixed_point.md, "Adaptive layers"), plastic with S-TLLR:
the one home of its step and its weight update, used by the emulator and by Lava.

Float AdLIF (per neuron ``i``; α, ρ, a, b per neuron or per layer)::

    v[t] = α·v̂[t−1] + (1−α)·(c[t] − w[t−1])       w[t] = ρ·w[t−1] + a·h[t−1] + b·s[t−1]
    s[t] = H(v[t] − θ)     h[t] = v[t]     v̂[t] = reset(v[t])

In membrane units ``L = s_w / 64`` (``s_w`` the weight LSB) with ``κ = 1 − α`` folded into
the weights (as for the CuLIF, docs/neurons.md §1) and the adaptation held as
``ω = κ·w / L``, every quantity an integer (``decay(x, d) = sign(x)·((|x|·(4096 − d)) >> 12)``
as Lava's LIF; ``tz(x >> 24)`` rounds toward zero)::

    a[t] = W·x[t] (+ W_rec·s[t−1])                       W = round(κ·Ŵ·s_in / s_w) per row
    u[t] = wrap24(a[t] << 6)
    v[t] = clip24(decay(v̂[t−1], dv) + u[t] + bias − ω[t−1])
    s[t] = v[t] > vth << 6;  h[t] = v[t];  v̂[t] = 0 (hard) or v[t] − (vth << 6) (soft)
    ω[t] = clip24(decay(ω[t−1], dw) + tz(ka·h[t−1] >> 24) + kb·s[t−1])

with 12-bit ``dv = round((1 − α)·4096)``, ``dw = round((1 − ρ)·4096)`` (each per neuron or
one per layer), ``ka = round(κ·a·2^24)`` in 0 … 2^24 (24 fractional bits: κ·a is small,
κ·a·4096 would keep only about 5 bits of it) and ``kb = round(κ·b / L)`` (24 bit, membrane
units). The voltage reads this step's input (no synaptic delay): the node runs
on a host without delay only (the emulator with ``delay=0``, the toolkit's Lava process).

Current-based AdLIF (CuAdLIF, docs/neurons.md §2: ``v[t] = α·v̂[t−1] + (1−α)·(i[t−1] −
w[t−1])``, ``i[t] = β·i[t−1] + c[t]``): with a per-neuron 12-bit current decay ``du`` the
node keeps ``u = κ·i / L`` as the integer current-based LIF does (quantization/nodes/
spiking.py, Lava's ``LIF`` order: the current first, then the voltage reads it); the
synaptic sum and the bias enter the current one step late, the bias from ``t = 1`` on
(the float ``c[t]`` holds it and reaches ``v`` at ``t + 1``)::

    u[t] = wrap24(decay(u[t−1], du + 1) + (a[t−1] << 6) + bias·[t ≥ 1])      a[−1] = 0
    v[t] = clip24(decay(v̂[t−1], dv) + u[t] − ω[t−1])
    s, h, v̂, ω as above

with ``du = 4095 − round(β·4096)`` (the current keeps ``(4095 − du)/4096``;
:func:`~quantization.nodes.spiking.current_decay_du`) per neuron. The node keeps
``a[t]`` itself for the next step (``a_prev``). On device it learns with the CuLIF's
current traces (``stllr_current_trace_step``: ``P`` reads ``P^i[t−1]``, ``R`` reads
``R^i[t−1]``, decay λ_syn one per layer) and the AdLIF's per-neuron gains below
(docs/neurons.md §3b, "current-based"; docs/fixed_point.md, "Adaptive layers").

On-device S-TLLR (the float rule of docs/neurons.md §3b, "direct (AdLIF)"; integer form
in docs/fixed_point.md, "Adaptive layers"): with a ``LearningSpec`` (``gain_frac = 12``)
the node keeps the LIF's traces, Ψ read at the voltage before reset::

    Ψ[t]     = table[clip((h[t] − (vth << 6)) >> shift, −half, half) + half]
    P, Q, R  ← stllr_trace_step(P, Q, R; x[t], Ψ[t], s[t−1])     Q[t−1] kept for learn
    (CuAdLIF: P, P^i, Q, R, R^i ← stllr_current_trace_step(...; x[t], Ψ[t], s[t−1]))

and ``learn`` weights the two terms of each post neuron ``i`` by its 12-bit gains
(:func:`post_gains`: ``G_i ≈ 4096·(κ_i/κ_m)²``, ``H_i ≈ 4096·κ_i/κ_m`` with
``κ_i = dv_i/4096``, ``κ_m`` the layer's largest, whose ``κ_m²``, ``κ_m`` are in the spec's
α's, quantization.learning)::

    g = L ⊙ Ψ[t] ⊙ G;   h = ((L ⊙ Q[t−1]) << (psi_frac − q_frac)) ⊙ H, dropped when α_post = 0
    W     ← stllr_weight_step(W;     g, h, P[t], x[t])          stream STREAM_W
    W_rec ← stllr_weight_step(W_rec; g, h, R[t], s[t−1])        stream STREAM_WREC
    W, W_rec ← consolidate_weights(...)   at the steps the spec schedules
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from quantization.backend import round_float, saturate, xp_of
from quantization.float_nodes import FloatAdaptive
from quantization.formats import (
    ACT_SHIFT,
    DECAY_UNITY,
    DU_NONE,
    FORMATS,
    MEMBRANE,
    UV_LIMIT,
    VTH_SHIFT,
)
from quantization.kernels import (
    psi_lookup,
    stllr_current_trace_step,
    stllr_eligibility_terms,
    stllr_trace_step,
)
from quantization.layer_quantization import (
    PTQConfig,
    quantize_bias,
    quantize_decay,
    quantize_weights,
)
from quantization.learning_formats import LearningSpec, PsiTable, psi_table
from quantization.loihi import decay_toward_zero
from quantization.nodes.base import (
    NodeKind,
    Quantized,
    Step,
    SynapseWeights,
    Traces,
    UnsupportedNodeError,
    as_int64,
    flat_batch,
    register_kind,
    zeros_like,
)
from quantization.nodes.spiking import current_decay_du, dense_correlate, update_synapses

#: largest |kb| (24-bit signed membrane units; quantization.formats "adapt_kb")
KB_MAX = FORMATS["adapt_kb"].max_int
#: fractional bits of the voltage coupling ka (κ·a ≈ ka / 2^KA_SHIFT; formats "adapt_ka")
KA_SHIFT = FORMATS["adapt_ka"].bits - 1
#: fractional bits of the per-neuron post gains of on-device learning (:func:`post_gains`)
GAIN_FRAC = 12


@dataclass(frozen=True)
class AdaptiveLayer:
    """Integer AdLIF layer (module docstring). ``weight`` int64 ``[out, in]``; ``dv``, ``dw``
    (12 bit), ``ka`` (24 fractional bits), ``kb`` (24 bit) int64 ``[out]`` (a per-layer
    constant repeated); ``du`` (12 bit, ``[out]``) makes it the current-based AdLIF."""

    name: str
    inputs: tuple[str, ...]
    weight: torch.Tensor
    weight_exp: int
    dv: torch.Tensor
    dw: torch.Tensor
    ka: torch.Tensor
    kb: torch.Tensor
    vth: int
    reset: str  # "soft" | "hard"
    bias_mant: torch.Tensor | None = None
    bias_exp: int = 0
    weight_rec: torch.Tensor | None = None
    weight_bits: int = 8
    gain: float = 1.0
    #: on-device S-TLLR (module docstring): Ψ's table over the centred voltage, the float
    #: rule's factors (λ_post, λ_pre, α_post, α_pre) and the integer constants
    psi: PsiTable | None = None
    factors: tuple[float, float, float, float] = (0.5, 0.8, -0.2, 1.0)
    learning: LearningSpec | None = None
    #: current decay per neuron (Lava's du, 0 … 4095): ``None`` no current state (AdLIF)
    du: torch.Tensor | None = None
    #: current-based only: λ_syn of the float rule's current traces (one per layer;
    #: ``None``: the mean of the integer current's decays ``(4095 − du)/4096``)
    lambda_syn: float | None = None

    def __post_init__(self) -> None:
        n = int(self.weight.shape[0])
        for key, lo, hi in (("dv", 0, DECAY_UNITY - 1), ("dw", 0, DECAY_UNITY - 1),
                            ("ka", 0, 1 << KA_SHIFT), ("kb", -KB_MAX, KB_MAX),
                            ("du", 0, DU_NONE)):  # fmt: skip
            v = getattr(self, key)
            if v is None and key == "du":
                continue
            if tuple(v.shape) != (n,) or int(v.min()) < lo or int(v.max()) > hi:
                raise ValueError(
                    f"AdaptiveLayer {self.name}: {key} must be [{n}] integers in {lo} … {hi}"
                )
        spec = self.learning
        cur = self.current_based
        if spec is not None and (self.psi is None or (spec.pi_frac is not None) != cur
                                 or spec.gain_frac != GAIN_FRAC):  # fmt: skip
            raise ValueError(
                f"AdaptiveLayer {self.name}: a plastic AdLIF layer needs its Ψ table and a "
                f"LearningSpec {'with' if cur else 'without'} current traces (pi_frac) and "
                f"with gain_frac = {GAIN_FRAC}"
            )

    @property
    def kind(self) -> str:
        return "dense"

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def weight_lsb(self) -> float:
        return 2.0**self.weight_exp / self.gain

    @property
    def recurrent(self) -> bool:
        return self.weight_rec is not None

    @property
    def current_based(self) -> bool:
        """The CuAdLIF (a current state with decay ``du``)."""
        return self.du is not None

    @property
    def current_traces(self) -> bool:
        """Plastic and current-based: the traces include ``P^i`` (and ``R^i``)."""
        return self.learning is not None and self.current_based

    @property
    def current_trace_decay(self) -> float:
        """λ_syn of the current traces: ``lambda_syn``, else the mean current decay."""
        if self.lambda_syn is not None:
            return self.lambda_syn
        return float((DU_NONE - self.du.double()).mean()) / DECAY_UNITY

    @property
    def gains(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`post_gains` of ``dv`` (computed once)."""
        g = self.__dict__.get("_gains")
        if g is None:
            g = post_gains(self.dv)
            object.__setattr__(self, "_gains", g)
        return g


def post_gains(dv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron 12-bit gains ``(G, H)`` (int64 ``[out]``, 0 … 4096) of the two S-TLLR terms
    of an AdLIF layer, relative to its largest ``κ_m = dv_m/4096`` (``dv_m = max dv``)::

        G_i = ⌊(2·4096·dv_i² + dv_m²) / (2·dv_m²)⌋  ≈ 4096·(κ_i/κ_m)²   (causal term)
        H_i = ⌊(2·4096·dv_i + dv_m) / (2·dv_m)⌋     ≈ 4096·κ_i/κ_m      (non-causal term)

    (rounded to nearest, ties up, in exact integers; all zeros when every ``dv`` is 0)."""
    dv = dv.to(torch.int64)
    dm = max(int(dv.max()), 1)
    unity = 1 << GAIN_FRAC
    g = (2 * unity * dv * dv + dm * dm) // (2 * dm * dm)
    h = (2 * unity * dv + dm) // (2 * dm)
    return g, h


def kappa_max(node: AdaptiveLayer) -> float:
    """``κ_m = max dv / 4096``: the layer-wide part of κ, folded into the spec's α's."""
    return int(node.dv.max()) / DECAY_UNITY


class AdaptiveState(NamedTuple):
    """State after step ``t`` (``[B, out]`` or one sample's ``[out]``): ``u`` the synaptic
    current (``a << 6``, or the CuAdLIF's current), ``v`` the voltage after reset, ``w``
    the adaptation ``ω[t]``, ``h`` the voltage before reset, ``s`` the spikes (int64).
    Plastic nodes also keep ``traces`` (P, Q, R), this step's ``psi``, ``q_prev``
    (``Q[t−1]``), the input ``x`` and ``s_prev`` (``s[t−1]``, recurrent nodes only), as the
    spiking layer's state does. A current-based node keeps ``a_prev`` (this step's ``a``,
    read at the next step)."""

    u: Any
    v: Any
    w: Any
    h: Any
    s: Any
    traces: Traces | None = None
    psi: Any = None
    q_prev: Any = None
    x: Any = None
    s_prev: Any = None
    a_prev: Any = None


def synaptic_sum(node: AdaptiveLayer, w, x, dtype=torch.float64, keep_float: bool = False):
    """``W·x`` of a dense node (exact integers)."""
    from quantization.backend import int_linear

    return int_linear(flat_batch(x), w, dtype, keep_float)


def _wrap24(xp, u):
    u = xp.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
    return xp.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)


def adaptive_int_step(state: AdaptiveState | None, a, bias, node: AdaptiveLayer, consts):
    """One step of the module docstring from the synaptic sum ``a`` (int64); ``consts`` are
    ``(dv, dw, ka, kb, du)`` in the host's array type (``du`` ``None``: no current state).
    Returns ``(s, new state, u before wrap)``."""
    xp = xp_of(a)
    dv, dw, ka, kb, du = consts
    if state is None:
        u_prev = v_prev = w_prev = h_prev = s_prev = zeros_like(a)
    else:
        u_prev, v_prev, w_prev, h_prev, s_prev = state.u, state.v, state.w, state.h, state.s
    a_next = None
    if du is None:  # AdLIF: u is this step's input, the bias enters the voltage
        raw = a << ACT_SHIFT
    else:  # CuAdLIF: a[t−1] and the bias (from t = 1 on) enter the current
        a_next, prev = a, None if state is None else state.a_prev
        raw = decay_toward_zero(u_prev, du + 1)
        if prev is not None:
            raw = raw + (prev << ACT_SHIFT) + bias
        bias = 0
    u = _wrap24(xp, raw)
    v = decay_toward_zero(v_prev, dv) + u + bias - w_prev
    v = xp.clip(v, MEMBRANE.min_int, MEMBRANE.max_int)
    w = decay_toward_zero(w_prev, dw) + xp.mul_shift_toward_zero(h_prev, ka, KA_SHIFT)
    w = xp.clip(w + kb * s_prev, MEMBRANE.min_int, MEMBRANE.max_int)
    theta = node.vth << VTH_SHIFT
    s = as_int64(xp.positive(v - theta))
    if node.reset == "soft":
        v_hat = v - s * theta
    elif node.reset == "hard":
        v_hat = v - v * s
    else:
        raise ValueError(f"AdaptiveLayer {node.name}: reset must be 'hard' or 'soft'")
    return s, AdaptiveState(u, v_hat, w, v, s, a_prev=a_next), raw


def forward(node: AdaptiveLayer, state: AdaptiveState | None, inputs, host, step: int,
            index: int) -> Step:  # fmt: skip
    """One time step (module docstring); ``state`` ``None`` is the zero state."""
    if host.synaptic_delay() != 0:
        raise UnsupportedNodeError(
            f"node {node.name!r}: an AdaptiveLayer reads this step's input; run it on a host "
            "without synaptic delay (IntegerEmulator(delay=0), the toolkit's Lava process)"
        )
    (x,) = inputs
    a = as_int64(host.synapse(node, x, False))
    if node.recurrent and state is not None:
        a = a + as_int64(host.recurrent(node, state.s, False))
    bias = host.bias_of(node, a)
    consts = tuple(None if getattr(node, k) is None else _like(getattr(node, k), a)
                   for k in ("dv", "dw", "ka", "kb", "du"))  # fmt: skip
    s, new, raw = adaptive_int_step(state, a, as_int64(bias), node, consts)
    host.count(node.name + "/current", raw, UV_LIMIT)
    host.count(node.name + "/membrane", new.h, UV_LIMIT - 1)
    host.count(node.name + "/adaptation", new.w, UV_LIMIT - 1)
    spec = node.learning
    if spec is None:
        return Step(s, new)
    x = as_int64(x)
    theta = node.vth << VTH_SHIFT
    psi = psi_lookup(new.h - theta, host.psi_table(node), node.psi.shift, node.psi.half)
    s_prev = None
    if node.recurrent:
        s_prev = state.s if state is not None else zeros_like(s)
    tr = state.traces if state is not None and state.traces is not None else None
    if tr is None:
        r0 = None if s_prev is None else zeros_like(s)
        tr = Traces(zeros_like(x), zeros_like(s), r0)
        if node.current_traces:
            tr = tr._replace(pi=zeros_like(x), ri=r0)
    top = (1 << spec.trace_bits) - 1
    if node.current_traces:
        p, pi, q, r, ri = stllr_current_trace_step(
            tr.p, tr.pi, tr.q, tr.r, tr.ri, x, psi, s_prev, spec, node.psi.frac, step, index
        )
        host.count(node.name + "/trace_current", pi, top)
        traces = Traces(p, q, r, pi, ri)
    else:
        p, q, r = stllr_trace_step(tr.p, tr.q, tr.r, x, psi, s_prev, spec, node.psi.frac, step,
                                   index)  # fmt: skip
        traces = Traces(p, q, r)
    host.count(node.name + "/trace_pre", p, top)
    host.count(node.name + "/trace_post", q, top)
    return Step(s, new._replace(traces=traces, psi=psi, q_prev=tr.q, x=x,
                                s_prev=s_prev))  # fmt: skip


def learn(node: AdaptiveLayer, weights: SynapseWeights, state: AdaptiveState, signal, host,
          step: int, index: int) -> SynapseWeights:  # fmt: skip
    """The S-TLLR weight step of this step's third factor ``signal`` ``[B, out]`` (int),
    each post neuron's terms weighted by its gains (module docstring)."""
    spec = node.learning
    g, h = stllr_eligibility_terms(signal, state.psi, state.q_prev, node.psi.frac - spec.q_frac)
    gain_g, gain_h = (_like(t, g) for t in node.gains)
    g = g * gain_g
    h = h * gain_h if spec.a_post else None
    return update_synapses(node, weights, state, g, h, host, step, index, dense_correlate)


def _like(t: torch.Tensor, a):
    if isinstance(a, torch.Tensor):
        return t.to(a.device)
    return t.numpy().astype(np.int64)


def out_shape(node: AdaptiveLayer, in_shapes) -> tuple[int, ...]:
    (shape,) = in_shapes
    if len(shape) != 1 or shape[0] != node.weight.shape[1]:
        raise UnsupportedNodeError(
            f"an AdaptiveLayer needs a flat input of {node.weight.shape[1]}, got {shape}"
        )
    n = node.out_channels
    if node.weight_rec is not None and tuple(node.weight_rec.shape) != (n, n):
        raise UnsupportedNodeError(f"weight_rec {tuple(node.weight_rec.shape)} is not {(n, n)}")
    return (n,)


def value_bound(node: AdaptiveLayer, in_bounds, in_shapes) -> int:
    """Spikes: 0 or 1."""
    return 1


def from_float(spec: FloatAdaptive, scales: dict, cfg: PTQConfig) -> Quantized:
    """PTQ of a float AdLIF layer (module docstring): ``κ = 1 − α`` per neuron into the rows
    of ``W``, ``W_rec`` and the bias, one exponent for both, θ itself, 12-bit ``dv``, ``dw``,
    ``ka`` (24 fractional bits) and 24-bit ``kb`` at the membrane LSB ``s_w / 64``; Ψ's
    table at that LSB and the float rule's factors for on-device learning. A current
    decay β (the CuAdLIF) becomes ``du = 4095 − round(β·4096)`` per neuron."""
    n = int(spec.weight.shape[0])

    def per_neuron(v) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float64).reshape(-1).expand(n).clone()

    alpha, rho = per_neuron(spec.alpha), per_neuron(spec.rho)
    a, b = per_neuron(spec.a), per_neuron(spec.b)
    kappa = 1.0 - alpha
    tensors = [spec.weight.double() * scales[spec.inputs[0]] * kappa[:, None]]
    if spec.weight_rec is not None:
        tensors.append(spec.weight_rec.double() * kappa[:, None])
    ms, e, w_lsb, rep = quantize_weights(spec.name, tensors, cfg, spec.threshold)
    bias = None if spec.bias is None else spec.bias.double() * kappa
    bias_mant, bias_exp = quantize_bias(spec.name, bias, w_lsb, e)
    v_lsb = w_lsb / 2**ACT_SHIFT
    dv = torch.tensor([quantize_decay(float(x)) for x in alpha], dtype=torch.int64)
    dw = torch.tensor([quantize_decay(float(x)) for x in rho], dtype=torch.int64)
    if (a < 0).any() or (kappa * a > 1).any():
        raise UnsupportedNodeError(
            f"{spec.name}: the AdLIF coupling needs 0 ≤ (1 − α)·a ≤ 1 per neuron (ka is unsigned, "
            f"24 fractional bits); got a in [{float(a.min()):.4g}, {float(a.max()):.4g}] (the "
            "toolkit's training clamps a to [0, 1])"
        )
    ka = round_float(kappa * a * 2.0**KA_SHIFT, "nearest_even").to(torch.int64)
    kb = saturate(round_float(kappa * b / v_lsb, "nearest_even"), -KB_MAX, KB_MAX)
    du = None
    if spec.beta is not None:
        du = torch.tensor([current_decay_du(float(x)) for x in per_neuron(spec.beta)],
                          dtype=torch.int64)  # fmt: skip
    rep.dv, rep.bias_exp = int(dv[0]), bias_exp
    node = AdaptiveLayer(
        spec.name, spec.inputs, ms[0], e, dv, dw, ka, kb.to(torch.int64),
        rep.vth, spec.reset, bias_mant, bias_exp, ms[1] if len(ms) > 1 else None,
        cfg.weight_bits, gain=rep.gain, psi=psi_table(spec.psi, v_lsb),
        factors=tuple(spec.factors.as_list()), du=du, lambda_syn=spec.lambda_syn,
    )  # fmt: skip
    return Quantized(node, rep, 1.0)


KIND = register_kind(NodeKind(AdaptiveLayer, forward, out_shape, value_bound, learn,
                              synaptic_sum, FloatAdaptive, from_float))  # fmt: skip
