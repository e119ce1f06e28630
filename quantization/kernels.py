"""Integer kernels of on-device S-TLLR learning, written once for numpy and torch.

Every quantity is an integer mantissa; the scale of each is stated where it is made
(:mod:`quantization.learning_formats`). Shapes are per sample for numpy (``[N]``) and
batched for torch (``[B, N]``); the kernels do not care.

Rounding of a right shift by ``k`` bits is :func:`quantization.backend.round_shift` (the
rounding vocabulary of :mod:`quantization.formats`), stated per operation; stochastic
rounding adds ``r`` uniform in ``[0, 2^k)`` drawn from :func:`hash_uniform` (Loihi's
learning engine rounds this way; unbiased: ``E[(x + r) >> k] = x / 2^k``).

Node-level kernels (the per-node math of :mod:`quantization.emulator` and of the Lava
``fixed_pt`` models in :mod:`lava_models.processes`): :func:`stllr_trace_step`,
:func:`stllr_current_trace_step` (current-based nodes),
:func:`stllr_weight_step`, :func:`synapse_correlation`, :func:`readout_int_step`,
:func:`add_shifted`, :func:`global_sum_pool`.

The random numbers are a counter-based hash of ``(seed, step, stream, element index)``
in 64-bit integer arithmetic, so numpy (inside Lava process models) and torch (the
batched emulator) draw identical bits without sharing a generator state. The
element index runs over one sample; every sample of a batch sees the same bits,
so a sample's result does not depend on its position in a batch.
"""

from __future__ import annotations

import numpy as np
import torch

from quantization.backend import (
    int_conv2d_weight,
    int_conv_transpose2d_weight,
    int_outer_sum,
    round_shift,
    saturate,
    xp_of,
)
from quantization.formats import ACT_SHIFT, DECAY_SHIFT, MEMBRANE
from quantization.loihi import decay_toward_zero
from quantization.preconditioning import scale_columns

MASK32 = (1 << 32) - 1
_MIX = 0x45D9F3B  # < 2^31: products with 32-bit values stay below 2^63
_IDX = 0x2C1B3C6D


def _hash32(h, xp):
    h = h ^ (h >> 16)
    h = (h * _MIX) & MASK32
    h = h ^ (h >> 16)
    h = (h * _MIX) & MASK32
    return h ^ (h >> 16)


def stream_key(seed: int, step: int, stream: int) -> int:
    """A 32-bit key mixing the seed, the time step and the stream number (Python ints)."""
    k = (seed * 0x3C6EF372 + 0x9E3779B9) & MASK32
    k = (k ^ ((step * 0x27D4EB2F) & MASK32)) & MASK32
    k = (k ^ ((stream * 0x165667B1) & MASK32)) & MASK32
    return int(np.uint32(k))


def hash_uniform(like, shape, key: int, bits: int):
    """Integers uniform in ``[0, 2^bits)`` of ``shape`` (``bits`` ≤ 32), a pure function of
    ``key`` and the element's flat index. ``like`` selects the backend (numpy/torch)."""
    if not 0 <= bits <= 32:
        raise ValueError(f"hash_uniform: bits must be in 0..32, got {bits}")
    n = int(np.prod(shape)) if len(shape) else 1
    if isinstance(like, torch.Tensor):
        idx = torch.arange(n, dtype=torch.int64, device=like.device).reshape(shape)
    else:
        idx = np.arange(n, dtype=np.int64).reshape(shape)
    xp = xp_of(idx)
    h = _hash32(((idx & MASK32) * _IDX + key) & MASK32, xp)
    return h >> (32 - bits) if bits else h * 0


def stochastic_noise(x, k: int, key: int):
    """Noise for :func:`round_shift` of ``x`` by ``k`` bits, one value per element of one
    sample (``x.shape[1:]`` for batched torch input, ``x.shape`` for numpy)."""
    shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else tuple(np.shape(x))
    if k <= 32:
        return hash_uniform(x, shape, key, k)
    return hash_uniform(x, shape, key, 32) << (k - 32)


def trace_int_step(trace, impulse, decay: int, bits: int, rounding: str, key: int = 0):
    """``trace[t] = sat_u(round(trace[t−1]·decay >> 12) + impulse)`` in ``bits`` unsigned bits.

    ``decay`` is λ in 12-bit fixed point (``round(λ·4096)``, 4096 = no decay);
    ``impulse`` ≥ 0 is already in the trace's units.
    """
    prod = trace * decay
    noise = stochastic_noise(prod, DECAY_SHIFT, key) if rounding == "stochastic" else None
    return saturate(round_shift(prod, DECAY_SHIFT, rounding, noise) + impulse, 0, (1 << bits) - 1)


def psi_lookup(v_centred, table, shift: int, half: int):
    """Graded Ψ: ``table[clip(v_centred >> shift, −half, half) + half]`` (int64).

    ``table`` (``2·half + 1`` unsigned entries) samples Ψ at the left edge of each
    ``2^shift``-wide bin of the centred membrane (see ``learning_formats.psi_table``).
    """
    xp = xp_of(v_centred)
    i = xp.clip(v_centred >> shift, -half, half) + half
    return table[i]


def stllr_eligibility_terms(signal, psi, q_prev, q_align: int):
    """Per post-neuron factors of the two S-TLLR terms (int64, shape of ``signal``)::

    g = L ⊙ Ψ                      (causal term, multiplies the pre-trace P)
    h = (L ⊙ Q[t−1]) << q_align    (non-causal term, multiplies the input x)

    ``q_align = psi_frac − q_frac`` puts Q on Ψ's scale.
    """
    return signal * psi, (signal * q_prev) << q_align


def weight_update(w, acc, lr_mant: int, lr_shift: int, w_min: int, w_max: int, key: int):
    """``W ← sat(W + round_stoch(−acc·lr_mant / 2^lr_shift))`` (gradient descent).

    ``acc`` is the integer eligibility-times-signal sum; ``lr_shift < 0`` multiplies.
    Returns ``(new W, ΔW applied before saturation)``.
    """
    scaled = -acc * lr_mant
    if lr_shift > 0:
        dw = round_shift(scaled, lr_shift, "stochastic", _weight_noise(scaled, lr_shift, key))
    else:
        dw = scaled << -lr_shift
    return saturate(w + dw, w_min, w_max), dw


def _weight_noise(x, k: int, key: int):
    shape = tuple(x.shape)
    if k <= 32:
        return hash_uniform(x, shape, key, k)
    return hash_uniform(x, shape, key, 32) << (k - 32)


# --- per-node kernels shared by the emulator and the Lava fixed_pt models ---------------

#: Random streams per node: the stream of quantity ``q`` of node ``i`` is ``i·10 + q``
#: (``STREAM_PI``, ``STREAM_RI``: the current traces of a current-based node;
#: ``STREAM_CW``, ``STREAM_CWREC``: the consolidation pull of W and W_rec,
#: quantization.consolidation).
STREAMS_PER_NODE = 10
STREAM_P, STREAM_Q, STREAM_R, STREAM_QIMP, STREAM_W, STREAM_WREC, STREAM_PI, STREAM_RI = range(8)
STREAM_CW, STREAM_CWREC = 8, 9


def node_stream_key(seed: int, step: int, node_index: int, quantity: int) -> int:
    """:func:`stream_key` of quantity ``quantity`` (``STREAM_*``) of node ``node_index``."""
    return stream_key(seed, step, node_index * STREAMS_PER_NODE + quantity)


def stllr_trace_step(p, q, r, x, psi, s_prev, spec, psi_frac: int, step: int, node_index: int):
    """Advance the traces of one plastic node after its forward step; returns ``(P, Q, R)``.

    ``P`` (shape of the input ``x``) gets the impulse ``x << p_frac``; ``R`` (recurrent
    layers, else ``None``) gets ``s[t−1] << p_frac``; ``Q`` (spiking layers, else ``None``
    with ``psi`` ``None``) gets ``round(Ψ >> (psi_frac − q_frac))``. Each decays by its
    12-bit λ with ``spec.trace_rounding`` and saturates at ``spec.trace_bits``.
    ``spec`` is a :class:`~quantization.learning_formats.LearningSpec`.
    """

    def key(quantity):
        return node_stream_key(spec.seed, step, node_index, quantity)

    bits, rnd = spec.trace_bits, spec.trace_rounding
    p = trace_int_step(p, x << spec.p_frac, spec.lam_pre, bits, rnd, key(STREAM_P))
    if r is not None:
        r = trace_int_step(r, s_prev << spec.p_frac, spec.lam_pre, bits, rnd, key(STREAM_R))
    if psi is not None:
        q = post_trace_step(q, psi, spec, psi_frac, key(STREAM_QIMP), key(STREAM_Q))
    return p, q, r


def post_trace_step(q, psi, spec, psi_frac: int, key_impulse: int, key_decay: int):
    """``Q[t] = sat(round(Q[t−1]·λ_post >> 12) + round(Ψ >> (psi_frac − q_frac)))``."""
    bits, rnd = spec.trace_bits, spec.trace_rounding
    k = psi_frac - spec.q_frac
    noise = stochastic_noise(psi, k, key_impulse) if rnd == "stochastic" else None
    impulse = round_shift(psi, k, rnd, noise)
    return trace_int_step(q, impulse, spec.lam_post, bits, rnd, key_decay)


def current_pre_trace_step(p, p_i, x, spec, key_p: int, key_pi: int):
    """The two pre-traces of one input of a current-based node (docs/fixed_point.md,
    "Current-based layers"); returns ``(P[t], P^i[t])``::

        P[t]   = sat(round((P[t−1]·λ_pre + (P^i[t−1] << (12 − k))) >> 12))   k = pi_frac − p_frac
        P^i[t] = sat(round(P^i[t−1]·λ_syn >> 12) + (x[t] << pi_frac))

    ``P`` (scale ``2^−p_frac``) takes the *previous* current trace (the voltage reads the
    previous current), rescaled from ``2^−pi_frac`` and rounded once with its own decay;
    both saturate at ``spec.trace_bits`` unsigned bits and round with
    ``spec.trace_rounding`` (streams ``key_p``, ``key_pi``).
    """
    bits, rnd = spec.trace_bits, spec.trace_rounding
    total = p * spec.lam_pre + (p_i << (DECAY_SHIFT - (spec.pi_frac - spec.p_frac)))
    noise = stochastic_noise(total, DECAY_SHIFT, key_p) if rnd == "stochastic" else None
    p_new = saturate(round_shift(total, DECAY_SHIFT, rnd, noise), 0, (1 << bits) - 1)
    p_i_new = trace_int_step(p_i, x << spec.pi_frac, spec.lam_syn, bits, rnd, key_pi)
    return p_new, p_i_new


def stllr_current_trace_step(p, p_i, q, r, r_i, x, psi, s_prev, spec, psi_frac: int,
                             step: int, node_index: int):  # fmt: skip
    """:func:`stllr_trace_step` of a current-based node: ``P, P^i`` of the input and ``R, R^i``
    of the recurrent input ``s[t−1]`` (``None`` if not recurrent) by
    :func:`current_pre_trace_step`, ``Q`` as for the LIF. Returns ``(P, P^i, Q, R, R^i)``."""

    def key(quantity):
        return node_stream_key(spec.seed, step, node_index, quantity)

    p, p_i = current_pre_trace_step(p, p_i, x, spec, key(STREAM_P), key(STREAM_PI))
    if r is not None:
        r, r_i = current_pre_trace_step(r, r_i, s_prev, spec, key(STREAM_R), key(STREAM_RI))
    q = post_trace_step(q, psi, spec, psi_frac, key(STREAM_QIMP), key(STREAM_Q))
    return p, p_i, q, r, r_i


def synapse_correlation(kind: str, a, x, w_shape, stride=(1, 1), padding=(0, 0),
                        dilation=(1, 1), groups: int = 1):  # fmt: skip
    """``Σ`` over samples (and positions) of the post factor ``a`` times the pre quantity ``x``,
    in the weight's shape: ``aᵀx`` for ``kind == "dense"``, the weight gradient of the
    convolution for ``"conv"`` and of the transposed convolution for ``"deconv"``. numpy
    inputs are one sample (``[out]``/``[C, H, W]``), torch inputs a batch."""
    if not isinstance(a, torch.Tensor):
        a, x = np.asarray(a)[None], np.asarray(x)[None]
    if kind == "conv":
        return int_conv2d_weight(x, tuple(w_shape), a, stride, padding, dilation, groups)
    if kind == "deconv":
        return int_conv_transpose2d_weight(x, tuple(w_shape), a, stride, padding, dilation,
                                           groups)  # fmt: skip
    return int_outer_sum(a, x)


def stllr_weight_step(
    w, g, h, pre_trace, pre_input, spec, key: int, correlate, pre_shift: tuple[int, ...] = ()
):
    """One S-TLLR update of ``w``; returns ``(new W, ΔW before saturation)``::

        acc = a_pre · corr(g, P) + a_post · corr(h, x << p_frac)     (no h: first term only)
        W  ← sat(W + round_stoch(−acc · lr_mant / 2^lr_shift))

    ``g, h`` from :func:`stllr_eligibility_terms` (a readout: ``g = L``, ``h = None``);
    ``pre_trace``/``pre_input`` are ``P, x`` (or ``R, s[t−1]`` for recurrent weights);
    ``correlate(a, x)`` is :func:`synapse_correlation` bound to the layer. ``pre_shift``
    ``s_i`` (a readout's per-input step sizes, :mod:`quantization.preconditioning`):
    column ``i`` shifts ``lr_shift + s_i`` bits instead.
    """
    acc = spec.a_pre * correlate(g, pre_trace)
    if h is not None:
        acc = acc + spec.a_post * correlate(h, pre_input << spec.p_frac)
    extra = 0
    if pre_shift:
        acc, extra = scale_columns(acc, pre_shift)
    return weight_update(w, acc, spec.lr_mant, spec.lr_shift + extra, spec.w_min, spec.w_max, key)


def readout_int_step(o, a, dv: int, bias=None, shift: int = ACT_SHIFT):
    """Non-spiking integrator: ``o[t] = clip24(decay(o[t−1], dv) + (a[t] << 6) + bias)``.

    ``o`` ``None`` is the zero state; ``dv = 4096`` keeps no memory of ``o[t−1]``.
    ``shift`` replaces the 6: ``a << shift`` when ``shift ≥ 0``, else ``a / 2^−shift``
    rounded half up (``round_shift(a, −shift, "nearest_up")``), a coarser output LSB for
    a readout whose output is fed on (docs/node_kinds.md, "Graded outputs").
    """
    scaled = a << shift if shift >= 0 else round_shift(a, -shift, "nearest_up")
    new = scaled + (0 if bias is None else bias)
    if o is not None:
        new = new + decay_toward_zero(o, dv)
    return saturate(new, MEMBRANE.min_int, MEMBRANE.max_int)


def add_shifted(inputs, shifts=()):
    """``Σ_i inputs[i] << shifts[i]`` (``shifts`` empty: all 0)."""
    shifts = tuple(shifts) or (0,) * len(inputs)
    out = inputs[0] << shifts[0]
    for x, k in zip(inputs[1:], shifts[1:], strict=True):
        out = out + (x << k)
    return out


def global_sum_pool(x):
    """Sum over the two spatial axes (the last two): ``[(B,) C, H, W] → [(B,) C]``."""
    if isinstance(x, torch.Tensor):
        return x.sum(dim=(-2, -1))
    return np.asarray(x).sum(axis=(-2, -1))
