"""Seeded random generators and sensor noise shared by the stand-in generators.

:func:`_rng` gives every recording its own ``numpy`` generator seeded by ``(seed, dataset,
split, class, index)`` keys, so output is bit-identical for a seed; :func:`_noise` draws
background events and hot pixels.
"""

from __future__ import annotations

import zlib

import numpy as np

Rng = np.random.Generator


def _rng(seed: int, *keys) -> Rng:
    """A generator seeded by ``seed`` and string/int keys (stable across runs and OSes)."""
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(str(k).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def _noise(
    rng: Rng,
    t0: float,
    t1: float,
    width: int,
    height: int,
    rate_hz: float,
    hot: np.ndarray,
    hot_hz: float,
) -> tuple[np.ndarray, ...]:
    """Background events (uniform pixels, Poisson ``rate_hz``) and hot pixels ``[K, 2]``
    firing at ``hot_hz`` each, between ``t0`` and ``t1`` µs: ``(x, y, p, t_us)``."""
    dur_s = (t1 - t0) * 1e-6
    n_bg = rng.poisson(rate_hz * dur_s)
    xs, ys = [rng.integers(0, width, n_bg)], [rng.integers(0, height, n_bg)]
    for hx, hy in hot:
        k = rng.poisson(hot_hz * dur_s)
        xs.append(np.full(k, hx))
        ys.append(np.full(k, hy))
    x, y = np.concatenate(xs), np.concatenate(ys)
    p = rng.integers(0, 2, x.size)
    t = rng.uniform(t0, t1, x.size)
    return x, y, p, t
