"""Per-input step sizes of a readout's on-device update: a diagonal preconditioner in shifts.

The readout's S-TLLR update is least-mean-squares on its inputs' pre-traces ``P``::

    ΔW[k, i] = −η · L_k[t] · P_i[t]

Its conditioning is set by the inputs' energies ``E_i = mean_t P_i[t]²``: the curvature of
the readout's loss along weight ``W[k, i]`` grows with ``E_i`` (the diagonal of the input
correlation ``E[P Pᵀ]``), so one rate η is too large for the inputs that fire often and too
small for the rare ones (the spread of ``E_i`` over the SHD stand-in's 256 hidden neurons is
several orders of magnitude). Dividing each input's step by its energy is the diagonal
(Jacobi) preconditioner of that correlation, the per-weight normalisation Adam-like
optimisers learn on the fly. On the device it is one integer shift per input::

    s_i = clip(round(log2(E_i / Ē)), −span, span)        (Ē = mean_i E_i; E_i = 0 → −span)
    ΔW[k, i] = round_stoch(−acc[k, i] · lr_mant / 2^(lr_shift + s_i))

computed once by the host from calibration samples
(:func:`quantization.trace_energy.input_energy`, :func:`input_shifts`) and held in the
spec (``LearningSpec.pre_shift``, a tuple of ``in`` small integers). An input of average
energy keeps the rate η; the rule itself is unchanged (:func:`scale_columns` multiplies
``acc[k, i]`` by ``2^(c − s_i)``, ``c = max s``, and the update shifts ``c`` more bits,
so every weight still takes one stochastic rounding). It runs inside the readout node
kind's ``learn`` (:mod:`quantization.nodes.readout`), so the emulator and the Lava process
models apply the same integers. docs/adaptation.md §3 says when it helps.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def input_shifts(energy: torch.Tensor, span: int) -> tuple[int, ...]:
    """``s_i = clip(round(log2(E_i / mean E)), −span, span)`` for ``energy`` ``[in]``
    (float, ≥ 0; an input with ``E_i = 0`` gets ``−span``, the largest step). ``span = 0``:
    no preconditioning, ``()``."""
    if span < 0:
        raise ValueError(f"span must be ≥ 0, got {span}")
    if span == 0:
        return ()
    e = energy.double().flatten()
    ref = float(e.mean())
    if not ref > 0.0:
        return tuple([0] * e.numel())
    out = []
    for v in e.tolist():
        s = -span if v <= 0.0 else round(math.log2(v / ref))
        out.append(int(min(span, max(-span, s))))
    return tuple(out)


def scale_columns(acc, shifts: tuple[int, ...]):
    """``(acc[k, i] · 2^(c − s_i), c)`` with ``c = max_i s_i``: the eligibility sums of a
    ``[K, in]`` (or 1×1-conv ``[K, C, 1, 1]``, ``C = in``) update scaled per input, in
    ``acc``'s own library (torch or numpy, int64), and the extra right shift ``c``."""
    c = max(shifts)
    gains = [1 << (c - s) for s in shifts]
    if isinstance(acc, torch.Tensor):
        g = torch.tensor(gains, dtype=acc.dtype, device=acc.device)
    else:
        g = np.asarray(gains, dtype=np.asarray(acc).dtype)
    if acc.ndim == 4:  # [K, C, 1, 1]: one gain per input channel
        g = g.reshape(-1, 1, 1)
    elif acc.shape[-1] != len(shifts):
        raise ValueError(f"{len(shifts)} input shifts for an update of shape {tuple(acc.shape)}")
    return acc * g, c
