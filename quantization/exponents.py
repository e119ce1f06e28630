"""Per-layer scales: the power-of-two exponent rule shared by PTQ, QAT and the exporter,
and the exact-threshold scale of spiking layers (:func:`threshold_scale`, PTQ's default).

A layer's float weights ``W`` are stored as integer mantissas ``m = round(W / 2^e)`` in a
signed ``bits``-bit format, ``m ∈ [−2^(bits−1), 2^(bits−1) − 1]``. The exponent is the
smallest ``e`` for which the calibrated magnitude ``r`` (the max, or a percentile, of
``|W|``) does not overflow::

    e = min { e ∈ ℤ : round(r / 2^e) ≤ 2^(bits−1) − 1 }

so the largest weight uses the mantissa range down to half of it (a power of two wastes up
to one bit). ``r = 0`` (an all-zero layer) gives the exponent at which one LSB is the
smallest normal float32, which keeps everything zero.
"""

from __future__ import annotations

import math

import torch

from quantization.backend import round_float
from quantization.formats import FORMATS

ZERO_RANGE_EXPONENT = -126


def max_mantissa(bits: int) -> int:
    """Largest positive mantissa of a signed ``bits``-bit format."""
    if not 2 <= bits <= 32:
        raise ValueError(f"weight bits must be in 2..32, got {bits}")
    return (1 << (bits - 1)) - 1


def _mantissa(value: float) -> int:
    """``value`` rounded as a weight mantissa is (the ``weight`` format's rule)."""
    return round_float(value, FORMATS["weight"].rule)


def power_of_two_exponent(range_abs: float, bits: int) -> int:
    """The smallest ``e`` with ``round(range_abs / 2^e) ≤ 2^(bits−1) − 1`` (see module doc)."""
    if not math.isfinite(range_abs) or range_abs < 0:
        raise ValueError(f"range must be a finite non-negative number, got {range_abs}")
    top = max_mantissa(bits)
    if range_abs == 0.0:
        return ZERO_RANGE_EXPONENT
    e = math.ceil(math.log2(range_abs / top))
    # log2 rounding and round-half-to-even can leave the top value one over; step once.
    while _mantissa(range_abs / 2.0**e) > top:
        e += 1
    while e > ZERO_RANGE_EXPONENT and _mantissa(range_abs / 2.0 ** (e - 1)) <= top:
        e -= 1
    return e


def calibrated_range(w: torch.Tensor, percentile: float = 100.0) -> float:
    """``max |w|`` (percentile 100) or the given percentile of ``|w|``, as a float."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    a = w.detach().abs().flatten().double()
    if a.numel() == 0:
        return 0.0
    if percentile == 100.0:
        return float(a.max())
    return float(torch.quantile(a, percentile / 100.0))


def threshold_scale(range_abs: float, theta: float, bits: int, vth_max: int) -> tuple[int, float]:
    """Scale of a spiking layer whose threshold is exact: ``(vth, s)`` with ``s = θ / vth``.

    A spiking layer's output (spikes) does not depend on the common scale of its weights,
    bias and threshold, and on the chip only the integers ``m = W/s``, ``vth = θ/s`` and
    the bias meet (Lava's ``LIF`` compares ``v > vth << 6``; the weight exponent is never
    applied), so ``s`` can be any positive real. It is chosen so that the threshold is
    represented exactly and the weights use the mantissa range as fully as possible::

        vth = max { v ∈ ℤ, 1 ≤ v ≤ vth_max : round(r / (θ / v)) ≤ 2^(bits−1) − 1 }

    (``r = 0`` gives ``vth_max``). ``vth = 0`` (``r`` beyond ``(2^(bits−1) − ½)·θ``: even
    the coarsest exact scale overflows) is returned as is; the caller reports it.
    """
    if not math.isfinite(range_abs) or range_abs < 0:
        raise ValueError(f"range must be a finite non-negative number, got {range_abs}")
    if not (math.isfinite(theta) and theta > 0):
        raise ValueError(f"threshold must be a finite positive number, got {theta}")
    top = max_mantissa(bits)
    if range_abs == 0.0:
        return vth_max, theta / vth_max
    vth = min(vth_max, math.floor((top + 0.5) * theta / range_abs) + 1)  # rounding: r/s < top + ½
    while vth > 0 and _mantissa(range_abs / (theta / vth)) > top:  # as PTQ divides: W / s
        vth -= 1
    return vth, (theta / vth if vth > 0 else math.inf)
