"""What netx and Lava make of dense weights, and the bound that keeps synaptic sums exact.

Why netx computes exactly what the emulator does for dense layers and synaptic sums::

    dense    utils.py:68 casts the weights to int; utils.py:80-158 (optimize_weight_bits)
             picks a sign mode from min/max, shift = floor(log2(scale)) (+1 if mixed)
             with scale = 127/max ∧ −128/min (mixed), 255/max (excitatory) or
             −256/min (inhibitory), multiplies the weights by 2^shift, and sets
             weight_exp = −shift and num_weight_bits = 8 − shift − n, n being the
             number of trailing zero bits all weights share (−1 if mixed).
             blocks/process.py:157-162 passes these to Lava's Dense *without* a sign
             mode, so Lava (dense/models.py:82-107) re-detects it on the shifted
             weights (weightutils.py:21-43), clips them (MIXED [−256, 255],
             EXCITATORY [0, 255], INHIBITORY [−255, 0], weightutils.py:250-295),
             truncates 8 − num_weight_bits (+1 if MIXED) low bits (204-247) and
             computes a = (Σ w·s) >> shift. If the clipped and truncated weights still
             equal m·2^shift, a = Σ m·s exactly. :func:`netx_dense_synapse` repeats
             this arithmetic and the writer refuses weights for which it fails:
             in practice an all-zero matrix (netx takes log2(∞) and fails) or a
             matrix with no positive weight whose most negative one is a power of two
             (netx scales it to −256, Lava's INHIBITORY clip makes it −255).
    rec      hdf5.py:401-407 optimises [W | W_rec] jointly (one shift), and
             blocks/process.py:249-262 gives each half its own Dense (each with its
             own auto-detected sign mode); 302-304 wire s_out → Dense → a_in, so the
             recurrent current at t is W_rec·s[t−1], as in the emulator.
    range    Lava's LIF wraps u once past ±2^23 (lif/models.py:143-170), as ours
             does, from (a << 6) in int32; the conv's 24-bit wrap of a comes first.
             Both equal ours while |a| < 2^23, which the writer guarantees statically
             (Σ|w| over every neuron's synapses < 2^23, :func:`check_sum_bound`).

Only numpy is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lava_models.errors import NetxInexactError, UnsupportedNodeError
from lava_models.netx.layout import SYNAPSE_SUM_LIMIT


@dataclass(frozen=True)
class NetxSynapse:
    """The dense synapses Lava runs after netx's ``optimize_weight_bits``.

    ``weights``: one integer matrix per input matrix, after netx's shift and Lava's clip
    and truncation; Lava computes ``a = (Σ w·s) >> shift``. ``num_weight_bits`` and
    ``shift`` (``weight_exp = −shift``) are netx's; ``netx_sign_mode`` is netx's choice
    and ``lava_sign_modes`` Lava's own detection per matrix.
    """

    weights: tuple[np.ndarray, ...]
    shift: int
    num_weight_bits: int
    netx_sign_mode: str
    lava_sign_modes: tuple[str, ...]

    def exact_for(self, mats) -> bool:
        """Whether ``a = Σ m·s`` exactly for every binary ``s`` (``w == m << shift``)."""
        return all(
            np.array_equal(w, np.asarray(m, dtype=np.int64) << self.shift)
            for w, m in zip(self.weights, mats, strict=True)
        )


def _trailing_zero_bits(w: np.ndarray) -> int:
    """netx's ``n`` before the sign correction: the largest n ≤ 8 with 2^n | every w."""
    g = int(np.gcd.reduce(np.abs(w).ravel())) if w.size else 0
    if g == 0:
        return 8
    return min(8, (g & -g).bit_length() - 1)


def _lava_sign_mode(w: np.ndarray) -> str:
    if w.min() >= 0:
        return "EXCITATORY"
    if w.max() <= 0:
        return "INHIBITORY"
    return "MIXED"


def netx_dense_synapse(*mats) -> NetxSynapse:
    """What netx (``utils.py:80-158``) and Lava's fixed Dense make of integer ``mats``.

    ``mats``: ``W`` (``dense``) or ``W, W_rec`` (``dense_rec``, optimised jointly,
    ``hdf5.py:401-407``). Raises :class:`NetxInexactError` where netx would clip the
    weights, fail (all zero), shift right, or Lava would truncate a negative bit count.
    """
    arrs = [np.asarray(m, dtype=np.int64) for m in mats]
    joint = np.concatenate([a.reshape(a.shape[0], -1) for a in arrs], axis=1)
    hi, lo = int(joint.max()), int(joint.min())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        raise NetxInexactError(f"netx clips mixed-sign weights [{lo}, {hi}] to [-256, 254]")
    if hi < 0:
        mode, signed, scale = "INHIBITORY", 0, -256 / lo
    elif lo >= 0:
        if hi == 0:
            raise NetxInexactError(
                "all weights are zero: netx's optimize_weight_bits takes log2(inf) and fails"
            )
        mode, signed, scale = "EXCITATORY", 0, 255 / hi
    else:
        mode, signed = "MIXED", 1
        scale = min(127 / hi if hi > 0 else math.inf, -128 / lo)
    shift = int(np.floor(np.log2(scale))) + signed
    if shift < 0:
        raise NetxInexactError(f"weights [{lo}, {hi}] exceed {mode} 8-bit range (netx shift < 0)")
    n = _trailing_zero_bits(joint) - signed
    num_weight_bits = 8 - shift - n
    out, lava_modes = [], []
    for a in arrs:
        w = a << shift
        lava_mode = _lava_sign_mode(w)
        if not w.any():  # zeros stay zeros under any clip and truncation
            out.append(w)
            lava_modes.append(lava_mode)
            continue
        if lava_mode == "MIXED":
            w = np.clip(w, -256, 255)
        elif lava_mode == "EXCITATORY":
            w = np.clip(w, 0, 255)
        else:
            w = np.clip(w, -255, 0)
        trunc = 8 - num_weight_bits + int(lava_mode == "MIXED")
        if trunc < 0:
            raise NetxInexactError(
                f"Lava would truncate {trunc} bits ({lava_mode}, num_weight_bits = "
                f"{num_weight_bits}): undefined"
            )
        if lava_mode == "INHIBITORY":
            w = -(((-w) >> trunc) << trunc)
        else:
            w = (w >> trunc) << trunc
        out.append(w)
        lava_modes.append(lava_mode)
    return NetxSynapse(tuple(out), shift, int(num_weight_bits), mode, tuple(lava_modes))


def check_netx_dense(*mats) -> int:
    """The shift netx applies to ``mats`` if Lava then computes ``Σ m·s`` exactly.

    Raises :class:`NetxInexactError` (with the reason) otherwise.
    """
    syn = netx_dense_synapse(*mats)
    if not syn.exact_for(mats):
        bad = [
            i
            for i, (w, m) in enumerate(zip(syn.weights, mats, strict=True))
            if not np.array_equal(w, np.asarray(m, dtype=np.int64) << syn.shift)
        ]
        lo = int(min(np.asarray(mats[i]).min() for i in bad))
        raise NetxInexactError(
            f"netx scales the weights by 2^{syn.shift} and Lava's "
            f"{syn.lava_sign_modes[bad[0]]} clip/truncation (num_weight_bits = "
            f"{syn.num_weight_bits}) changes them (most negative weight {lo}; an all "
            "non-positive matrix whose minimum is a power of two becomes −255, not −256)"
        )
    return syn.shift


def check_sum_bound(where: str, *mats) -> None:
    """Raise :class:`UnsupportedNodeError` unless every neuron's Σ|w| < ``SYNAPSE_SUM_LIMIT``."""
    rows = [np.abs(np.asarray(m, dtype=np.int64)).reshape(np.shape(m)[0], -1).sum(1) for m in mats]
    worst = int(np.sum(rows, axis=0).max())
    if worst >= SYNAPSE_SUM_LIMIT:
        raise UnsupportedNodeError(
            f"{where}: a neuron's Σ|w| = {worst} ≥ 2^23: its synaptic sum could wrap "
            "differently in Lava and in the emulator"
        )
