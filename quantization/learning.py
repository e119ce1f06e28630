"""Make layers of a quantized network plastic: calibrated integer S-TLLR constants.

:func:`attach_learning` gives the named nodes a
:class:`~quantization.learning_formats.LearningSpec`. The trace formats are
calibrated on a few input batches: the emulator runs the network with wide,
exact traces and the largest pre/post trace values set ``p_frac``/``q_frac``
(so the ``trace_bits``-bit traces rarely saturate). The third factor's scale comes
from ``signal_max``, the largest |learning signal| the user expects (1.0 for
``softmax − one-hot`` errors).

Units: the on-device rule updates the integer weights of ``W_eff = Ŵ·s_in`` (the
input scale folded in) with the layer's integer input; ``lr`` is the float learning
rate η of that parametrisation (ΔW_eff = −η · e · L, docs/rule.md §5).

A current-based layer (``du < 4095``) holds ``W_node = κ·Ŵ`` with ``κ = 1 − α =
dv/4096`` (one per layer), and learns the float rule of docs/neurons.md §3b on ``Ŵ``:
``ΔW_node = κ·ΔŴ = −η·κ·(α_pre·κ·Ψ·P + α_post·Q[t−1]·x)·L``. The spec's α's are
therefore ``α_pre·κ²`` and ``α_post·κ`` (:func:`current_gains`), and its current traces
``P^i`` decay by the node's λ_syn (docs/fixed_point.md, "Current-based layers").

An AdLIF layer (``AdaptiveLayer``) has one ``κ_i = dv_i/4096`` per neuron: the layer's
largest, ``κ_m``, goes into the α's as above (``α_pre·κ_m²``, ``α_post·κ_m``) and the rest
into the node's per-neuron 12-bit gains (``quantization.nodes.adaptive.post_gains``), whose
12 fractional bits the spec takes out of the learning rate (``gain_frac = 12``;
docs/fixed_point.md, "Adaptive layers").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch

from quantization.backend import round_float, saturate
from quantization.emulator import IntegerEmulator
from quantization.formats import DECAY_UNITY, DU_NONE, SIGNAL
from quantization.learning_formats import LearningSpec, make_learning_spec
from quantization.network import AdaptiveLayer, QNetwork, Readout, SpikingLayer
from quantization.nodes.adaptive import GAIN_FRAC, kappa_max
from quantization.ptq import quantize_input

_WIDE = 40  # bits of the exact calibration traces
_CURRENT_FRAC = 16  # their fractional bits for a current-based node (P, P^i)


def _current_based(n) -> bool:
    """A node with current traces: the CuLIF, or the CuAdLIF (an AdaptiveLayer with du)."""
    if isinstance(n, AdaptiveLayer):
        return n.current_based
    return isinstance(n, SpikingLayer) and n.du != DU_NONE


def current_gains(dv: int) -> tuple[float, float]:
    """``(κ², κ)`` with ``κ = dv/4096``: what a current-based layer's α_pre and α_post are
    multiplied by (module docstring)."""
    kappa = dv / DECAY_UNITY
    return kappa * kappa, kappa


def _spiking(n) -> bool:
    """A node with a post-synaptic trace (Ψ, Q): a spiking or an AdLIF layer."""
    return isinstance(n, (SpikingLayer, AdaptiveLayer))


def _node_factors(n) -> tuple[float, float, float, float]:
    """``(λ_post, λ_pre, α_post, α_pre)`` of the integer rule (current-based and AdLIF: κ,
    or the AdLIF layer's largest κ_m, folded in)."""
    if not _spiking(n):
        return (0.0, n.lambda_pre, 0.0, 1.0)
    lam_post, lam_pre, a_post, a_pre = n.factors
    if isinstance(n, AdaptiveLayer):
        k = kappa_max(n)
        return lam_post, lam_pre, a_post * k, a_pre * k * k
    if _current_based(n):
        k_pre, k_post = current_gains(n.dv)
        return lam_post, lam_pre, a_post * k_post, a_pre * k_pre
    return lam_post, lam_pre, a_post, a_pre


def _gain_frac(n) -> int:
    return GAIN_FRAC if isinstance(n, AdaptiveLayer) else 0


def _lambda_syn(n) -> float | None:
    return n.current_trace_decay if _current_based(n) else None


def _provisional(n, weight_bits: int) -> LearningSpec:
    lam_post, lam_pre, a_post, a_pre = _node_factors(n)
    psi_frac = n.psi.frac if _spiking(n) else 0
    spec = make_learning_spec(
        lambda_pre=lam_pre, lambda_post=lam_post, alpha_pre=a_pre, alpha_post=a_post,
        lr=1.0, psi_frac=psi_frac, weight_exp=n.weight_exp, weight_bits=weight_bits,
        p_max=1.0, q_max=1.0, signal_max=1.0, lambda_syn=_lambda_syn(n),
        gain_frac=_gain_frac(n),
    )  # fmt: skip
    # a current-based node's traces chain two decays: fractional bits keep them near exact
    frac = 0 if spec.pi_frac is None else _CURRENT_FRAC
    return dataclasses.replace(
        spec, p_frac=frac, q_frac=psi_frac, trace_bits=_WIDE, trace_rounding="nearest",
        pi_frac=None if spec.pi_frac is None else frac,
    )  # fmt: skip


def trace_ranges(qnet: QNetwork, names: list[str], frames: Iterable[torch.Tensor]) -> dict:
    """Largest pre (P), post (Q) and current (P^i, R^i: ``pi_max``) trace values, in float
    units, per named node."""
    provisional = qnet
    for name in names:
        n = qnet.node(name)
        provisional = provisional.replace_node(
            dataclasses.replace(n, learning=_provisional(n, n.weight_bits))
        )
    emu = IntegerEmulator(provisional)
    out = {name: {"p_max": 0.0, "q_max": 0.0, "pi_max": 0.0} for name in names}
    for x in frames:
        xi = quantize_input(x, qnet.input_format)
        emu.reset()
        for t in range(xi.shape[0]):
            emu.step(xi[t])
            for name in names:
                st = emu.state[name].traces
                n = provisional.node(name)
                p_lsb = 2.0**-n.learning.p_frac
                out[name]["p_max"] = max(out[name]["p_max"], float(st.p.max()) * p_lsb)
                if st.r is not None:
                    out[name]["p_max"] = max(out[name]["p_max"], float(st.r.max()) * p_lsb)
                if st.q is not None:
                    q = float(st.q.max()) / 2**n.psi.frac
                    out[name]["q_max"] = max(out[name]["q_max"], q)
                for current in (st.pi, st.ri):
                    if current is not None:
                        pi = float(current.max()) * 2.0**-n.learning.pi_frac
                        out[name]["pi_max"] = max(out[name]["pi_max"], pi)
    return out


def attach_learning(
    qnet: QNetwork,
    names: list[str],
    calibration: Iterable[torch.Tensor],
    lr: float,
    signal_max: float = 1.0,
    trace_bits: int = 7,
    trace_rounding: str = "stochastic",
    seed: int = 0,
    weight_bits: int | None = None,
) -> QNetwork:
    """A copy of ``qnet`` whose nodes ``names`` learn on device (see module doc).

    ``weight_bits`` sets the plastic weights' width (default: the inference width).
    """
    for name in names:
        if not isinstance(qnet.node(name), (SpikingLayer, AdaptiveLayer, Readout)):
            raise ValueError(f"node {name!r} has no weights to learn")
    ranges = trace_ranges(qnet, names, list(calibration))
    out = qnet
    for name in names:
        n = qnet.node(name)
        lam_post, lam_pre, a_post, a_pre = _node_factors(n)
        spec = make_learning_spec(
            lambda_pre=lam_pre, lambda_post=lam_post, alpha_pre=a_pre, alpha_post=a_post,
            # a weight LSB is 2^e / gain (PTQ's non-power-of-two scale): Δm = lr·gain·ΔW/2^e
            lr=lr * getattr(n, "gain", 1.0),
            psi_frac=n.psi.frac if _spiking(n) else 0,
            weight_exp=n.weight_exp, weight_bits=weight_bits or n.weight_bits,
            p_max=ranges[name]["p_max"], q_max=ranges[name]["q_max"], signal_max=signal_max,
            trace_bits=trace_bits, trace_rounding=trace_rounding, seed=seed,
            lambda_syn=_lambda_syn(n), pi_max=ranges[name]["pi_max"], gain_frac=_gain_frac(n),
        )  # fmt: skip
        out = out.replace_node(dataclasses.replace(n, learning=spec))
    return out


def quantize_signal(signal: torch.Tensor, spec: LearningSpec) -> torch.Tensor:
    """Float learning signal → 8-bit signed integers at the spec's scale (nearest, saturated)."""
    m = round_float(signal.double() / 2.0**spec.l_exp, SIGNAL.rule)
    return saturate(m, SIGNAL.min_int, SIGNAL.max_int).to(torch.int64)
