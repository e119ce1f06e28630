"""Fixed-point formats of on-device S-TLLR learning (the toolkit's own; docs/fixed_point.md).

Scales, per plastic layer with weight exponent ``e`` (``W ≈ m·2^e``)::

    Ψ      8-bit unsigned, Ψ ≈ psi · 2^−psi_frac            (graded, from a lookup table)
    P      ``trace_bits`` unsigned, P ≈ P_int · 2^−p_frac    (impulse of an input x: x << p_frac)
    Q      ``trace_bits`` unsigned, Q ≈ Q_int · 2^−q_frac    (impulse: Ψ >> (psi_frac − q_frac))
    L      8-bit signed, L ≈ L_int · 2^l_exp               (third factor, per post neuron)
    α      a_pre, a_post signed 8-bit, α ≈ a · 2^−a_frac
    λ      12-bit, λ ≈ lam / 4096                          (4096: no decay)
    P^i    current-based nodes: ``trace_bits`` unsigned, P^i ≈ P^i_int · 2^−pi_frac
           (impulse x << pi_frac, decay λ_syn ≈ lam_syn / 4096); P's impulse is
           P^i[t−1] rescaled by 2^(p_frac − pi_frac), ``pi_frac − 12 ≤ p_frac``

Per step, with ``g = L⊙Ψ`` and ``h = (L⊙Q[t−1]) << (psi_frac − q_frac)``::

    acc = a_pre · Σ_b gᵀ P  +  a_post · Σ_b hᵀ (x << p_frac)
    ΔW  = round_stoch(−acc · lr_mant / 2^lr_shift)         W ← sat(W + ΔW)

``acc`` is in units of ``2^(l_exp − psi_frac − p_frac − a_frac)``, so the float update
``−η·acc_float`` is ``−acc·c`` weight LSBs with
``c = η·2^(l_exp − psi_frac − p_frac − a_frac − e)``, written as ``lr_mant · 2^−lr_shift``
with ``lr_mant`` in [64, 127].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from quantization.backend import round_float, saturate
from quantization.exponents import power_of_two_exponent
from quantization.formats import DECAY_SHIFT, DECAY_UNITY, PSI, PSI_BITS
from stllr.surrogates import get_surrogate, psi_peak, support_half_width

PSI_MAX_ENTRIES = 1 << 16  # per side of the table


@dataclass(frozen=True)
class PsiTable:
    """Ψ as a lookup table over the centred membrane ``v_c = v − (vth << 6)`` (integer).

    ``Ψ_int = table[clip(v_c >> shift, −half, half) + half]``; entry ``i`` is
    ``round(Ψ((i − half)·2^shift · v_lsb) · 2^frac)``, the left edge of its bin.
    Beyond the table Ψ rounds to 0 for every variant (they decay monotonically).
    """

    table: torch.Tensor  # int64 [2·half + 1]
    shift: int
    half: int
    frac: int
    variant: str


def psi_frac_for(variant: str) -> int:
    """Fractional bits that put Ψ's peak (Ψ(0)) just inside 8 unsigned bits."""
    return int(math.floor(math.log2(((1 << PSI_BITS) - 1) / psi_peak(variant))))


def psi_bins(variant: str, v_lsb: float, floor: float) -> tuple[int, int]:
    """``(shift, half)`` of a Ψ table over a membrane whose LSB is ``v_lsb`` (float units):
    bins of ``2^shift`` LSBs, at most ``PSI_MAX_ENTRIES`` a side, reaching past the
    half-width beyond which ``Ψ < floor`` (:func:`stllr.surrogates.support_half_width`)."""
    half_lsb = math.ceil(support_half_width(variant, floor) / v_lsb)
    shift = max(0, math.ceil(math.log2(max(half_lsb, 1) / PSI_MAX_ENTRIES)))
    return shift, (half_lsb >> shift) + 1


def psi_at_bins(variant: str, v_lsb: float, shift: int, half: int) -> torch.Tensor:
    """Ψ (float64) at the left edge ``(i − half)·2^shift·v_lsb`` of each bin ``i``."""
    idx = torch.arange(-half, half + 1, dtype=torch.float64)
    return get_surrogate(variant)(idx * (2.0**shift) * v_lsb)


def psi_table(variant: str, v_lsb: float) -> PsiTable:
    """Build the Ψ table of ``variant`` for a membrane whose LSB is ``v_lsb`` (float units)."""
    frac = psi_frac_for(variant)
    # Bins out to where Ψ·2^frac < 0.5 (rounds to 0); 2^frac is a power of two, so
    # Ψ·2^frac ≥ 0.5 and Ψ ≥ 0.5 / 2^frac are the same test.
    shift, half = psi_bins(variant, v_lsb, 0.5 / 2**frac)
    psi = psi_at_bins(variant, v_lsb, shift, half)
    table = saturate(round_float(psi * 2**frac, PSI.rule), PSI.min_int, PSI.max_int)
    table = table.to(torch.int64)
    return PsiTable(table=table, shift=shift, half=half, frac=frac, variant=variant)


@dataclass(frozen=True)
class LearningSpec:
    """Integer constants of one plastic layer (see the module docstring for the scales)."""

    lam_pre: int
    lam_post: int
    a_pre: int
    a_post: int
    a_frac: int
    p_frac: int
    q_frac: int
    l_exp: int
    lr_mant: int
    lr_shift: int
    trace_bits: int = 7
    trace_rounding: str = "stochastic"
    w_min: int = -128
    w_max: int = 127
    seed: int = 0
    #: consolidation toward the deployed weights (quantization.consolidation): the pull
    #: ``2^−consolidate_shift`` of the way back after the update of every global step t
    #: with ``(t + 1) mod consolidate_every = 0`` (0: off)
    consolidate_shift: int = 0
    consolidate_every: int = 0
    #: current-based nodes (docs/fixed_point.md, "Current-based layers"): fractional bits
    #: of the current traces P^i, R^i (``None``: a direct-drive node, no current trace)
    pi_frac: int | None = None
    #: their 12-bit decay λ_syn (``round(λ_syn·4096)``)
    lam_syn: int = 0
    #: fractional bits of a per-neuron post gain that multiplies ``g`` and ``h`` (AdLIF
    #: layers: 12, docs/fixed_point.md, "Adaptive layers"); 0: no gain. ``acc`` is then in
    #: units of ``2^(l_exp − psi_frac − p_frac − a_frac − gain_frac)``.
    gain_frac: int = 0
    #: a readout's per-input step shifts ``s_i`` (quantization.preconditioning): its update
    #: of column ``i`` shifts ``lr_shift + s_i`` bits (``()``: none)
    pre_shift: tuple[int, ...] = ()

    def to_float_lr(self, psi_frac: int, weight_exp: int) -> float:
        """The float learning rate η this spec implements (for reports)."""
        c = self.lr_mant * 2.0**-self.lr_shift
        frac = psi_frac + self.p_frac + self.a_frac + self.gain_frac
        return c * 2.0 ** -(self.l_exp - frac - weight_exp)


def lambda_12bit(lam: float) -> int:
    """``round(λ·4096)`` for a trace decay λ in [0, 1]."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"trace decay λ must be in [0, 1], got {lam}")
    return round_float(lam * DECAY_UNITY, "nearest_even")


def trace_frac(max_value: float, bits: int) -> int:
    """Fractional bits that fit ``max_value`` into ``bits`` unsigned bits (≥ 0)."""
    if max_value <= 0:
        return bits - 1
    frac = math.floor(math.log2(((1 << bits) - 1) / max_value))
    return max(0, frac)


def make_learning_spec(
    *,
    lambda_pre: float,
    lambda_post: float,
    alpha_pre: float,
    alpha_post: float,
    lr: float,
    psi_frac: int,
    weight_exp: int,
    weight_bits: int,
    p_max: float,
    q_max: float,
    signal_max: float,
    trace_bits: int = 7,
    trace_rounding: str = "stochastic",
    seed: int = 0,
    lambda_syn: float | None = None,
    pi_max: float = 0.0,
    gain_frac: int = 0,
) -> LearningSpec:
    """Integer learning constants from float factors and calibrated trace/signal ranges.

    ``p_max``/``q_max`` are the largest pre/post trace values (float units) seen in
    calibration; ``signal_max`` the largest |learning signal|. ``lambda_syn`` (a
    current-based node) adds the current traces, ``pi_max`` their largest value; ``P``
    then keeps at least ``pi_frac − 12`` fractional bits. ``gain_frac``: the fractional
    bits of a per-neuron post gain in ``g``, ``h`` (AdLIF), taken out of the learning rate.
    """
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    a_exp = power_of_two_exponent(max(abs(alpha_pre), abs(alpha_post)), 8)
    a_frac = -a_exp
    p_frac = trace_frac(p_max, trace_bits)
    pi_frac = None
    if lambda_syn is not None:
        pi_frac = trace_frac(pi_max, trace_bits)
        p_frac = max(p_frac, pi_frac - DECAY_SHIFT)
    q_frac = min(trace_frac(q_max, trace_bits), psi_frac)
    l_exp = power_of_two_exponent(signal_max, 8)
    c = lr * 2.0 ** (l_exp - psi_frac - p_frac - a_frac - gain_frac - weight_exp)
    lr_shift = 6 - math.floor(math.log2(c))
    lr_mant = round_float(c * 2.0**lr_shift, "nearest_even")
    if lr_mant > 127:  # rounding reached 128
        lr_shift -= 1
        lr_mant = round_float(c * 2.0**lr_shift, "nearest_even")
    top = (1 << (weight_bits - 1)) - 1
    return LearningSpec(
        lam_pre=lambda_12bit(lambda_pre),
        lam_post=lambda_12bit(lambda_post),
        a_pre=round_float(alpha_pre * 2.0**a_frac, "nearest_even"),
        a_post=round_float(alpha_post * 2.0**a_frac, "nearest_even"),
        a_frac=a_frac,
        p_frac=p_frac,
        q_frac=q_frac,
        l_exp=l_exp,
        lr_mant=lr_mant,
        lr_shift=lr_shift,
        trace_bits=trace_bits,
        trace_rounding=trace_rounding,
        w_min=-top - 1,
        w_max=top,
        seed=seed,
        pi_frac=pi_frac,
        lam_syn=0 if lambda_syn is None else lambda_12bit(lambda_syn),
        gain_frac=gain_frac,
    )
