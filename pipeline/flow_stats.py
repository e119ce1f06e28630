"""Paired statistics of a flow adaptation: the change of each window's AEE, and its spread.

Before and after adaptation the same test windows are scored (docs/flow.md §3), so the
change is a paired difference, as :mod:`pipeline.adapt_stats` does for accuracy. With
``e_i`` window i's AEE (px) over the n windows whose evaluation mask is non-empty both
times::

    d_i   = e_after_i − e_before_i                       (px; < 0: better)
    Δ     = mean(d)
    SE(Δ) = std(d, ddof=1) / √n                          (paired standard error)

``better``/``worse`` count the windows whose AEE fell/rose. The summed AEE of the
protocol (a sequence's mean, summed over sequences) is reported beside it; it weighs
every sequence equally, Δ every window.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class PairedAEE(NamedTuple):
    """Mean window AEE before and after on the same ``n`` windows (px)."""

    n: int
    before: float
    after: float
    delta: float
    se: float
    better: int
    worse: int

    def as_dict(self) -> dict:
        return self._asdict()


def paired_aee_change(before: list[float], after: list[float]) -> PairedAEE:
    """:class:`PairedAEE` of two per-window AEE lists of equal length (NaN: empty mask,
    left out when either side is NaN)."""
    if len(before) != len(after):
        raise ValueError(f"paired_aee_change needs equal lengths, got {len(before)}, {len(after)}")
    pairs = [(b, a) for b, a in zip(before, after, strict=True)
             if not (math.isnan(b) or math.isnan(a))]  # fmt: skip
    n = len(pairs)
    if n == 0:
        raise ValueError("paired_aee_change needs at least one window with a non-empty mask")
    d = [a - b for b, a in pairs]
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) / math.sqrt(n) if n > 1 else 0.0
    return PairedAEE(
        n=n,
        before=sum(b for b, _ in pairs) / n,
        after=sum(a for _, a in pairs) / n,
        delta=mean,
        se=se,
        better=sum(1 for x in d if x < 0),
        worse=sum(1 for x in d if x > 0),
    )


def pooled(per_sequence: dict) -> list[float]:
    """Every window's AEE of ``{sequence: [AEE, …]}``, sequences in order."""
    return [e for name in per_sequence for e in per_sequence[name]]
