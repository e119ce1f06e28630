"""Ground-truth flow between two image timestamps (docs/flow.md §3).

MVSEC's ``flow_dist[k]`` ``[2, H, W]`` is the displacement (pixels) of the scene point at
each pixel from ``gt_ts[k]`` to ``gt_ts[k+1]``. The flow over ``[t0, t1]`` (two image
timestamps, which fall between gt timestamps) is found as the evaluation protocol of
EV-FlowNet / Spike-FlowNet does:

* when ``[t0, t1]`` lies inside one gt interval k (shorter than it): the flow is
  ``flow_dist[k]·(t1 − t0)/(gt_ts[k+1] − gt_ts[k])``;
* otherwise each pixel's point is carried along: start at the pixel centre p, and for
  every gt interval k that overlaps ``[t0, t1]`` by a fraction φ_k of its length move
  ``p ← p + φ_k·flow_dist[k](round(p))`` (nearest pixel). A point that samples a zero
  flow or leaves the image is invalid and gets flow 0 (the evaluation mask drops it).
  The result is ``p_end − p_start``.
"""

from __future__ import annotations

import numpy as np

from stllr.errors import UserError


def _nearest(flow: np.ndarray, px: np.ndarray, py: np.ndarray):
    """``flow`` ``[2, H, W]`` at the nearest pixels of (px, py); 0 outside the image."""
    h, w = flow.shape[1:]
    ix = np.rint(px).astype(np.int64)
    iy = np.rint(py).astype(np.int64)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    fx = np.zeros_like(px)
    fy = np.zeros_like(py)
    fx[inside] = flow[0, iy[inside], ix[inside]]
    fy[inside] = flow[1, iy[inside], ix[inside]]
    return fx, fy


def flow_between(flow_dist, gt_ts: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Flow ``[2, H, W]`` (float32, pixels) from time ``t0`` to ``t1``.

    ``flow_dist`` is indexable as ``[Ngt, 2, H, W]`` (an hdf5 dataset or an array): only
    the gt frames that overlap ``[t0, t1]`` are read.
    """
    if not t1 > t0:
        raise ValueError(f"t1 must be after t0, got {t0}, {t1}")
    k = int(np.searchsorted(gt_ts, t0, side="right")) - 1
    if k < 0 or k + 1 >= len(gt_ts) or t1 > gt_ts[-1]:
        raise UserError(
            f"ground truth covers [{gt_ts[0]:.6f}, {gt_ts[-1]:.6f}] s; the window "
            f"[{t0:.6f}, {t1:.6f}] s lies outside it"
        )
    gt_dt = gt_ts[k + 1] - gt_ts[k]
    if t1 <= gt_ts[k + 1]:
        return (np.asarray(flow_dist[k], dtype=np.float64) * ((t1 - t0) / gt_dt)).astype(np.float32)
    h, w = flow_dist.shape[2:]
    py0, px0 = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = px0.copy(), py0.copy()
    valid = np.ones((h, w), dtype=bool)
    start = t0
    while start < t1:
        end = min(gt_ts[k + 1], t1)
        frac = (end - start) / (gt_ts[k + 1] - gt_ts[k])
        fx, fy = _nearest(np.asarray(flow_dist[k], dtype=np.float64), px, py)
        valid &= (fx != 0) | (fy != 0)
        px += frac * fx
        py += frac * fy
        start = end
        k += 1
    out = np.stack([px - px0, py - py0])
    out[:, ~valid] = 0.0
    return out.astype(np.float32)
