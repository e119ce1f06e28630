"""Paired statistics of an adaptation: what changed on the same samples, and its spread.

Before and after adaptation the same evaluation samples are scored, so the change in
accuracy is a paired difference. With ``c_i ∈ {0, 1}`` sample i's correctness::

    d_i   = c_after_i − c_before_i                        (−1, 0 or +1)
    Δ     = 100 · mean(d)                                 (points)
    SE(Δ) = 100 · std(d, ddof=1) / √n                     (paired standard error)

``gained``/``lost`` count the samples that went from wrong to right and from right to
wrong (``Δ = 100·(gained − lost)/n``). A paired SE is much smaller than the SE of two
independent accuracies when most samples keep their answer, which is what lets a few
hundred samples resolve a change of a few points.

Over seeds (independent runs) a figure is reported as mean ± std (ddof = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch


class PairedChange(NamedTuple):
    """Accuracy before and after on the same ``n`` samples (percent, points)."""

    n: int
    before: float
    after: float
    delta: float
    se: float
    gained: int
    lost: int

    def as_dict(self) -> dict:
        return self._asdict()


def paired_change(pred_before, pred_after, labels) -> PairedChange:
    """:class:`PairedChange` of two prediction vectors ``[N]`` against ``labels`` ``[N]``."""
    pb, pa, y = (torch.as_tensor(v) for v in (pred_before, pred_after, labels))
    if not (pb.shape == pa.shape == y.shape) or pb.dim() != 1:
        raise ValueError(
            f"paired_change needs three [N] vectors, got {list(pb.shape)}, {list(pa.shape)}, "
            f"{list(y.shape)}"
        )
    n = int(y.numel())
    if n == 0:
        raise ValueError("paired_change needs at least one sample")
    cb, ca = (pb == y).double(), (pa == y).double()
    d = ca - cb
    se = 100.0 * float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    return PairedChange(
        n=n,
        before=100.0 * float(cb.mean()),
        after=100.0 * float(ca.mean()),
        delta=100.0 * float(d.mean()),
        se=se,
        gained=int((d > 0).sum()),
        lost=int((d < 0).sum()),
    )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, std with ddof = 1)``; the std of one value is 0."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_std needs at least one value")
    m = sum(v) / len(v)
    if len(v) == 1:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def gained_lost(shifted: PairedChange, original: PairedChange) -> str:
    """One sentence on what an adaptation gained (shifted condition) and lost (original)."""

    def part(c: PairedChange) -> str:
        return (
            f"{c.before:.1f}% → {c.after:.1f}% ({c.delta:+.1f} ± {c.se:.1f} points, paired SE; "
            f"{c.gained} samples gained, {c.lost} lost of {c.n})"
        )

    return f"shifted condition {part(shifted)}; original condition {part(original)}"
