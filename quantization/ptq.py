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

from collections.abc import Callable, Iterable

import torch

from quantization.backend import round_float, saturate
from quantization.convert import to_float_graph
from quantization.exponents import power_of_two_exponent
from quantization.layer_quantization import (  # noqa: F401  (the PTQ API, re-exported)
    SCALES,
    LayerReport,
    PTQConfig,
    QuantizationError,
    quantize_decay,
)
from quantization.network import InputFormat, QNetwork
from quantization.nodes import kind_for_float
from stllr.errors import UserError


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


def quantize_graph(specs: list, input_format: InputFormat, cfg: PTQConfig):
    """Quantize float specs (from :func:`~quantization.convert.to_float_graph`), each with
    its node kind's ``from_float`` (:mod:`quantization.nodes`).

    Returns ``(nodes, reports)``.
    """
    scales = {"input": input_format.scale()}
    nodes, reports = [], []
    for s in specs:
        made = kind_for_float(s).from_float(s, scales, cfg)
        nodes.append(made.node)
        if made.report is not None:
            reports.append(made.report)
        scales[s.name] = made.scale
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
