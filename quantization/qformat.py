"""Quantize float tensors into a :class:`~quantization.formats.QFormat` and back.

The formats themselves, and the rounding and overflow vocabularies, live in
:mod:`quantization.formats` (``QFormat`` is re-exported here). ``quantize`` rounds by
the format's rule (``stochastic`` needs a seeded ``torch.Generator``) and
:func:`fit_integer` applies its overflow: ``wrap`` (two's complement modulo 2^bits),
``error`` (raise), else saturate.

:class:`SaturationCounter` counts the values that overflowed, per format name, so a
user can read how often each quantity saturated or wrapped.
"""

from __future__ import annotations

from collections import Counter

import torch

from quantization.backend import round_float
from quantization.formats import QFormat

__all__ = ["QFormat", "SaturationCounter", "dequantize", "fit_integer", "quantize"]


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
    if fmt.rule != "stochastic":
        return round_float(scaled, fmt.rule)
    if generator is None:
        raise ValueError(
            f"QFormat {fmt.name!r} rounds stochastically: pass a seeded torch.Generator"
        )
    noise = torch.rand(scaled.shape, generator=generator, dtype=scaled.dtype)
    return round_float(scaled, "stochastic", noise)


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
    if fmt.overflow == "error" and bool(over.any()):
        raise ValueError(f"fit_integer({fmt.name}): values beyond [{fmt.min_int}, {fmt.max_int}]")
    if fmt.overflow != "wrap":
        return m.clamp(fmt.min_int, fmt.max_int)
    span = 1 << fmt.bits
    return (m - fmt.min_int) % span + fmt.min_int


def dequantize(m: torch.Tensor, fmt: QFormat) -> torch.Tensor:
    """Float values ``m · 2^(−frac_bits)`` (float64)."""
    return m.to(torch.float64) * fmt.lsb
