"""Flow evaluation and loss against hand computations and independent loops
(docs/flow.md §3, §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stllr.flow.ground_truth import flow_between
from stllr.flow.loss import charbonnier, photometric_loss, second_order_smoothness, warp
from stllr.flow.metrics import flow_to_rgb, sequence_score, window_errors


def _gt_and_events(seed=0, h=12, w=16):
    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(3, 2, h, w, generator=g) * 2
    gt[0, :, :3] = 0.0  # zero gt: outside the mask
    gt[1, 0, 5, 5] = float("nan")  # not finite: outside the mask
    events = torch.rand(3, h, w, generator=g) < 0.4
    return gt, events


def test_aee_of_ground_truth_against_itself_is_zero():
    gt, events = _gt_and_events()
    errs = window_errors(torch.nan_to_num(gt), gt, events)
    assert all(e.aee == 0.0 and e.outlier_pct == 0.0 and e.pixels > 0 for e in errs)


def test_aee_of_zero_flow_is_mean_gt_magnitude_on_the_mask():
    gt, events = _gt_and_events(1)
    errs = window_errors(torch.zeros_like(gt), gt, events)
    for b, err in enumerate(errs):
        mags, outliers = [], 0
        for y in range(gt.shape[2]):  # the protocol's mask, by hand
            for x in range(gt.shape[3]):
                u, v = float(gt[b, 0, y, x]), float(gt[b, 1, y, x])
                if events[b, y, x] and math.isfinite(u) and math.isfinite(v) and (u or v):
                    mags.append(math.hypot(u, v))
                    outliers += math.hypot(u, v) > 3.0
        assert err.pixels == len(mags)
        assert err.aee == pytest.approx(sum(mags) / len(mags), rel=1e-6)
        assert err.outlier_pct == pytest.approx(100.0 * outliers / len(mags), rel=1e-9)


def test_sequence_score_averages_windows_with_a_mask():
    gt, events = _gt_and_events(2)
    events[2] = False  # a window without events is not counted
    errs = window_errors(torch.zeros_like(gt), gt, events)
    s = sequence_score("x", errs)
    assert s.windows == 2
    assert s.aee == pytest.approx((errs[0].aee + errs[1].aee) / 2)


def test_prediction_at_half_resolution_is_upsampled_without_rescaling():
    gt = torch.zeros(1, 2, 8, 8)
    gt[:, 0] = 1.5
    gt[:, 1] = -0.5
    pred = torch.zeros(1, 2, 4, 4)
    pred[:, 0], pred[:, 1] = 1.5, -0.5
    (err,) = window_errors(pred, gt, torch.ones(1, 8, 8, dtype=torch.bool))
    assert err.aee == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dx,dy", [(2, -1), (-3, 0), (0, 1)])
def test_warping_by_an_integer_shift_reproduces_the_image(dx, dy):
    """I₁ is I₀ moved by (dx, dy): I₁(x + d) = I₀(x); warping I₁ by the flow d gives I₀
    wherever x + d lies inside the image, and 0 (out-of-image samples) elsewhere."""
    h, w = 9, 11
    i0 = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(5))
    i1 = torch.zeros_like(i0)
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                i1[0, 0, y + dy, x + dx] = i0[0, 0, y, x]
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    out = warp(i1, flow)
    for y in range(h):
        for x in range(w):
            inside = 0 <= y + dy < h and 0 <= x + dx < w
            want = float(i0[0, 0, y, x]) if inside else 0.0
            assert float(out[0, 0, y, x]) == pytest.approx(want, abs=1e-6)


def test_warping_at_a_coarse_scale_divides_the_flow_by_the_scale():
    """A flow of 4 full-resolution pixels is 2 pixels on a half-resolution grid."""
    img = torch.arange(64.0).reshape(1, 1, 8, 8)
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 0] = 4.0
    out = warp(img, flow, full_size=8)
    half = torch.nn.functional.avg_pool2d(img, 2)
    assert torch.allclose(out[..., :, :2], half[..., :, 2:])


def test_charbonnier_and_photometric_sum():
    e = torch.tensor([0.0, 0.5, -2.0])
    want = [(v * v + 1e-6) ** 0.45 for v in (0.0, 0.5, -2.0)]
    assert torch.allclose(charbonnier(e), torch.tensor(want))
    g0 = torch.rand(2, 1, 4, 4)
    g1 = g0 + 0.25  # zero flow: the error is 0.25 everywhere
    loss = photometric_loss(g0, g1, torch.zeros(2, 2, 4, 4), 4)
    assert float(loss) == pytest.approx(16 * (0.0625 + 1e-6) ** 0.45, rel=1e-5)


def test_second_order_smoothness():
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    affine = torch.stack([0.3 * xs - 0.2 * ys + 1, 0.1 * xs])[None]
    assert float(second_order_smoothness(affine)) == pytest.approx(0.0, abs=1e-6)
    quad = torch.stack([xs**2, torch.zeros_like(xs)])[None]  # ∂²/∂x² = 2 on channel 0
    # mean over 2 channels of |2| along x (channel 1: 0), and 0 along y
    assert float(second_order_smoothness(quad)) == pytest.approx(1.0)
    # a 2 × 2 flow (coarsest scale of a 32² crop) has no second difference: 0, not NaN
    assert float(second_order_smoothness(torch.randn(1, 2, 2, 2))) == 0.0


def test_ground_truth_inside_one_interval_is_scaled():
    flow = np.zeros((3, 2, 4, 5), dtype=np.float32)
    flow[1, 0], flow[1, 1] = 2.0, -1.0
    ts = np.array([0.0, 1.0, 2.0])
    out = flow_between(flow, ts, 1.25, 1.75)
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], -0.5)


def test_ground_truth_is_propagated_across_intervals():
    """Point at (x, y) moves by φ·f over each overlapped interval, sampling f at its
    nearest pixel: worked by hand for a field that differs between two columns."""
    flow = np.zeros((3, 2, 3, 6), dtype=np.float32)
    flow[0, 0] = 2.0  # interval [0, 1]: 2 px right everywhere
    flow[1, 0] = 1.0  # interval [1, 2]: 1 px right, but 3 px right in column 3
    flow[1, 0, :, 3] = 3.0
    flow[1, 1] = 0.5
    ts = np.array([0.0, 1.0, 2.0])
    out = flow_between(flow, ts, 0.5, 1.5)
    # pixel x=0: 0 + 0.5·2 = 1 → samples column 1 (flow 1) → 1 + 0.5·1 = 1.5
    assert out[0, 0, 0] == pytest.approx(1.5) and out[1, 0, 0] == pytest.approx(0.25)
    # pixel x=2: 2 + 1 = 3 → samples column 3 (flow 3) → 3 + 1.5 = 4.5: flow 2.5
    assert out[0, 0, 2] == pytest.approx(2.5)
    # pixel x=5: 5 + 1 = 6 → leaves the image: invalid, flow 0
    assert out[0, 0, 5] == 0.0 and out[1, 0, 5] == 0.0


def test_flow_colour_wheel():
    flow = np.zeros((2, 1, 4), dtype=np.float32)
    flow[:, 0, 0] = (1, 0)  # +x: red
    flow[:, 0, 1] = (0, -1)  # up (y down in images): hue 1/4, yellow-green
    flow[:, 0, 2] = (-0.5, 0)  # −x at half magnitude: cyan at half value
    rgb = flow_to_rgb(flow, 1.0)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (128, 255, 0)
    assert tuple(rgb[0, 2]) == (0, 128, 128)
    assert tuple(rgb[0, 3]) == (0, 0, 0)
