"""Node kind ``AdaptiveLayer``: dense (+ recurrent) synapses into the integer AdLIF
(docs/neurons.md §1, §2; docs/fixed_point.md, "Adaptive layers"). Inference only: the one
home of its step, used by the emulator and by Lava.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from quantization.backend import round_float, saturate, xp_of
from quantization.float_nodes import FloatAdaptive
from quantization.formats import ACT_SHIFT, DECAY_UNITY, FORMATS, MEMBRANE, UV_LIMIT, VTH_SHIFT
from quantization.layer_quantization import (
    PTQConfig,
    quantize_bias,
    quantize_decay,
    quantize_weights,
)
from quantization.loihi import decay_toward_zero
from quantization.nodes.base import (
    NodeKind,
    Quantized,
    Step,
    UnsupportedNodeError,
    as_int64,
    flat_batch,
    register_kind,
    zeros_like,
)

#: largest |kb| (24-bit signed membrane units; quantization.formats "adapt_kb")
KB_MAX = FORMATS["adapt_kb"].max_int
#: fractional bits of the voltage coupling ka (κ·a ≈ ka / 2^KA_SHIFT; formats "adapt_ka")
KA_SHIFT = FORMATS["adapt_ka"].bits - 1


@dataclass(frozen=True)
class AdaptiveLayer:
    """Integer AdLIF layer (module docstring). ``weight`` int64 ``[out, in]``; ``dv``, ``dw``
    (12 bit), ``ka`` (24 fractional bits), ``kb`` (24 bit) int64 ``[out]`` (a per-layer
    constant repeated)."""

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
    #: inference only: on-device S-TLLR of the adaptive neuron is not implemented
    learning: None = None

    def __post_init__(self) -> None:
        n = int(self.weight.shape[0])
        for key, lo, hi in (("dv", 0, DECAY_UNITY - 1), ("dw", 0, DECAY_UNITY - 1),
                            ("ka", 0, 1 << KA_SHIFT), ("kb", -KB_MAX, KB_MAX)):  # fmt: skip
            v = getattr(self, key)
            if tuple(v.shape) != (n,) or int(v.min()) < lo or int(v.max()) > hi:
                raise ValueError(
                    f"AdaptiveLayer {self.name}: {key} must be [{n}] integers in {lo} … {hi}"
                )
        if self.learning is not None:
            raise ValueError(f"AdaptiveLayer {self.name}: on-device learning is not supported")

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


class AdaptiveState(NamedTuple):
    """State after step ``t`` (``[B, out]`` or one sample's ``[out]``): ``u`` the synaptic
    current ``a << 6``, ``v`` the voltage after reset, ``w`` the adaptation ``ω[t]``, ``h``
    the voltage before reset, ``s`` the spikes (int64)."""

    u: Any
    v: Any
    w: Any
    h: Any
    s: Any


def synaptic_sum(node: AdaptiveLayer, w, x, dtype=torch.float64, keep_float: bool = False):
    """``W·x`` of a dense node (exact integers)."""
    from quantization.backend import int_linear

    return int_linear(flat_batch(x), w, dtype, keep_float)


def _wrap24(xp, u):
    u = xp.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
    return xp.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)


def adaptive_int_step(state: AdaptiveState | None, a, bias, node: AdaptiveLayer, consts):
    """One step of the module docstring from the synaptic sum ``a`` (int64); ``consts`` are
    ``(dv, dw, ka, kb)`` in the host's array type. Returns ``(s, new state, u before wrap)``."""
    xp = xp_of(a)
    dv, dw, ka, kb = consts
    raw = a << ACT_SHIFT
    u = _wrap24(xp, raw)
    if state is None:
        v_prev = w_prev = h_prev = s_prev = zeros_like(a)
    else:
        v_prev, w_prev, h_prev, s_prev = state.v, state.w, state.h, state.s
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
    return s, AdaptiveState(u, v_hat, w, v, s), raw


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
    consts = tuple(_like(getattr(node, k), a) for k in ("dv", "dw", "ka", "kb"))
    s, new, raw = adaptive_int_step(state, a, as_int64(bias), node, consts)
    host.count(node.name + "/current", raw, UV_LIMIT)
    host.count(node.name + "/membrane", new.h, UV_LIMIT - 1)
    host.count(node.name + "/adaptation", new.w, UV_LIMIT - 1)
    return Step(s, new)


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
    ``ka`` (24 fractional bits) and 24-bit ``kb`` at the membrane LSB ``s_w / 64``."""
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
    ka = round_float(kappa * a * 2.0**KA_SHIFT, "nearest_even").to(torch.int64)
    kb = saturate(round_float(kappa * b / v_lsb, "nearest_even"), -KB_MAX, KB_MAX)
    rep.dv, rep.bias_exp = int(dv[0]), bias_exp
    node = AdaptiveLayer(
        spec.name, spec.inputs, ms[0], e, dv, dw, ka.clamp(0, 1 << KA_SHIFT), kb.to(torch.int64),
        rep.vth, spec.reset, bias_mant, bias_exp, ms[1] if len(ms) > 1 else None,
        cfg.weight_bits, gain=rep.gain,
    )  # fmt: skip
    return Quantized(node, rep, 1.0)


KIND = register_kind(NodeKind(AdaptiveLayer, forward, out_shape, value_bound, None,
                              synaptic_sum, FloatAdaptive, from_float))  # fmt: skip
