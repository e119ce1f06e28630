"""Loihi-style fixed-point kernels of Lava's built-in ``Dense`` and ``LIF`` (``fixed_pt``).

Written once against :mod:`quantization.backend`, so the same code runs on numpy
arrays (inside Lava process models) and on batched torch tensors (the emulator).
Integer semantics, as lava-nc 0.10's ``PyLifModelBitAcc`` and ``PyDenseModelBitAcc``
(docs/lava.md §4), all quantities integers:

Dense, per step (its output reaches the neuron one step later)::

    a[t] = (Σ_j w_ij · s_j[t]) << weight_exp          (>> −weight_exp, a floor, if < 0)

with ``w`` clipped to 8 bits and its ``8 − num_weight_bits (+1 if mixed sign)`` low bits
truncated (arithmetic shift, i.e. floor) once, before the first step.

LIF, per step, decays by ``decay(x, d) = sign(x·(4096 − d)) · (|x·(4096 − d)| >> 12)``
(rounds toward zero)::

    u[t] = wrap24(decay(u[t−1], du + 1) + (a[t] << 6))    wrap past ±2^23
    v[t] = clip(decay(v[t−1], dv) + u[t] + (bias_mant << bias_exp), ±(2^23 − 1))
    s[t] = v[t] > (vth << 6);   v[t] = 0 where s[t]        (hard reset, Lava's LIF)
                                v[t] −= vth << 6 where s[t] (soft reset, the toolkit's option)

The toolkit's spiking layers use exactly this neuron with ``du = 4095`` (no current
state: ``u[t] = wrap24(a[t] << 6)``), so a hard-reset network maps onto Lava's
built-in ``LIF`` unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

from quantization.backend import round_shift, xp_of
from quantization.formats import (
    ACT_SHIFT,
    DECAY_SHIFT,
    DECAY_UNITY,
    DU_NONE,
    MEMBRANE,
    UV_LIMIT,
    VTH_SHIFT,
)


class LIFFixedState(NamedTuple):
    u: object  # current, int
    v: object  # voltage, int


class LIFFixedParams(NamedTuple):
    """Integer LIF parameters (Lava's ``LIF`` arguments)."""

    du: int  # 12-bit current decay, 0 … 4095 (4095 = full decay)
    dv: int  # 12-bit voltage decay, 0 … 4095
    vth: int  # 17-bit threshold mantissa (compared with v at << 6)
    bias_mant: object = 0  # 13-bit bias mantissa (int or per-neuron array)
    bias_exp: int = 0  # bias exponent (left shift)
    reset: str = "hard"  # "hard" (v = 0, Lava's LIF) or "soft" (v −= vth << 6)
    #: added to the current u before its wrap (membrane units): the bias of a current-based
    #: neuron, whose float bias enters the current (docs/neurons.md §1); 0 for Lava's LIF
    current_bias: object = 0


def decay_toward_zero(x, decay: int):
    """``sign(x·(4096 − decay)) · (|x·(4096 − decay)| >> 12)`` in 64-bit integers.

    Float torch tensors holding integers (|x| < 2^24 for float32) give the same values
    in their own dtype (:func:`quantization.backend.xp_of`).
    """
    return xp_of(x).mul_shift_toward_zero(x, DECAY_UNITY - decay, DECAY_SHIFT)


def lif_fixed_step(state: LIFFixedState, a_in, p: LIFFixedParams):
    """One step of Lava's bit-accurate LIF; returns ``(spikes (bool), new state)``."""
    s, _, new = lif_int_step(state, a_in, p)
    return s, new


def lif_int_step(state: LIFFixedState, a_in, p: LIFFixedParams, a_bound: int | None = None):
    """One integer LIF step; returns ``(s, v_centred, new state)``.

    ``v_centred = v[t] − (vth << 6)`` before the reset is the integer argument of Ψ.
    ``s`` is boolean for integer arrays. ``a_bound`` (optional) is a known bound on
    ``|a_in|``: with ``du = 4095`` and ``a_bound << 6 < 2^23`` the wrap cannot act and is
    skipped.

    Float torch tensors holding integers (the emulator's fast path) give the same values
    in their own dtype, ``s`` as 0/1, when the caller guarantees exactness: float32
    with ``|a_in << 6| < 2^23`` (so no wrap), ``|bias| < 2^24``, ``vth << 6 < 2^23``,
    ``du = 4095``, ``0 ≤ dv ≤ 4096``, and ``|v[t−1]| < 2^23`` (as every state of this step is).
    Then ``decay(v) + u`` stays below 2^24 and is exact; adding the bias rounds only
    sums of magnitude ≥ 2^24, which the clip maps to ``±(2^23 − 1)`` either way.
    """
    xp = xp_of(a_in)
    u = xp.shl(a_in, ACT_SHIFT)
    if p.du != DU_NONE:  # du = 4095 decays u fully: decay(u, 4096) = 0
        u = decay_toward_zero(state.u, p.du + 1) + u + p.current_bias
    if p.du != DU_NONE or a_bound is None or (a_bound << ACT_SHIFT) >= UV_LIMIT:
        u = xp.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
        u = xp.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)
    if p.bias_exp == 0:
        bias = p.bias_mant
    else:
        bias = (p.bias_mant << p.bias_exp if p.bias_exp > 0
                else round_shift(p.bias_mant, -p.bias_exp, "floor"))  # fmt: skip
    v = decay_toward_zero(state.v, p.dv) + u + bias
    v = xp.clip(v, MEMBRANE.min_int, MEMBRANE.max_int)
    theta = p.vth << VTH_SHIFT
    v_centred = v - theta
    s = xp.positive(v_centred)  # v > theta
    if p.reset == "soft":
        v_new = v - s * theta
    elif p.reset == "hard":
        v_new = v - v * s  # v = 0 where s
    else:
        raise ValueError(f"LIFFixedParams.reset must be 'hard' or 'soft', got {p.reset!r}")
    return s, v_centred, LIFFixedState(u, v_new)


def dense_weights(w, num_weight_bits: int = 8, mixed: bool = True):
    """Lava Dense's weight preparation: clip to 8 bits, truncate the low bits (floor).

    ``mixed`` (both signs, Lava's ``SignMode.MIXED``) clips to [−256, 255] and
    truncates ``8 − num_weight_bits + 1`` bits; otherwise (excitatory) [0, 255] and
    ``8 − num_weight_bits`` bits.
    """
    xp = xp_of(w)
    w = xp.int64(w)
    w = xp.clip(w, -256, 255) if mixed else xp.clip(w, 0, 255)
    shift = 8 - num_weight_bits + int(mixed)
    return round_shift(w, shift, "floor") << shift


def dense_accumulate(w, s, weight_exp: int = 0):
    """``(w @ s) << weight_exp`` (``>> −weight_exp`` if negative) for binary ``s``.

    Shapes: ``w`` ``[out, in]``; ``s`` ``[in]`` (numpy) or ``[B, in]`` (torch, batched).
    """
    xp = xp_of(s)
    s64 = xp.int64(s)
    a = (s64 @ w.T) if s64.ndim == 2 else (w @ s64)
    return a << weight_exp if weight_exp >= 0 else round_shift(a, -weight_exp, "floor")
