"""Post-training quantization: float layer graph → :class:`~quantization.network.QNetwork`.

Per layer (weights ``W_eff = Ŵ · s_in``, the input's scale folded in)::

    r        = max(range(W_eff), range(W_rec))     range: max |·| or a percentile of |·|
    e        = power_of_two_exponent(r, bits)
    s        = 2^e                                  default (``scale="pow2"``), readouts,
                                                    fixed exponents
             = θ_eff / vth, vth = threshold_scale(r, θ_eff, bits)     spiking layers with
                                                                      ``scale="threshold"``
    m        = clip(round(W_eff / s), ±2^(bits−1))                    weight mantissa
    vth      = round(θ_eff / s)                                       threshold (exact at the
                                                                      "threshold" scale)
    dv       = round((1 − γ)·4096)                                    12-bit decay (toward zero)
    bias     = round(b / s · 64) as bias_mant << bias_exp             13-bit mantissa, finest exp

A spiking layer's spikes do not change when its weights, bias and threshold are scaled
together, and nothing on the chip applies ``s``, so its scale need not be a power of two.
The option ``scale="threshold"`` picks the ``s`` at which the threshold is an exact
integer and the largest weight uses as much of the mantissa range as that allows: a
power of two leaves up to one bit of the range unused, and rounding ``θ/2^e`` moves every
neuron's threshold by up to half a weight LSB (measured on the VGG-9 stand-ins: 8-bit
threshold rounding alone changes 19 % of the float model's Gesture predictions). The layer
keeps the power-of-two ``e`` as its nominal exponent and records ``gain = 2^e / s`` (its
integers are those of the spike-equivalent float layer scaled by ``gain``); Ψ's table is
built at the true membrane LSB ``s / 64``. Readouts keep ``s = 2^e`` (their state is the
logit, read at ``2^e / 64``). It is not the default: on the stand-ins it met the 1-point
target on fewer tasks than ``pow2`` (docs/decisions.md, "PTQ scale of spiking layers") and
its full-range weights leave on-device learning no headroom.

Errors name the layer and the value when a quantity cannot be represented (a
threshold that rounds to 0 or exceeds 17 bits; a bias beyond 24 bits). Weights beyond
the range exist only when the user asked for clipping (``percentile < 100``); their
count is reported per layer.

The input is calibrated on a few batches: integral non-negative frames (event counts)
stay integers; anything else gets a power-of-two scale (unsigned when non-negative).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from quantization.backend import round_float, saturate
from quantization.convert import FloatGlobalPool, FloatReadout, FloatSpiking, to_float_graph
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
from quantization.learning_formats import psi_table
from quantization.network import (
    Add,
    GlobalSumPool,
    InputFormat,
    Pool,
    QNetwork,
    Readout,
    SpikingLayer,
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


def calibrate_input(frames: Iterable[torch.Tensor], bits: int = 8) -> InputFormat:
    """The input format from calibration frames ``[T, B, ...]`` (see module doc). A batch
    holding NaN or ±inf raises :class:`~stllr.errors.UserError` (NaN would be skipped by
    the maxima and give a meaningless format)."""
    x_max, x_min, integral = 0.0, 0.0, True
    for i, x in enumerate(frames):
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise UserError(
                f"PTQ calibration: batch {i} holds NaN or inf; calibration frames must be finite"
            )
        x_max = max(x_max, float(x.max()))
        x_min = min(x_min, float(x.min()))
        integral = integral and bool((x == torch.round(x)).all())
    nonneg = x_min >= 0
    if integral and nonneg and x_max <= (1 << bits) - 1:
        return InputFormat(exp=0, lo=0, hi=(1 << bits) - 1)
    r = max(abs(x_max), abs(x_min))
    if nonneg:
        exp = power_of_two_exponent(r, bits + 1)
        return InputFormat(exp=exp, lo=0, hi=(1 << bits) - 1)
    exp = power_of_two_exponent(r, bits)
    return InputFormat(exp=exp, lo=-(1 << (bits - 1)), hi=(1 << (bits - 1)) - 1)


def quantize_input(x: torch.Tensor, fmt: InputFormat, what: str = "quantize_input") -> torch.Tensor:
    """``clip(round(x / 2^exp), lo, hi)`` as int64 (dividing by a power of two is exact in
    ``x``'s own float dtype, so no wider copy is made). NaN, which has no integer, raises
    :class:`~stllr.errors.UserError` naming ``what``; ±inf saturate like any large value."""
    if x.is_floating_point() and bool(x.isnan().any()):
        raise UserError(f"{what}: NaN in the input frames; expected finite values")
    y = x if fmt.exp == 0 else x / fmt.scale()
    return saturate(round_float(y, "nearest_even"), fmt.lo, fmt.hi).to(torch.int64)


def _scale(name, tensors, cfg: PTQConfig, theta: float | None):
    """``(r, e, s, vth)``: range, nominal exponent, scale and (spiking) threshold mantissa."""
    r = max(calibrated_range(t, cfg.percentile) for t in tensors)
    if name in cfg.weight_exps:
        e = cfg.weight_exps[name]
    else:
        e = power_of_two_exponent(r, cfg.weight_bits)
    if theta is None or cfg.scale == "pow2" or name in cfg.weight_exps:
        return r, e, 2.0**e, None if theta is None else _threshold(name, theta, 2.0**e, e)
    vth, s = threshold_scale(r, theta, cfg.weight_bits, VTH_MAX)
    if vth < 1:
        raise QuantizationError(
            f"layer {name}: weight range {r:.4g} exceeds {max_mantissa(cfg.weight_bits)} LSBs "
            f"at the coarsest scale that represents threshold {theta} (vth = 1)"
        )
    e = max(e, math.ceil(math.log2(s)))  # nominal exponent: 2^e ≥ s, so gain ≥ 1
    return r, e, s, vth


def _weights(name, tensors, cfg: PTQConfig, theta: float | None = None):
    r, e, s, vth = _scale(name, tensors, cfg, theta)
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


def _bias(name: str, bias: torch.Tensor | None, s: float, e: int):
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


def _threshold(name: str, theta: float, s: float, e: int) -> int:
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


def quantize_graph(specs: list, input_format: InputFormat, cfg: PTQConfig):
    """Quantize float specs (from :func:`~quantization.convert.to_float_graph`).

    Returns ``(nodes, reports)``.
    """
    scale = {"input": input_format.scale()}
    nodes, reports = [], []
    for s in specs:
        s_in = scale[s.inputs[0]]
        if isinstance(s, FloatSpiking):
            tensors = [s.weight * s_in] + ([s.weight_rec] if s.weight_rec is not None else [])
            ms, e, w_lsb, rep = _weights(s.name, tensors, cfg, s.lif.theta_eff)
            bias, bias_exp = _bias(s.name, s.bias, w_lsb, e)
            vth = rep.vth
            dv = quantize_decay(s.lif.gamma, allow_full=False)
            rep.dv, rep.bias_exp = dv, bias_exp
            nodes.append(
                SpikingLayer(
                    s.name,
                    s.inputs,
                    s.kind,
                    ms[0],
                    e,
                    dv,
                    vth,
                    s.lif.reset,
                    bias,
                    bias_exp,
                    ms[1] if len(ms) > 1 else None,
                    s.stride,
                    s.padding,
                    s.dilation,
                    s.groups,
                    cfg.weight_bits,
                    psi_table(s.psi, w_lsb / 2**ACT_SHIFT),
                    tuple(s.factors.as_list()),
                    gain=rep.gain,
                )  # fmt: skip
            )
            reports.append(rep)
            scale[s.name] = 1.0
        elif isinstance(s, FloatReadout):
            ms, e, w_lsb, rep = _weights(s.name, [s.weight * s_in], cfg)
            bias, bias_exp = _bias(s.name, s.bias, w_lsb, e)
            dv = quantize_decay(s.gamma, allow_full=True)
            rep.dv, rep.bias_exp = dv, bias_exp
            nodes.append(
                Readout(
                    s.name, s.inputs, ms[0], e, dv, bias, bias_exp, cfg.weight_bits, s.lambda_pre
                )  # fmt: skip
            )
            reports.append(rep)
            scale[s.name] = 2.0**e / 2**ACT_SHIFT
        elif isinstance(s, Pool):
            nodes.append(s)
            scale[s.name] = s_in / (s.kernel**2 if s.mode == "sum" else 1)
        elif isinstance(s, FloatGlobalPool):
            nodes.append(GlobalSumPool(s.name, s.inputs))
            scale[s.name] = s_in / s.positions
        elif isinstance(s, Add):
            finest = min(scale[i] for i in s.inputs)
            shifts = tuple(round(math.log2(scale[i] / finest)) for i in s.inputs)
            if any(scale[i] != finest * 2.0**k for i, k in zip(s.inputs, shifts, strict=True)):
                scales = {i: scale[i] for i in s.inputs}
                raise QuantizationError(
                    f"node {s.name}: input scales {scales} differ by a non-power-of-two factor"
                )
            nodes.append(Add(s.name, s.inputs, shifts if any(shifts) else ()))
            scale[s.name] = finest
        else:
            raise TypeError(f"quantize_graph: no quantizer for {type(s).__name__} ({s.name})")
    return nodes, reports


def quantize_model(
    model,
    calibration: Iterable[torch.Tensor],
    cfg: PTQConfig | None = None,
    factors=None,
    log: Callable[[str], None] | None = None,
):
    """PTQ of a float task model. ``calibration``: a few input batches ``[T, B, ...]``.

    Returns ``(QNetwork, [LayerReport])``.
    """
    cfg = cfg or PTQConfig()
    frames = list(calibration)
    if not frames:
        raise ValueError("quantize_model: calibration needs at least one input batch")
    fmt = calibrate_input(frames, cfg.input_bits)
    specs = to_float_graph(model, factors)
    nodes, reports = quantize_graph(specs, fmt, cfg)
    for r in reports:
        if r.clipped and log is not None:
            log(f"{r.name}: {r.clipped}/{r.total} weights saturated at exponent {r.weight_exp}")
    qnet = QNetwork(
        nodes=tuple(nodes),
        input_shape=tuple(model.input_shape),
        num_classes=model.num_classes,
        input_format=fmt,
        meta={
            "model_class": type(model).__name__,
            "weight_bits": cfg.weight_bits,
            "percentile": cfg.percentile,
            "scale": cfg.scale,
        },  # fmt: skip
    )
    return qnet, reports
