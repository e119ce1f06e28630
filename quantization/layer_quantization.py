"""Per-layer post-training quantization math (the formulas of :mod:`quantization.ptq`),
shared by the node kinds' ``from_float`` (:mod:`quantization.nodes`).

``weight_scale``: range ``r``, nominal exponent ``e``, scale ``s`` and threshold mantissa;
``quantize_weights``: ``m = clip(round(W / s), ±2^(bits−1))`` with its report;
``quantize_bias``: ``round(b / s · 64)`` as ``bias_mant << bias_exp`` (13-bit mantissa);
``quantize_threshold``: ``round(θ / s)`` in ``1 … VTH_MAX``; ``quantize_decay``:
``round((1 − γ)·4096)``. Errors name the layer and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from quantization.backend import round_float, saturate
from quantization.exponents import (
    calibrated_range,
    max_mantissa,
    power_of_two_exponent,
    threshold_scale,
)
from quantization.formats import (
    ACT_SHIFT,
    BIAS_MANT_MAX,
    DECAY_UNITY,
    DV_MAX,
    STATE_MAX,
    VTH_MAX,
)
from stllr.errors import UserError

SCALES = ("threshold", "pow2")


class QuantizationError(ValueError):
    """A quantity that the chosen formats cannot represent (names layer and value)."""


@dataclass(frozen=True)
class PTQConfig:
    """Choices of post-training quantization.

    ``weight_exps`` fixes a layer's exponent by name (instead of the calibrated one; that
    layer then uses ``s = 2^e``); weights that then overflow saturate and are counted, like
    percentile clipping. ``scale``: ``"threshold"`` (spiking layers at the exact-threshold
    scale, see the module doc) or ``"pow2"`` (every layer at ``s = 2^e``, the format QAT
    trains for).
    """

    weight_bits: int = 8
    percentile: float = 100.0
    input_bits: int = 8
    weight_exps: dict = field(default_factory=dict)
    scale: str = "pow2"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise UserError(f"PTQConfig.scale must be one of {SCALES}, got {self.scale!r}")


@dataclass
class LayerReport:
    """What quantization did to one layer (for ``stllr quantize``'s JSON)."""

    name: str
    weight_exp: int
    range_abs: float
    clipped: int
    total: int
    rms_error: float  # RMS of (dequantized − float) weights, float units
    rms_weight: float
    vth: int | None = None
    dv: int | None = None
    bias_exp: int | None = None
    gain: float = 1.0  # 2^weight_exp / s (1: a power-of-two scale)

    def as_dict(self) -> dict:
        return dict(vars(self))


def weight_scale(name, tensors, cfg: PTQConfig, theta: float | None):
    """``(r, e, s, vth)``: range, nominal exponent, scale and (spiking) threshold mantissa."""
    r = max(calibrated_range(t, cfg.percentile) for t in tensors)
    if name in cfg.weight_exps:
        e = cfg.weight_exps[name]
    else:
        e = power_of_two_exponent(r, cfg.weight_bits)
    if theta is None or cfg.scale == "pow2" or name in cfg.weight_exps:
        return r, e, 2.0**e, None if theta is None else quantize_threshold(name, theta, 2.0**e, e)
    vth, s = threshold_scale(r, theta, cfg.weight_bits, VTH_MAX)
    if vth < 1:
        raise QuantizationError(
            f"layer {name}: weight range {r:.4g} exceeds {max_mantissa(cfg.weight_bits)} LSBs "
            f"at the coarsest scale that represents threshold {theta} (vth = 1)"
        )
    e = max(e, math.ceil(math.log2(s)))  # nominal exponent: 2^e ≥ s, so gain ≥ 1
    return r, e, s, vth


def quantize_weights(name, tensors, cfg: PTQConfig, theta: float | None = None):
    r, e, s, vth = weight_scale(name, tensors, cfg, theta)
    top = max_mantissa(cfg.weight_bits)
    out, clipped, total, err2, w2 = [], 0, 0, 0.0, 0.0
    for t in tensors:
        m = round_float(t.double() / s, "nearest_even")
        over = (m > top) | (m < -top - 1)
        m = saturate(m, -top - 1, top).to(torch.int64)
        clipped += int(over.sum())
        total += m.numel()
        err2 += float(((m.double() * s - t.double()) ** 2).sum())
        w2 += float((t.double() ** 2).sum())
        out.append(m)
    report = LayerReport(name, e, r, clipped, total, math.sqrt(err2 / total), math.sqrt(w2 / total))
    report.gain = 2.0**e / s
    report.vth = vth
    return out, e, s, report


def quantize_bias(name: str, bias: torch.Tensor | None, s: float, e: int):
    if bias is None:
        return None, 0
    b_v = bias.double() / s * 2**ACT_SHIFT
    big = float(b_v.abs().max()) if b_v.numel() else 0.0
    if big > STATE_MAX:
        raise QuantizationError(
            f"layer {name}: bias {float(bias.abs().max()):.4g} is {big:.3g} membrane LSBs, "
            f"beyond the 24-bit state (weight exponent {e})"
        )
    bias_exp = 0
    while round_float(big / 2.0**bias_exp, "nearest_even") > BIAS_MANT_MAX:
        bias_exp += 1
    return round_float(b_v / 2.0**bias_exp, "nearest_even").to(torch.int64), bias_exp


def quantize_threshold(name: str, theta: float, s: float, e: int) -> int:
    vth = round_float(theta / s, "nearest_even")
    if vth < 1 or vth > VTH_MAX:
        raise QuantizationError(
            f"layer {name}: threshold {theta} is {theta / s:.4g} weight LSBs at weight "
            f"exponent {e}; the 17-bit threshold needs 1 … {VTH_MAX}"
        )
    return vth


def quantize_decay(gamma: float, allow_full: bool = False) -> int:
    """12-bit decay of the leak ``γ``: ``round((1 − γ)·4096)``, at most ``DV_MAX`` (a readout:
    ``DECAY_UNITY``, no memory)."""
    dv = round_float((1.0 - gamma) * DECAY_UNITY, "nearest_even")
    return min(dv, DECAY_UNITY if allow_full else DV_MAX)


def shifts_to_finest(name: str, inputs, scales: dict) -> tuple[tuple[int, ...], float]:
    """``(shifts, finest)``: the left shifts that put every input on the finest of their
    float scales (``scale_i = finest · 2^shift_i``), for nodes that add or concatenate
    their inputs; a :class:`QuantizationError` if two scales are not powers of two apart."""
    finest = min(scales[i] for i in inputs)
    shifts = tuple(round(math.log2(scales[i] / finest)) for i in inputs)
    if any(scales[i] != finest * 2.0**k for i, k in zip(inputs, shifts, strict=True)):
        mine = {i: scales[i] for i in inputs}
        raise QuantizationError(
            f"node {name}: input scales {mine} differ by a non-power-of-two factor"
        )
    return shifts, finest
