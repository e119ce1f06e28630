"""Every integer quantity of an exported network as data: one table, one set of constants.

The home of the fixed-point formats (docs/fixed_point.md is generated from
:data:`FORMATS`; ``tests/test_formats_table.py`` keeps the two equal). PTQ, QAT, the
integer emulator, the Lava processes and the netx/built-in exporters read their widths,
shifts and limits from here. Pure Python (no numpy, no torch) so that the Lava modules
that import only numpy at top level can use it.

Rounding vocabulary (:data:`ROUNDINGS`, implemented once for numpy, torch and Python
numbers in :mod:`quantization.backend`: ``round_float`` for a float to an integer,
``round_shift`` for an integer right shift):

``nearest_even``  nearest, ties to even (``torch.round``, ``np.rint``, Python ``round``):
                  every float → integer conversion of PTQ, QAT and the input frames;
``nearest_up``    nearest, ties upward, ``(x + 2^(k−1)) >> k``: the integer shifts of the
                  learning signals and the traces' ``"nearest"`` option;
``floor``         ``x >> k`` (arithmetic shift): Lava Dense's weight truncation;
``toward_zero``   ``sign(x)·(|x| >> k)``: Lava's LIF decays;
``stochastic``    ``floor(x + r)``, ``r`` uniform in ``[0, 1)``: traces and weight updates;
``exact``         no rounding happens (the value is an integer by construction).

``"nearest"`` alone is the historic name of two different rules; it is still accepted
where it was (saved ``LearningSpec.trace_rounding`` and the trace-rounding option mean
``nearest_up``; ``QFormat(rounding="nearest")`` means ``nearest_even``), see
:data:`SHIFT_ALIASES` and :data:`FLOAT_ALIASES`.

Overflow vocabulary (:data:`OVERFLOWS`): ``saturate`` (clip to the range), ``wrap``
(two's complement), ``error`` (a ``QuantizationError`` naming the layer at quantization
time), ``none`` (cannot overflow, or beyond a lookup table the value is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROUNDINGS = ("nearest_even", "nearest_up", "floor", "toward_zero", "stochastic", "exact")
OVERFLOWS = ("saturate", "wrap", "error", "none")
#: ``"nearest"`` of an integer right shift (``round_shift``, trace rounding): ties upward.
SHIFT_ALIASES = {"nearest": "nearest_up"}
#: ``"nearest"`` of a float → integer conversion (``QFormat``): ties to even.
FLOAT_ALIASES = {"nearest": "nearest_even"}

# --- constants of Lava's LIF / Dense (lava-nc 0.10 ``PyLifModelBitAcc``, docs/lava.md §4) -

#: ``u = a << ACT_SHIFT``: the synaptic sum enters the 24-bit current 6 bits up.
ACT_SHIFT = 6
#: The threshold is compared as ``v > vth << VTH_SHIFT``.
VTH_SHIFT = 6
#: 12-bit decays: ``decay(x, d) = x·(4096 − d) >> 12`` (toward zero).
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
#: ``du`` that gives Lava's LIF no current memory (``u[t] = a[t] << 6``).
DU_NONE = DECAY_UNITY - 1
#: Largest 12-bit voltage decay Lava's LIF takes; a readout may also use ``DECAY_UNITY``.
DV_MAX = DECAY_UNITY - 1
#: 24-bit current and voltage: ``u`` wraps past ``±UV_LIMIT``, ``v`` saturates at ``±STATE_MAX``.
STATE_BITS = 24
UV_LIMIT = 1 << (STATE_BITS - 1)
STATE_MAX = UV_LIMIT - 1
#: 17-bit unsigned threshold mantissa.
VTH_BITS = 17
VTH_MAX = (1 << VTH_BITS) - 1
#: 13-bit signed bias mantissa.
BIAS_BITS = 13
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1
#: 8-bit unsigned Ψ table entries.
PSI_BITS = 8
PSI_MAX = (1 << PSI_BITS) - 1
#: 8-bit signed third factor L (and the DFA matrix B).
SIGNAL_BITS = 8
SIGNAL_MIN, SIGNAL_MAX = -(1 << (SIGNAL_BITS - 1)), (1 << (SIGNAL_BITS - 1)) - 1


@dataclass(frozen=True)
class QFormat:
    """Bit width, binary point, signedness, rounding and overflow of one quantity.

    A value ``x`` is stored as an integer mantissa ``m`` with ``x ≈ m · 2^(−frac_bits)``;
    ``m`` lies in ``[min_int, max_int]``. ``symmetric`` drops the most negative value (Lava's
    ``v`` saturates at ±(2^23 − 1)). The remaining fields (``quantity``, ``width``,
    ``scale``, ``rounding_note``, ``overflow_note``, ``section``) are the row of
    docs/fixed_point.md the table is generated from; they take no part in comparisons.
    """

    name: str
    bits: int
    frac_bits: int = 0
    signed: bool = True
    rounding: str = "nearest_even"
    overflow: str = "saturate"
    symmetric: bool = False
    quantity: str = field(default="", compare=False)
    width: str = field(default="", compare=False)
    scale: str = field(default="", compare=False)
    rounding_note: str = field(default="", compare=False)
    overflow_note: str = field(default="", compare=False)
    section: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 62:
            raise ValueError(f"QFormat {self.name!r}: bits must be in 1..62, got {self.bits}")
        if self.rounding not in ROUNDINGS and self.rounding not in FLOAT_ALIASES:
            raise ValueError(
                f"QFormat {self.name!r}: rounding must be one of {ROUNDINGS}, got {self.rounding!r}"
            )
        if self.overflow not in OVERFLOWS:
            raise ValueError(
                f"QFormat {self.name!r}: overflow must be one of {OVERFLOWS}, got {self.overflow!r}"
            )

    @property
    def rule(self) -> str:
        """The rounding as a name of :data:`ROUNDINGS` (``"nearest"`` → ``nearest_even``)."""
        return FLOAT_ALIASES.get(self.rounding, self.rounding)

    @property
    def min_int(self) -> int:
        if not self.signed:
            return 0
        return -self.max_int if self.symmetric else -(1 << (self.bits - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        """Value of one least-significant bit, ``2^(−frac_bits)``."""
        return 2.0**-self.frac_bits

    @property
    def min_value(self) -> float:
        return self.min_int * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    def width_text(self) -> str:
        """The doc's width cell: ``width`` if given, else ``"<bits> bit signed|unsigned"``."""
        return self.width or f"{self.bits} bit {'signed' if self.signed else 'unsigned'}"


# fmt: off
def _row(section, name, quantity, bits, signed, rounding, overflow, scale, **more) -> QFormat:
    """One table row: the format and its doc cells (``more``: width, notes, symmetric)."""
    return QFormat(name, bits, signed=signed, rounding=rounding, overflow=overflow,
                   section=section, quantity=quantity, scale=scale, **more)
# fmt: on


_INF, _LRN = "inference", "learning"

#: Every integer quantity of an exported network (docs/fixed_point.md, generated).
# fmt: off
FORMATS: dict[str, QFormat] = {f.name: f for f in (
    _row(_INF, "input", "input frames", 8, False, "nearest_even", "saturate",
         "counts as they are when integral; else `2^e_in`, calibrated",
         width="8 bit, unsigned if non-negative (else signed)", overflow_note="counted"),
    _row(_INF, "weight", "weight mantissa `m`", 8, True, "nearest_even", "saturate",
         "`s = 2^e`, `e` the smallest exponent at which the calibrated range r (max, or a "
         "percentile) fits; `scale=\"threshold\"`: spiking layers `θ_eff / vth`, `vth` the "
         "largest integer ≤ 2^17 − 1 with `round(r / (θ_eff / vth)) ≤ 2^(b−1) − 1`",
         width="`weight_bits` signed (2–8 for Lava; up to 32 in the emulator)",
         overflow_note="only when the user clips (percentile < 100 or a fixed exponent), "
         "counted per layer"),
    _row(_INF, "current", "current `u = a << 6`", STATE_BITS, True, "exact", "wrap",
         "`s / 64`", overflow_note="Lava's `u`, counted as `<layer>/current`"),
    _row(_INF, "membrane", "membrane `v`", STATE_BITS, True, "toward_zero", "saturate",
         "`s / 64`", symmetric=True, rounding_note="decay",
         overflow_note="at ±(2^23 − 1), counted as `<layer>/membrane`"),
    _row(_INF, "vth", "threshold `vth`", VTH_BITS, False, "nearest_even", "error",
         "`s`, compared as `v > vth << 6`", width="17 bit unsigned, ≥ 1",
         rounding_note="of `θ_eff / 2^e` (default); `scale=\"threshold\"`: exact "
         "(`s = θ_eff / vth`)",
         overflow_note="`θ/2^e` outside 1 … 2^17 − 1 (threshold scale: range beyond "
         "`(2^(b−1) − ½)·θ_eff`) → `QuantizationError` naming the layer and value"),
    _row(_INF, "dv", "decay `dv`", 12, False, "nearest_even", "saturate",
         "`γ = 1 − dv/4096`", width="12 bit (`0 … 4095`; readouts also 4096 = no memory)",
         rounding_note="of `(1 − γ)·4096`", overflow_note="clipped to the range"),
    _row(_INF, "adaptation", "AdLIF adaptation `ω = κ·w / L`", STATE_BITS, True,
         "toward_zero", "saturate", "`s / 64`; its decay `dw` 12 bit as `dv` (`ρ = 1 − dw/4096`)",
         symmetric=True, rounding_note="decay, and `(ka·h) >> 24`",
         overflow_note="at ±(2^23 − 1), counted as `<layer>/adaptation`"),
    _row(_INF, "adapt_ka", "AdLIF voltage coupling `ka`", 25, False, "nearest_even", "none",
         "`κ·a = ka / 2^24`", width="0 … 2^24 (24 fractional bits), per neuron"),
    _row(_INF, "adapt_kb", "AdLIF spike coupling `kb`", STATE_BITS, True, "nearest_even",
         "saturate", "membrane units `s / 64` (`κ·b / L`)", width="24 bit signed, per neuron",
         symmetric=True),
    _row(_INF, "bias", "bias", BIAS_BITS, True, "nearest_even", "error",
         "membrane units `s / 64`", width="13 bit signed mantissa `<< bias_exp`",
         rounding_note="the finest `bias_exp` that fits",
         overflow_note="beyond 24 bits → `QuantizationError`"),
    _row(_INF, "logits", "logits (readout state)", STATE_BITS, True, "toward_zero",
         "saturate", "`2^e / 64` (readouts are always power-of-two)", symmetric=True,
         rounding_note="decay", overflow_note="at ±(2^23 − 1)"),
    _row(_LRN, "psi", "Ψ (graded; table built at the true membrane LSB `s / 64`)", PSI_BITS,
         False, "nearest_even", "none",
         "`2^−psi_frac`, the largest that keeps Ψ's peak ≤ 255 (7 for variants a, c, d; "
         "9 for b)",
         rounding_note="`Ψ · 2^psi_frac` at the bin's left edge of a lookup table over the "
         "centred membrane `v − (vth << 6)`", overflow_note="beyond the table Ψ = 0"),
    _row(_LRN, "trace_pre", "pre-trace P, recurrent pre-trace R", 7, False, "stochastic",
         "saturate", "`2^−p_frac`, the largest that fits the calibrated maximum",
         width="`trace_bits` (7) unsigned",
         rounding_note="decay (default); the option `trace_rounding` also takes floor, "
         "toward_zero or nearest (= nearest_up)", overflow_note="counted"),
    _row(_LRN, "trace_current", "current traces P^i, R^i (current-based layers)", 7, False,
         "stochastic", "saturate",
         "`2^−pi_frac`, calibrated as P; impulse `x << pi_frac`; P's impulse `P^i[t−1]` "
         "at `2^(p_frac − pi_frac)`, `pi_frac − 12 ≤ p_frac`",
         width="`trace_bits` unsigned", rounding_note="as P (P rounds once, decay and impulse "
         "together)", overflow_note="counted"),
    _row(_LRN, "trace_post", "post-trace Q", 7, False, "stochastic", "saturate",
         "`2^−q_frac` (≤ `psi_frac`); impulse `Ψ >> (psi_frac − q_frac)`",
         width="`trace_bits` unsigned", rounding_note="as P", overflow_note="counted"),
    _row(_LRN, "lambda", "trace decays λ", 12, False, "nearest_even", "none",
         "`λ = lam / 4096` (4096: no decay)", width="12 bit (0 … 4096)"),
    _row(_LRN, "signal", "third factor L", SIGNAL_BITS, True, "nearest_even", "saturate",
         "`2^l_exp`, from the expected max of \\|L\\|", width="8 bit signed, per post neuron",
         rounding_note="`quantize_signal`; on the device: shifts nearest_up"),
    _row(_LRN, "alpha", "α_pre, α_post", 8, True, "nearest_even", "none",
         "`2^−a_frac`; current-based layers: `α_pre·κ²`, `α_post·κ` with `κ = dv/4096`; "
         "AdLIF layers: the same with the largest `κ_m = max dv / 4096`"),
    _row(_LRN, "post_gain", "AdLIF post gains G, H (per neuron)", 13, False, "nearest_up",
         "none", "`G ≈ 4096·(dv/dv_m)²` on `L·Ψ`, `H ≈ 4096·dv/dv_m` on `L·Q`; 12 fractional "
         "bits (`gain_frac`), taken out of the learning rate", width="0 … 4096",
         rounding_note="exact integer division of the 12-bit decays"),
    _row(_LRN, "acc", "eligibility × signal `acc`", 62, True, "exact", "none",
         "`2^(l_exp − psi_frac − p_frac − a_frac − gain_frac)` (`gain_frac` 0, AdLIF 12)",
         width="int64"),
    _row(_LRN, "weight_update", "update ΔW", 62, True, "stochastic", "saturate",
         "weight LSBs (`s = 2^e / gain`): `−acc · lr_mant / 2^lr_shift`, "
         "`lr_mant ∈ [64, 127]` from `lr · gain`", width="int64",
         overflow_note="the weight saturates at its width, counted"),
)}
# fmt: on

#: Shorthands for the formats the kernels read limits from.
MEMBRANE = FORMATS["membrane"]
PSI = FORMATS["psi"]
SIGNAL = FORMATS["signal"]

_HEADER = "| quantity | width | scale / units | rounding | overflow |\n|---|---|---|---|---|\n"


def _cell(name: str, note: str) -> str:
    return f"{name}: {note}" if note else name


def markdown_table(section: str) -> str:
    """The docs/fixed_point.md table of ``section`` (``"inference"`` or ``"learning"``)."""
    rows = [
        f"| {f.quantity} | {f.width_text()} | {f.scale} | {_cell(f.rule, f.rounding_note)} "
        f"| {_cell(f.overflow, f.overflow_note)} |\n"
        for f in FORMATS.values()
        if f.section == section
    ]
    if not rows:
        raise ValueError(f"markdown_table: no formats in section {section!r}")
    return _HEADER + "".join(rows)


def _markers(section: str) -> tuple[str, str]:
    start = f"<!-- formats:{section} (generated from quantization/formats.py) -->"
    return start, "<!-- /formats -->"


def render_doc(text: str) -> str:
    """``text`` (docs/fixed_point.md) with each generated table replaced by
    :func:`markdown_table` of its section (between the ``<!-- formats:... -->`` markers)."""
    for section in ("inference", "learning"):
        start, end = _markers(section)
        i = text.find(start)
        j = text.find(end, i)
        if i < 0 or j < 0:
            raise ValueError(f"docs/fixed_point.md: no {start} … {end} block")
        text = text[: i + len(start)] + "\n" + markdown_table(section) + text[j:]
    return text


if __name__ == "__main__":  # python -m quantization.formats docs/fixed_point.md: rewrite it
    import sys
    from pathlib import Path

    for arg in sys.argv[1:]:
        Path(arg).write_text(render_doc(Path(arg).read_text(encoding="utf-8")), encoding="utf-8")
