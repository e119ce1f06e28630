"""Flow losses (docs/flow.md §4). Flows are ``[B, 2, h, w]`` (x, y) in pixels of the
**full** crop, at any of the network's scales; images ``[B, 1, H, W]``.

Warping: ``warp(I, f)(x) = I(x + f(x)/r)`` sampled bilinearly at scale r = H/h (the image
resized to the flow's grid first), samples outside the image 0 (``grid_sample`` with
``align_corners=True``: pixel centres at integer coordinates).

Self-supervised loss over the scales s = 1…S (finest first)::

    photo_s  = Σ_pixels ρ(warp(I₁, f_s) − I₀),     ρ(e) = (e² + 10⁻⁶)^0.45   (Charbonnier)
    smooth_s = mean_pixels (|∂²f_s/∂x²| + |∂²f_s/∂y²|)   (central second differences)
    L = (1/S)·Σ_s photo_s + λ_smooth · Σ_s 2^{−(s−1)}·smooth_s

with λ_smooth = 10 for dt = 1 and 1 for dt = 4; the sum over pixels is averaged over the
batch. The supervised loss (stand-in, where the flow is known everywhere) is
``Σ_s 2^{−(s−1)}·mean_pixels ‖f_s − pool_s(f_gt)‖`` with ``pool_s`` the average over the
r × r blocks of the gt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CHARBONNIER_EPS2 = 1e-6
CHARBONNIER_ALPHA = 0.45


def smooth_weight(dt: int) -> float:
    """λ_smooth: 10 for dt = 1, 1 for dt = 4 (and any other dt)."""
    return 10.0 if dt == 1 else 1.0


def charbonnier(e: torch.Tensor) -> torch.Tensor:
    """``(e² + 10⁻⁶)^0.45`` element-wise."""
    return (e * e + CHARBONNIER_EPS2) ** CHARBONNIER_ALPHA


def resize_image(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``img`` ``[B, C, H, W]`` at ``size`` (area average when shrinking by an integer
    factor, bilinear otherwise)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    h, w = img.shape[-2:]
    if h % size[0] == 0 and w % size[1] == 0:
        return F.avg_pool2d(img, (h // size[0], w // size[1]))
    return F.interpolate(img, size=size, mode="bilinear", align_corners=True)


def warp(img: torch.Tensor, flow: torch.Tensor, full_size: int | None = None) -> torch.Tensor:
    """``img(x + f(x)/r)`` on the flow's grid (module doc); ``img`` is resized to the
    flow's grid, ``full_size`` (default: ``img``'s height) sets r = full_size / h."""
    h, w = flow.shape[-2:]
    r = (full_size if full_size else img.shape[-2]) / h
    img = resize_image(img, (h, w))
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype, device=flow.device),
        torch.arange(w, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    px = xs + flow[:, 0] / r
    py = ys + flow[:, 1] / r
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def second_order_smoothness(flow: torch.Tensor) -> torch.Tensor:
    """Mean over pixels (and batch) of ``|f(x−1) − 2f(x) + f(x+1)|`` along x plus along y;
    a direction with fewer than 3 pixels (a coarse scale of a small crop) contributes 0."""
    total = flow.new_zeros(())
    if flow.shape[-1] >= 3:
        dxx = flow[..., :, :-2] - 2 * flow[..., :, 1:-1] + flow[..., :, 2:]
        total = total + dxx.abs().mean()
    if flow.shape[-2] >= 3:
        dyy = flow[..., :-2, :] - 2 * flow[..., 1:-1, :] + flow[..., 2:, :]
        total = total + dyy.abs().mean()
    return total


def photometric_loss(gray0, gray1, flow: torch.Tensor, full_size: int) -> torch.Tensor:
    """``Σ_pixels ρ(warp(I₁, f) − I₀)``, averaged over the batch."""
    h, w = flow.shape[-2:]
    diff = warp(gray1, flow, full_size) - resize_image(gray0, (h, w))
    return charbonnier(diff).sum() / flow.shape[0]


def self_supervised_loss(flows: Sequence[torch.Tensor], gray0, gray1, dt: int) -> torch.Tensor:
    """The multi-scale loss of the module doc; ``flows`` finest first."""
    full = gray0.shape[-2]
    photo = sum(photometric_loss(gray0, gray1, f, full) for f in flows) / len(flows)
    smooth = sum(2.0**-s * second_order_smoothness(f) for s, f in enumerate(flows))
    return photo + smooth_weight(dt) * smooth


def supervised_loss(flows: Sequence[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """``Σ_s 2^{−(s−1)}·mean ‖f_s − pool_s(gt)‖`` (flows finest first, gt ``[B,2,H,W]``)."""
    total = gt.new_zeros(())
    for s, f in enumerate(flows):
        target = resize_image(gt, tuple(f.shape[-2:]))
        total = total + 2.0**-s * torch.linalg.vector_norm(f - target, dim=1).mean()
    return total
