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

Where it runs on the device: a plastic node kind's ``learn``
(:mod:`quantization.nodes.spiking`, :mod:`quantization.nodes.readout`) ends with
:func:`consolidate_weights`. The node's own ``weight``/``weight_rec`` are ``W0`` (the
deployed weights: a host — the emulator, a Lava process — learns on its copy ``W`` and
never writes them back into the node), and its ``LearningSpec`` holds the schedule:
``consolidate_shift = k`` (0: off) and ``consolidate_every = T``, the pull running after
the weight update of every global step ``t`` with ``(t + 1) mod T = 0``. The host marks
a sample's last learning step by the schedule it configures: samples of ``T`` steps
streamed back to back from global step 0 (the pipeline's stream, which Lava resets every
``T`` steps) end at exactly those steps, and the learning window ends at a sample's
last step, so the pull follows the last update of every sample. The host must call
``learn`` at those steps even when it has no error to send (a zero third factor changes
no weight). Bits: ``node_stream_key(seed, t, node, STREAM_CW / STREAM_CWREC)``.
"""

from __future__ import annotations

import numpy as np
import torch

from quantization.backend import round_shift
from quantization.kernels import STREAM_CW, STREAM_CWREC, hash_uniform, node_stream_key


def consolidate(w: torch.Tensor, w0: torch.Tensor, shift: int, key: int) -> torch.Tensor:
    """``W − round_stoch((W − W0) / 2^shift)`` (int64, shape of ``w``); ``shift ≥ 1``.

    ``key``: 32-bit random key (:func:`consolidate_weights` uses the node's stream keys);
    element ``i`` of the flat weight uses bits ``hash(key, i)``.
    """
    if shift < 1:
        raise ValueError(f"consolidation shift must be ≥ 1, got {shift}")
    if w.shape != w0.shape:
        raise ValueError(f"consolidate: W {list(w.shape)} and W0 {list(w0.shape)} differ")
    w, w0 = _int64(w), _int64(w0, like=w)
    d = w - w0
    bits = min(shift, 32)
    noise = hash_uniform(d, tuple(d.shape), key, bits) << (shift - bits)
    return w - round_shift(d, shift, "stochastic", noise)


def _int64(x, like=None):
    """``x`` as int64 in the backend of ``like`` (numpy or torch; ``x``'s own if ``None``)."""
    if isinstance(like, np.ndarray) or (like is None and not isinstance(x, torch.Tensor)):
        x = x.cpu().numpy() if isinstance(x, torch.Tensor) else x
        return np.asarray(x).astype(np.int64)
    x = torch.as_tensor(x)
    return x.to(dtype=torch.int64, device=like.device if like is not None else x.device)


def due(spec, step: int) -> bool:
    """Whether ``spec`` (a ``LearningSpec``) pulls after the update of global step ``step``."""
    every = getattr(spec, "consolidate_every", 0)
    return bool(getattr(spec, "consolidate_shift", 0)) and every > 0 and (step + 1) % every == 0


def consolidate_weights(node, weights, step: int, index: int):
    """A plastic kind's ``learn`` tail: ``weights`` (a ``SynapseWeights``, the host's ``W``)
    pulled toward the node's deployed ``weight``/``weight_rec`` when :func:`due` at global
    step ``step`` (node position ``index``), else unchanged. Results keep ``W``'s dtype."""
    spec = node.learning
    if not due(spec, step):
        return weights
    k = spec.consolidate_shift
    key = node_stream_key(spec.seed, step, index, STREAM_CW)
    w = _like(consolidate(weights.w, node.weight, k, key), weights.w)
    w_rec = weights.w_rec
    if w_rec is not None and getattr(node, "weight_rec", None) is not None:
        key = node_stream_key(spec.seed, step, index, STREAM_CWREC)
        w_rec = _like(consolidate(w_rec, node.weight_rec, k, key), w_rec)
    return weights._replace(w=w, w_rec=w_rec)


def _like(x, ref):
    return x.to(ref.dtype) if isinstance(x, torch.Tensor) else x.astype(ref.dtype)


def schedule_consolidation(qnet, shift: int, every: int):
    """``qnet`` with every plastic node's ``LearningSpec`` set to pull ``2^−shift`` of the
    way back to its deployed weights after every ``every``-th global step (``shift`` 0: off)."""
    import dataclasses

    if shift and every < 1:
        raise ValueError(f"consolidation needs a period of ≥ 1 step, got {every}")
    for n in qnet.nodes:
        spec = getattr(n, "learning", None)
        if spec is not None:
            spec = dataclasses.replace(spec, consolidate_shift=shift, consolidate_every=every)
            qnet = qnet.replace_node(dataclasses.replace(n, learning=spec))
    return qnet
