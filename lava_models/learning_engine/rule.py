"""S-TLLR on Lava's learning engine: the grammar mapping, its calibration and the builders.

**Timing.** Lava's ``LearningDense`` sends last step's sum, so the neuron's membrane at step
``τ`` was driven by the pre spikes of step ``τ−1``, while the engine's pre-synaptic state at
``τ`` (``x0``, ``x1``) already contains the spikes of step ``τ``. In the neuron's time line the
layer input is ``x_in[τ] = x[τ−1]`` and ``P_in[τ] = P[τ−1]`` (``P`` the engine's pre trace,
``P[τ] = λ_pre·P[τ−1] + x[τ]``). S-TLLR (docs/rule.md §5) is then, per step τ::

    ΔW_ij += −η·L_i[τ]·(α_pre·Ψ_i[τ]·P_j[τ−1]  +  α_post·Q_i[τ−1]·x_j[τ−1])

**Mapping** onto the product-series grammar (y1 = Q·s_Q, y2 = L·s_L, y3 = Ψ·s_Ψ sent by
:class:`~lava_models.learning_engine.neuron.process.STLLRLearningLIF`; x1 = c_x·P, impulse c_x)::

    causal, "corrected" (default):  P[τ−1] = (P[τ] − x[τ]) / λ_pre, i.e.
        k_c·u0*x1*y2*y3  −  k_c·x0*x1*y2*y3  +  k_c·x0*(x1−c_x)*y2*y3
      (at a pre spike the first two products are equal, bit for bit, and cancel; the third
       is the corrected one with the same scale and shift, so one floor per step remains)
    causal, "direct":   k_c·u0*x1*y2*y3          (pairs Ψ[τ] with P[τ]: one step off)
    non-causal:         k_n·x0*y1*y2             (= Q[τ]·x[τ]·L[τ])

The non-causal product is exact except for ``L``: the rule needs ``Q[τ]·x[τ]·L[τ+1]``
(neuron step τ+1), the engine multiplies by ``L[τ]``. With ``L`` constant in time it is
exact; otherwise the error is ``α_post·Q·x·(L[τ+1] − L[τ])``: :mod:`.deviation` reports
it as the difference between the "exact" and the "expressible" reference.

**Fixed point** (docs/lava.md §3): a product contributes ``floor(m·Π y_int / 2^shift)·2^e``
weight LSBs, ``shift = max(0, Σ widths + 4 − 15)`` = 10 for ``x1*y2*y3`` and 3 for
``y1*y2``; ``m ∈ [−8, 7]`` (we use [−7, 7]: the parser rewrites −(−8) as 4·2^(e+1), which
would break the bit-exact cancellation), ``e ∈ [−7, 8]``. The parser folds plain integer
factors into that 4-bit literal, so a product may also carry ``(t+k)``, k ∈ 1..511: tag_1
``t`` has no rule and stays 0, so this is the constant k, and as a 9-bit factor it adds 9
to the shift. That turns the 4-bit mantissa into ``m·k`` (≤ 1040 for the causal product,
whose int32 product would wrap beyond) and lets small coefficients keep ``e = −7``, the
finest floor granularity. :func:`calibrate_mapping` picks the integer impulse ``c_x``, the
power-of-two ``s_L``, the real ``s_Ψ`` and ``s_Q`` (they live in the neuron's lookup
tables, so they need not be powers of two) and the literals such that the effective
coefficients equal the float targets exactly, with every factor as close to its 7-bit
range as the literals allow (see the function's docstring).

What stays inexact in fixed point (measured by :mod:`.deviation`): the weights are
stochastically rounded to whole LSBs after *every* step (unbiased noise of about
``sqrt(total movement in LSBs)``, the dominant error), every product is floored (a
systematic ``−2^(e−1)`` LSB per active product-step), and the 7-bit factors round.

Imports: numpy and Lava at module level; torch (for the Ψ tables) inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
from lava.proc.dense.process import LearningDense
from lava.utils.weightutils import SignMode

from lava_models.learning_engine.config import STLLRNeuronConfig
from lava_models.learning_engine.neuron.process import STLLRLearningLIF
from quantization.formats import DECAY_UNITY, DU_NONE, SIGNAL_MAX, SIGNAL_MIN, VTH_MAX

MODES = ("floating_pt", "fixed_pt")
ALIGNMENTS = ("corrected", "direct")
TRACE_MAX = 127  # 7-bit unsigned traces x1, y1, y3
Y_SIGNED_MAX = SIGNAL_MAX  # y2 (the signed third factor) is clipped to [−128, 127]
SHIFT_CAUSAL = 10  # x1*y2*y3: 3·7 + 4 − 15
SHIFT_PAIR = 3  # y1*y2, x1… : 2·7 + 4 − 15
MANT_MAX = 7
EXP_MIN, EXP_MAX = -7, 8
W_TAG = 9  # width of the tag_1 factor "(t+k)"
CONST_MAX = 511  # (t+k) is clipped to [−512, 511]
#: |mant·const| bound of the causal product: 127·128·127·|m·k| must stay below 2^31 (the
#: engine multiplies in int32 and would wrap silently).
CAUSAL_MK_MAX = (1 << 31) // (127 * 128 * 127)
#: Candidate literals within this many bits of the free scale's cap prefer the finest 2^exp.
NEAR_CAP_BITS = 0.5
PSI_ROUNDINGS = ("stochastic", "nearest")
#: Fractional bits of the Ψ tables when y3 and the Q impulse are rounded stochastically.
PSI_EXTRA_BITS = 8
#: x1_tau used for λ_pre = 1 (no decay): exp(−1/τ) = 1 − 1e−12.
TAU_NO_DECAY = 1e12


@dataclass(frozen=True)
class ScaleLiteral:
    """A product's scale ``mant·2^exp`` times an optional integer constant factor ``const``.

    Grammar limits: |mant| ≤ 7 here (module doc), exp ∈ [−7, 8]. The grammar folds plain
    integer factors into the 4-bit scale, so ``const`` (1..511) is written ``(t+const)``:
    tag_1 ``t`` has no rule and stays 0, and as a 9-bit factor it adds 9 to the product's
    shift. ``const = 0`` means no constant factor.
    """

    mant: int
    exp: int
    const: int = 0

    def __post_init__(self) -> None:
        if not (1 <= abs(self.mant) <= MANT_MAX and EXP_MIN <= self.exp <= EXP_MAX):
            raise ValueError(f"scale literal {self.mant}*2^{self.exp} outside the grammar's range")
        if not 0 <= self.const <= CONST_MAX:
            raise ValueError(f"constant factor {self.const} outside [0, {CONST_MAX}]")

    @property
    def value(self) -> float:
        """``mant·2^exp·const`` (``const`` 0 counts as 1)."""
        return self.mant * 2.0**self.exp * (self.const or 1)

    def extra_shift(self) -> int:
        """Bits the constant factor adds to the product shift."""
        return W_TAG if self.const else 0

    def negated(self) -> ScaleLiteral:
        return ScaleLiteral(-self.mant, self.exp, self.const)

    def term(self, body: str, first: bool) -> str:
        """``"±|m|*2^e*body[*(t+k)]"`` with the sign written as the joining operator."""
        sign = "-" if self.mant < 0 else ("" if first else "+")
        lead = f"{sign}" if first else f" {sign} "
        tail = f"*(t+{self.const})" if self.const else ""
        return f"{lead}{abs(self.mant)}*2^{self.exp}*{body}{tail}"


@dataclass(frozen=True)
class GrammarMapping:
    """A calibrated S-TLLR → product-series mapping (everything the two Processes need).

    ``coef_causal``/``coef_noncausal`` are the targets in weight units per unit of
    ``L·Ψ·P`` / ``L·Q·x`` (float units of the factors): ``−η·α_pre/λ_pre`` (corrected) or
    ``−η·α_pre`` (direct) and ``−η·α_post``, divided by ``2^weight_exp`` in fixed point
    (weight LSBs). ``effective_causal``/``effective_noncausal`` are what the literals and
    scales give (fixed: including the product shift); they equal the targets up to float
    rounding.
    """

    mode: str
    alignment: str
    factors: tuple[float, float, float, float]
    lr: float
    weight_exp: int
    x1_impulse: float
    x1_tau: float
    s_l: float
    s_psi: float
    s_q: float
    lit_causal: ScaleLiteral | None
    lit_noncausal: ScaleLiteral | None
    coef_causal: float
    coef_noncausal: float
    neuron: STLLRNeuronConfig = field(repr=False)
    deficit_bits: tuple[float, float] = (0.0, 0.0)

    @property
    def shifts(self) -> tuple[int, int]:
        return (SHIFT_CAUSAL, SHIFT_PAIR) if self.mode == "fixed_pt" else (0, 0)

    @property
    def dw(self) -> str:
        """The ``dw`` rule string (see the module doc)."""
        terms: list[str] = []
        c = self.x1_impulse
        c_txt = str(int(c)) if float(c).is_integer() else repr(c)
        if self.lit_causal is not None:
            lit = self.lit_causal
            terms.append(lit.term("u0*x1*y2*y3", not terms))
            if self.alignment == "corrected":
                terms.append(lit.negated().term("x0*x1*y2*y3", False))
                terms.append(lit.term(f"x0*(x1-{c_txt})*y2*y3", False))
        if self.lit_noncausal is not None:
            terms.append(self.lit_noncausal.term("x0*y1*y2", not terms))
        if not terms:
            raise ValueError("both S-TLLR terms are zero (α_pre = α_post = 0): nothing to learn")
        return "".join(terms)

    @property
    def effective_causal(self) -> float:
        if self.lit_causal is None:
            return 0.0
        lit = self.lit_causal
        k = lit.value * 2.0 ** -(self.shifts[0] + lit.extra_shift())
        return k * self.x1_impulse * self.s_l * self.s_psi

    @property
    def effective_noncausal(self) -> float:
        if self.lit_noncausal is None:
            return 0.0
        lit = self.lit_noncausal
        k = lit.value * 2.0 ** -(self.shifts[1] + lit.extra_shift())
        return k * self.s_q * self.s_l

    def learning_rule(self, rng_seed: int = 0) -> Loihi3FLearningRule:
        """A fresh ``Loihi3FLearningRule`` (one per LearningDense: the engine keeps state in it)."""
        return Loihi3FLearningRule(
            dw=self.dw,
            x1_impulse=self.x1_impulse,
            x1_tau=self.x1_tau,
            t_epoch=1,
            rng_seed=rng_seed,
        )

    def quantize_signal(self, signal: np.ndarray) -> np.ndarray:
        """Third factor as sent to ``a_third_factor_in``: float as is, fixed ``round(L·s_L)``
        clipped to [−128, 127] (int32)."""
        signal = np.asarray(signal, dtype=np.float64)
        if self.mode == "floating_pt":
            return signal
        from quantization.backend import round_float, saturate

        y2 = saturate(round_float(signal * self.s_l, "nearest_even"), SIGNAL_MIN, SIGNAL_MAX)
        return y2.astype(np.int32)

    def summary(self) -> dict:
        """JSON-friendly description (for reports)."""
        lit = {
            k: None if v is None else [v.mant, v.exp, v.const]
            for k, v in (("causal", self.lit_causal), ("noncausal", self.lit_noncausal))
        }
        return {
            "mode": self.mode,
            "alignment": self.alignment,
            "dw": self.dw,
            "x1_impulse": self.x1_impulse,
            "x1_tau": self.x1_tau,
            "s_l": self.s_l,
            "s_psi": self.s_psi,
            "s_q": self.s_q,
            "literals": lit,
            "coef_target": [self.coef_causal, self.coef_noncausal],
            "coef_effective": [self.effective_causal, self.effective_noncausal],
            "deficit_bits": list(self.deficit_bits),
        }


def lambda_to_tau(lam: float) -> float:
    """``τ`` with ``exp(−1/τ) = λ`` (Lava's trace decay); λ = 1 → :data:`TAU_NO_DECAY`."""
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"λ_pre must be in (0, 1] for Lava's exponential trace, got {lam}")
    return TAU_NO_DECAY if lam == 1.0 else -1.0 / math.log(lam)


def _literals(base_shift: int, mk_max: int) -> list[tuple[float, ScaleLiteral]]:
    """Positive literals (with and without a constant factor) and their coefficients
    ``m·k·2^(e − shift)`` per unit of the integer factor product."""
    out = []
    for m in range(1, MANT_MAX + 1):
        for e in range(EXP_MIN, EXP_MAX + 1):
            out.append((m * 2.0 ** (e - base_shift), ScaleLiteral(m, e)))
            for k in range(1, min(CONST_MAX, mk_max // m) + 1):
                out.append((m * k * 2.0 ** (e - base_shift - W_TAG), ScaleLiteral(m, e, k)))
    return out


def _pick_literal(target: float, others: float, cap: float, base_shift: int, mk_max: int):
    """Literal for a product whose free scale is ``s = |target| / (κ·others)``, ``s ≤ cap``.

    Among the literals leaving ``s`` within :data:`NEAR_CAP_BITS` of the cap, the one with
    the finest floor granularity ``2^exp`` (then the largest ``s``, then no constant);
    if none is that close, the largest ``s``. Returns ``(literal with target's sign, s)``;
    ``ValueError`` if even the largest literal leaves ``s > cap`` (lr too large).
    """
    ok = []
    for kappa, lit in _literals(base_shift, mk_max):
        s = abs(target) / (kappa * others)
        if s <= cap * (1 + 1e-12):
            ok.append((s, lit))
    if not ok:
        raise ValueError(
            f"coefficient {target:.3g} needs a scale literal above 7·2^8: the learning rate is "
            "too large for the learning engine (reduce lr or use a finer weight exponent)"
        )
    near = [c for c in ok if c[0] >= cap * 2.0**-NEAR_CAP_BITS]
    if near:
        s, lit = min(near, key=lambda c: (c[1].exp, -c[0], c[1].const > 0, c[1].const))
    else:
        s, lit = max(ok, key=lambda c: (c[0], -c[1].exp))
    sign = -1 if target < 0 else 1
    return ScaleLiteral(sign * lit.mant, lit.exp, lit.const), s


def _scaled_tables(variant: str, v_lsb: float, scales: Sequence[float], extra_bits: int):
    """Ψ lookup tables at arbitrary scales ``s`` with ``extra_bits`` fractional bits.

    Entry ``i`` is ``round(Ψ(v_i)·s·2^extra_bits)`` at the left edge ``v_i`` of its bin,
    clipped to ``127·2^extra_bits``; the neuron shifts it right by ``extra_bits``
    (stochastically). ``extra_bits = 0`` uses the bins of ``learning_formats.psi_table``
    (beyond them ``Ψ·2^frac < 0.5`` and our scales are ≤ ``2^frac``, so they round to 0);
    otherwise the table is widened the same way until ``Ψ·max(s)·2^extra_bits < 0.5``, so
    the stochastic rounding keeps Ψ's tails (a nearest-rounded 7-bit Ψ(a) loses about 4 % of
    its mass to them, measured).
    """
    import torch

    from quantization.backend import round_float, saturate
    from quantization.learning_formats import psi_at_bins, psi_bins, psi_table

    geom = psi_table(variant, v_lsb)
    if max(scales) > 2.0**geom.frac:
        raise ValueError(f"Ψ scale {max(scales)} exceeds the table's 2^{geom.frac}")
    shift, half = geom.shift, geom.half
    if extra_bits:
        shift, half = psi_bins(variant, v_lsb, 0.5 / (max(scales) * 2.0**extra_bits))
    psi = psi_at_bins(variant, v_lsb, shift, half)
    top = TRACE_MAX * 2**extra_bits
    tables = [
        saturate(round_float(psi * s * 2.0**extra_bits, "nearest_even"), 0, top)
        .to(torch.int64)
        .numpy()
        .copy()
        for s in scales
    ]
    return tables, shift, half


def calibrate_mapping(
    factors: Sequence[float],
    lr: float,
    *,
    mode: str = "fixed_pt",
    psi: str = "a",
    weight_exp: int = 0,
    alignment: str = "corrected",
    p_max: float | None = None,
    q_max: float | None = None,
    l_max: float = 1.0,
    trace_rounding: str = "stochastic",
    psi_rounding: str = "stochastic",
    seed: int = 0,
    send_bap: bool = False,
) -> GrammarMapping:
    """Map S-TLLR ``factors = [λ_post, λ_pre, α_post, α_pre]`` with learning rate ``lr`` onto
    the grammar (module doc) and calibrate the scales.

    ``mode="floating_pt"``: literals ±1·2^0, ``c_x = s_L = 1``, ``s_Ψ = |η·α_pre(/λ_pre)|``,
    ``s_Q = |η·α_post|``: exact.

    ``mode="fixed_pt"`` (weights ``W = w·2^weight_exp``, membrane LSB ``2^weight_exp/64``):

    1. caps from the ranges: ``c_x ≤ 127/p_max`` (integer impulse; ``p_max`` defaults to
       ``1/(1−λ_pre)``, required if λ_pre = 1), ``s_L ≤ 127/l_max`` (power of two: the signal
       provider's format), ``s_Ψ ≤ 127/Ψ(0)``, ``s_Q ≤ 127/q_max`` (``q_max`` defaults to the
       bound ``Ψ(0)/(1−λ_post)``);
    2. deficit: with every factor at its cap, a small coefficient may need a literal below
       the smallest one (``1·2^−7`` with the constant ``(t+1)``, i.e. ``2^(−7−shift−9)``).
       The missing bits ``d_c`` (causal: 3 factors) and ``d_n`` (non-causal: 2 factors) are
       then taken from the factors: ``s_L`` (shared) loses ``round(max(d_c/3, d_n/2))``
       bits, ``c_x`` half of the causal rest, and the free real scales ``s_Ψ``/``s_Q``
       absorb what remains (reported as ``deficit_bits``; 0 in every measured case);
    3. literals: per product, among the ``mant·2^exp[·(t+k)]`` literals that leave the free
       scale (``s_Ψ`` causal, ``s_Q`` non-causal) within its cap and at most
       :data:`NEAR_CAP_BITS` below it, the one with the smallest ``exp`` (the finest floor
       granularity ``2^exp`` LSB), then the largest scale, then no constant. The free scale
       then makes the coefficient exact; the tables round ``Ψ·s_Ψ`` and ``Ψ·s_Q``.

    ``psi_rounding``: ``"stochastic"`` (default: the tables carry :data:`PSI_EXTRA_BITS`
    more bits and the neuron rounds y3 and the Q impulse stochastically, unbiased) or
    ``"nearest"`` (plain 7-bit tables). ``trace_rounding`` rounds Q's decay. ``send_bap``
    goes to the neuron config (off by default: see
    :class:`~lava_models.learning_engine.config.STLLRNeuronConfig`).
    """
    from quantization.backend import round_float

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if len(factors) != 4:
        raise ValueError(f"factors must be [λ_post, λ_pre, α_post, α_pre], got {list(factors)}")
    if psi_rounding not in PSI_ROUNDINGS:
        raise ValueError(f"psi_rounding must be one of {PSI_ROUNDINGS}, got {psi_rounding!r}")
    lam_post, lam_pre, a_post, a_pre = (float(f) for f in factors)
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if not 0.0 <= lam_post <= 1.0:
        raise ValueError(f"λ_post must be in [0, 1], got {lam_post}")
    x1_tau = lambda_to_tau(lam_pre)
    causal_gain = a_pre / lam_pre if alignment == "corrected" else a_pre
    w_unit = 2.0**weight_exp if mode == "fixed_pt" else 1.0
    coef_c = -lr * causal_gain / w_unit + 0.0  # + 0.0: no −0.0 in reports
    coef_n = -lr * a_post / w_unit + 0.0

    if mode == "floating_pt":
        lit_c = ScaleLiteral(-1 if coef_c < 0 else 1, 0) if coef_c else None
        lit_n = ScaleLiteral(-1 if coef_n < 0 else 1, 0) if coef_n else None
        neuron = STLLRNeuronConfig(
            psi_variant=psi, lam_post=lam_post, s_q=abs(coef_n) or 1.0, s_l=1.0,
            s_psi=abs(coef_c) or 1.0, send_bap=send_bap,
        )  # fmt: skip
        return GrammarMapping(
            mode=mode, alignment=alignment, factors=(lam_post, lam_pre, a_post, a_pre), lr=lr,
            weight_exp=0, x1_impulse=1.0, x1_tau=x1_tau, s_l=1.0, s_psi=neuron.s_psi,
            s_q=neuron.s_q, lit_causal=lit_c, lit_noncausal=lit_n, coef_causal=coef_c,
            coef_noncausal=coef_n, neuron=neuron,
        )  # fmt: skip

    from stllr.surrogates import psi_peak

    peak = psi_peak(psi)
    if p_max is None:
        if lam_pre >= 1.0:
            raise ValueError("λ_pre = 1: the pre trace grows without bound, give p_max")
        p_max = 1.0 / (1.0 - lam_pre)
    if q_max is None:
        if lam_post >= 1.0:
            raise ValueError("λ_post = 1: the post trace grows without bound, give q_max")
        q_max = peak / (1.0 - lam_post)
    if p_max > TRACE_MAX:
        raise ValueError(f"p_max = {p_max} does not fit the 7-bit pre trace even with impulse 1")
    c_cap = math.floor(TRACE_MAX / p_max)
    sl_cap = 2.0 ** math.floor(math.log2(Y_SIGNED_MAX / l_max))
    spsi_cap = TRACE_MAX / peak
    sq_cap = TRACE_MAX / q_max

    kmin_c = 2.0 ** (EXP_MIN - SHIFT_CAUSAL - W_TAG)
    kmin_n = 2.0 ** (EXP_MIN - SHIFT_PAIR - W_TAG)
    d_c = max(0.0, math.log2(spsi_cap * kmin_c * c_cap * sl_cap / abs(coef_c))) if coef_c else 0
    d_n = max(0.0, math.log2(sq_cap * kmin_n * sl_cap / abs(coef_n))) if coef_n else 0.0
    b_l = min(round(max(d_c / 3.0, d_n / 2.0)), max(0, int(math.log2(sl_cap))))
    s_l = sl_cap / 2.0**b_l
    c_x = max(1, math.floor(c_cap / 2.0 ** (max(0.0, d_c - b_l) / 2.0)))

    lit_c = lit_n = None
    s_psi, s_q = spsi_cap, sq_cap
    if coef_c:
        lit_c, s_psi = _pick_literal(coef_c, c_x * s_l, spsi_cap, SHIFT_CAUSAL, CAUSAL_MK_MAX)
    if coef_n:
        lit_n, s_q = _pick_literal(coef_n, s_l, sq_cap, SHIFT_PAIR, CONST_MAX * MANT_MAX)
    v_lsb = 2.0**weight_exp / 64.0
    extra = PSI_EXTRA_BITS if psi_rounding == "stochastic" else 0
    (psi_tab, q_tab), shift, half = _scaled_tables(psi, v_lsb, (s_psi, s_q), extra)
    neuron = STLLRNeuronConfig(
        psi_variant=psi, lam_post=lam_post, s_q=s_q, s_l=s_l, s_psi=s_psi, psi_table=psi_tab,
        q_table=q_tab, psi_shift=shift, psi_half=half, psi_extra_bits=extra,
        lam_post_12=round_float(lam_post * DECAY_UNITY, "nearest_even"),
        trace_rounding=trace_rounding, seed=seed, send_bap=send_bap,
    )  # fmt: skip
    return GrammarMapping(
        mode=mode, alignment=alignment, factors=(lam_post, lam_pre, a_post, a_pre), lr=lr,
        weight_exp=weight_exp, x1_impulse=float(c_x), x1_tau=x1_tau, s_l=s_l, s_psi=s_psi,
        s_q=s_q, lit_causal=lit_c, lit_noncausal=lit_n, coef_causal=coef_c,
        coef_noncausal=coef_n, neuron=neuron, deficit_bits=(float(d_c), float(d_n)),
    )  # fmt: skip


class PlasticSynapse(NamedTuple):
    """What :func:`build_stllr_learning_dense` returns."""

    dense: LearningDense
    rule: Loihi3FLearningRule
    mapping: GrammarMapping


def build_stllr_learning_dense(
    weights: np.ndarray,
    factors: Sequence[float] | None = None,
    lr: float | None = None,
    *,
    mapping: GrammarMapping | None = None,
    rng_seed: int = 0,
    name: str | None = None,
    **calibration,
) -> PlasticSynapse:
    """``LearningDense`` + ``Loihi3FLearningRule`` implementing S-TLLR.

    ``weights``: float ``[out, in]`` for ``mode="floating_pt"``; integer weight LSBs for
    ``fixed_pt`` (``W = w·2^weight_exp``; MIXED sign mode, [−256, 255]; use even initial
    values: the fixed model drops the LSB of the initial weights once). Either give a
    ``mapping`` or ``factors``, ``lr`` and :func:`calibrate_mapping`'s keyword arguments.
    """
    if mapping is None:
        if factors is None or lr is None:
            raise ValueError("give either mapping= or factors and lr")
        mapping = calibrate_mapping(factors, lr, **calibration)
    elif calibration or factors is not None or lr is not None:
        raise ValueError("give either mapping= or factors/lr/calibration keywords, not both")
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be [out, in], got shape {w.shape}")
    if mapping.mode == "fixed_pt":
        if not np.array_equal(w, np.round(w)) or w.min() < -256 or w.max() > 255:
            raise ValueError("fixed_pt weights must be integers in [−256, 255] (weight LSBs)")
        w = w.astype(np.int64)
    else:
        w = w.astype(np.float64)
    rule = mapping.learning_rule(rng_seed)
    dense = LearningDense(
        weights=w, learning_rule=rule, sign_mode=SignMode.MIXED, name=name
    )  # fmt: skip
    return PlasticSynapse(dense, rule, mapping)


def make_stllr_neuron(
    mapping: GrammarMapping,
    rule: Loihi3FLearningRule,
    n: int,
    *,
    gamma: float,
    theta: float,
    reset: str = "soft",
    name: str | None = None,
) -> STLLRLearningLIF:
    """An :class:`STLLRLearningLIF` with S-TLLR's LIF (decay γ, threshold θ, no current memory).

    float: ``du = 1, dv = 1 − γ, vth = θ``; fixed: ``du = 4095, dv = round((1−γ)·4096),
    vth = round(θ / 2^weight_exp)`` (membrane LSB ``2^weight_exp / 64``).
    """
    if mapping.mode == "floating_pt":
        du, dv, vth = 1.0, 1.0 - gamma, float(theta)
    else:
        from quantization.backend import round_float
        from quantization.ptq import quantize_decay

        du, dv = DU_NONE, quantize_decay(gamma)
        vth = round_float(theta / 2.0**mapping.weight_exp, "nearest_even")
        if not 1 <= vth <= VTH_MAX:
            raise ValueError(f"threshold {theta} is {vth} LSBs: outside Lava's 17-bit vth")
    return STLLRLearningLIF(
        shape=(n,), du=du, dv=dv, vth=vth, learning_rule=rule, reset=reset,
        stllr=mapping.neuron, name=name,
    )  # fmt: skip


def connect_plastic(dense: LearningDense, neuron: STLLRLearningLIF) -> None:
    """``a_out → a_in`` plus the learning ports ``bap, y1, y2, y3`` (all must be connected)."""
    dense.a_out.connect(neuron.a_in)
    neuron.s_out_bap.connect(dense.s_in_bap)
    neuron.s_out_y1.connect(dense.s_in_y1)
    neuron.s_out_y2.connect(dense.s_in_y2)
    neuron.s_out_y3.connect(dense.s_in_y3)
