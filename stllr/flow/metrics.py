"""Flow accuracy as the Spike-FlowNet protocol measures it, and flow pictures
(docs/flow.md §3).

For one window with prediction ``f`` and ground truth ``g`` ``[2, H, W]`` (pixels,
``f`` bilinearly resized to the gt's crop first) and the event mask ``E`` (≥ 1 event)::

    mask   = E ∧ finite(g) ∧ ‖g‖ > 0
    EE(x)  = ‖f(x) − g(x)‖₂
    AEE    = mean_{x ∈ mask} EE(x)
    outlier% = 100 · #{x ∈ mask : EE(x) > 3 px} / #mask

A sequence's AEE (and outlier%) is the mean over its windows with a non-empty mask;
the paper's headline is the **sum** of the four test sequences' AEEs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

OUTLIER_PX = 3.0


@dataclass(frozen=True)
class WindowError:
    """AEE and outlier % of one window (NaN when its mask is empty) and its mask size."""

    aee: float
    outlier_pct: float
    pixels: int


def eval_mask(gt: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
    """``events ∧ finite(gt) ∧ ‖gt‖ > 0`` ``[B, H, W]`` for gt ``[B, 2, H, W]``."""
    finite = torch.isfinite(gt).all(dim=1)
    mag = torch.linalg.vector_norm(torch.nan_to_num(gt), dim=1)
    return events.bool() & finite & (mag > 0)


def upsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``flow`` ``[B, 2, h, w]`` bilinearly resized to ``size`` (values are already in
    full-resolution pixels, so they are not rescaled)."""
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    return F.interpolate(flow, size=size, mode="bilinear", align_corners=False)


def window_errors(pred: torch.Tensor, gt: torch.Tensor, events: torch.Tensor) -> list[WindowError]:
    """Per-window errors for a batch: pred ``[B, 2, h, w]``, gt ``[B, 2, H, W]``,
    events ``[B, H, W]``."""
    pred = upsample_flow(pred, tuple(gt.shape[-2:]))
    mask = eval_mask(gt, events)
    ee = torch.linalg.vector_norm(pred - torch.nan_to_num(gt), dim=1)
    out = []
    for b in range(gt.shape[0]):
        m = mask[b]
        n = int(m.sum())
        if n == 0:
            out.append(WindowError(float("nan"), float("nan"), 0))
            continue
        e = ee[b][m].double()
        out.append(WindowError(float(e.mean()), float(100.0 * (e > OUTLIER_PX).double().mean()), n))
    return out


@dataclass(frozen=True)
class SequenceScore:
    """Mean AEE and outlier % over a sequence's windows with a non-empty mask."""

    name: str
    aee: float
    outlier_pct: float
    windows: int


def sequence_score(name: str, errors: list[WindowError]) -> SequenceScore:
    kept = [e for e in errors if e.pixels > 0]
    if not kept:
        return SequenceScore(name, float("nan"), float("nan"), 0)
    aee = float(np.mean([e.aee for e in kept]))
    out = float(np.mean([e.outlier_pct for e in kept]))
    return SequenceScore(name, aee, out, len(kept))


def score_table(scores: list[SequenceScore]) -> str:
    """The per-sequence table with the sums (AEE summed as the paper reports it)."""
    lines = [f"{'sequence':<16} {'AEE':>8} {'outlier%':>9} {'windows':>8}"]
    for s in scores:
        lines.append(f"{s.name:<16} {s.aee:8.3f} {s.outlier_pct:9.2f} {s.windows:8d}")
    total = sum(s.aee for s in scores)
    lines.append(f"{'sum':<16} {total:8.3f} {sum(s.outlier_pct for s in scores):9.2f}")
    return "\n".join(lines)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel picture ``[H, W, 3]`` uint8 of ``flow`` ``[2, H, W]``: hue = direction
    (0 = +x, red; counter-clockwise in image coordinates with y down), saturation 1,
    value = ‖f‖ / max_magnitude (default: the largest ‖f‖), clipped to 1."""
    import matplotlib.colors as mcolors

    fx, fy = np.nan_to_num(flow[0]), np.nan_to_num(flow[1])
    mag = np.hypot(fx, fy)
    scale = max_magnitude if max_magnitude else max(float(mag.max()), 1e-9)
    hue = (np.arctan2(-fy, fx) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.ones_like(hue), np.clip(mag / scale, 0, 1)], axis=-1)
    return np.rint(255 * mcolors.hsv_to_rgb(hsv)).astype(np.uint8)
