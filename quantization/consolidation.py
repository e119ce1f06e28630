"""Weight consolidation toward the deployed weights: an integer pull, run on the device.

On-device learning forgets the original condition because nothing holds the plastic
weights near the ones that were deployed for it. Consolidation keeps a copy ``W0`` of the
deployed integer weights and, once per consolidation period (the host's choice: after
every learned sample in :mod:`pipeline.adaptation`), pulls every plastic weight a fixed
fraction ``2^−k`` of the way back::

    d   = W − W0                                   (integer weight LSBs)
    W' = W − round_stoch(d / 2^k)                  (``(d + r) >> k``, r uniform in [0, 2^k))

It is the integer form of an L2 penalty ``γ/2·‖W − W0‖²`` stepped with rate 1 (the
"weight consolidation toward the deployed weights" of edge-learning papers, with one
importance for every weight): ``E[W'] − W0 = (1 − 2^−k)·d``. Stochastic rounding keeps the
pull unbiased when ``|d| < 2^k`` (a plain shift would never move a weight closer than
``2^k`` LSBs), and it never overshoots: ``W'`` lies between ``W0`` and ``W``. The random
bits are :func:`quantization.kernels.hash_uniform` of ``(seed, step, stream)``, so a
numpy process model draws the same bits as torch (docs/fixed_point.md, "stochastic").

Where it hooks on the device: a plastic node keeps ``W0`` beside ``W`` and runs
:func:`consolidate` on its weights (and recurrent weights) after the weight update of the
step at which the host asks for it — the last step of a sample's learning window in
the pipeline. Until the node kinds run it themselves, :mod:`pipeline.learners` calls it
between samples on the emulator's weights.
"""

from __future__ import annotations

import torch

from quantization.backend import round_shift
from quantization.kernels import hash_uniform, stream_key

#: random stream of the consolidation pull (distinct from the learning streams)
STREAM_CONSOLIDATE = 0x5C0


def consolidate(w: torch.Tensor, w0: torch.Tensor, shift: int, key: int) -> torch.Tensor:
    """``W − round_stoch((W − W0) / 2^shift)`` (int64, shape of ``w``); ``shift ≥ 1``.

    ``key``: 32-bit random key (:func:`consolidation_key`); element ``i`` of the flat
    weight uses bits ``hash(key, i)``.
    """
    if shift < 1:
        raise ValueError(f"consolidation shift must be ≥ 1, got {shift}")
    if w.shape != w0.shape:
        raise ValueError(f"consolidate: W {list(w.shape)} and W0 {list(w0.shape)} differ")
    d = w.to(torch.int64) - w0.to(torch.int64)
    bits = min(shift, 32)
    noise = hash_uniform(d, tuple(d.shape), key, bits) << (shift - bits)
    return w.to(torch.int64) - round_shift(d, shift, "stochastic", noise)


def consolidation_key(seed: int, sample: int, node_index: int, which: int = 0) -> int:
    """Key of the pull after sample ``sample`` for node ``node_index`` (``which``: 0 for the
    feed-forward weights, 1 for the recurrent ones)."""
    return stream_key(seed, sample, STREAM_CONSOLIDATE + 2 * node_index + which)
