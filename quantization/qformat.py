"""Fixed-point formats as data: one :class:`QFormat` per quantity.

A value ``x`` (float) is stored as an integer mantissa ``m`` with
``x ≈ m · 2^(−frac_bits)``; ``m`` lies in ``[−2^(bits−1), 2^(bits−1) − 1]`` (signed) or
``[0, 2^bits − 1]`` (unsigned). Each format states its rounding and overflow:

rounding
    ``nearest`` (ties to even, as ``torch.round``), ``floor`` (an arithmetic right
    shift), ``toward_zero`` (Lava's decays), or ``stochastic`` (floor(x/lsb + U[0, 1)),
    Loihi's learning engine; needs a seeded ``torch.Generator``).
overflow
    ``saturate`` (clip to the range) or ``wrap`` (two's complement modulo 2^bits).

:class:`SaturationCounter` counts the values that overflowed, per format name, so a
user can read how often each quantity saturated or wrapped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

ROUNDINGS = ("nearest", "floor", "toward_zero", "stochastic")
OVERFLOWS = ("saturate", "wrap")


@dataclass(frozen=True)
class QFormat:
    """Bit width, binary point, signedness, rounding and overflow of one quantity."""

    name: str
    bits: int
    frac_bits: int = 0
    signed: bool = True
    rounding: str = "nearest"
    overflow: str = "saturate"

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 62:
            raise ValueError(f"QFormat {self.name!r}: bits must be in 1..62, got {self.bits}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(
                f"QFormat {self.name!r}: rounding must be one of {ROUNDINGS}, got {self.rounding!r}"
            )
        if self.overflow not in OVERFLOWS:
            raise ValueError(
                f"QFormat {self.name!r}: overflow must be one of {OVERFLOWS}, got {self.overflow!r}"
            )

    @property
    def min_int(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

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


class SaturationCounter:
    """Counts overflowing values per format name (read ``counts`` or ``as_dict()``)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()

    def add(self, name: str, overflowed: int, total: int) -> None:
        self.counts[name] += overflowed
        self.totals[name] += total

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            n: {
                "overflowed": self.counts[n],
                "total": self.totals[n],
                "fraction": self.counts[n] / max(self.totals[n], 1),
            }
            for n in self.totals
        }


def _round(scaled: torch.Tensor, fmt: QFormat, generator: torch.Generator | None):
    if fmt.rounding == "nearest":
        return torch.round(scaled)
    if fmt.rounding == "floor":
        return torch.floor(scaled)
    if fmt.rounding == "toward_zero":
        return torch.trunc(scaled)
    if generator is None:
        raise ValueError(
            f"QFormat {fmt.name!r} rounds stochastically: pass a seeded torch.Generator"
        )
    noise = torch.rand(scaled.shape, generator=generator, dtype=scaled.dtype)
    return torch.floor(scaled + noise)


def quantize(
    x: torch.Tensor,
    fmt: QFormat,
    generator: torch.Generator | None = None,
    counter: SaturationCounter | None = None,
) -> torch.Tensor:
    """Integer mantissas (int64) of the float tensor ``x`` in format ``fmt``."""
    if not x.is_floating_point():
        raise TypeError(f"quantize({fmt.name}): x must be a float tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"quantize({fmt.name}): x contains NaN or inf")
    m = _round(x.double() * (2.0**fmt.frac_bits), fmt, generator).to(torch.int64)
    return fit_integer(m, fmt, counter)


def fit_integer(m: torch.Tensor, fmt: QFormat, counter: SaturationCounter | None = None):
    """Apply ``fmt``'s overflow rule to integer mantissas ``m``."""
    over = (m < fmt.min_int) | (m > fmt.max_int)
    if counter is not None:
        counter.add(fmt.name, int(over.sum()), m.numel())
    if fmt.overflow == "saturate":
        return m.clamp(fmt.min_int, fmt.max_int)
    span = 1 << fmt.bits
    return (m - fmt.min_int) % span + fmt.min_int


def dequantize(m: torch.Tensor, fmt: QFormat) -> torch.Tensor:
    """Float values ``m · 2^(−frac_bits)`` (float64)."""
    return m.to(torch.float64) * fmt.lsb


#: Lava/Loihi-style formats of the quantities an exported network holds (docs/lava.md §3, §4).
WEIGHT = QFormat("weight", bits=8, signed=True)  # mantissa; per-layer exponent separately
STATE = QFormat("state_uv", bits=24, signed=True, overflow="wrap")
DECAY = QFormat("decay", bits=12, signed=False)  # unity 4096 = 2^12
TRACE = QFormat("trace", bits=7, signed=False, rounding="stochastic")
LEARNING_SIGNAL = QFormat("learning_signal", bits=8, signed=True)
