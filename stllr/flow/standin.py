"""Synthetic MVSEC-format recordings with known flow (docs/flow.md §5).

A scene is a random texture defined everywhere on the plane: bright Gaussian blobs on a
dark ground, one per cell of a jittered lattice,

    I(X) = clip(0.1 + Σ_cells a_c·exp(−‖X − X_c‖² / (2 r_c²)), 0.05, 1),

seen through a time-varying similarity transform about the image centre c: the scene
point X appears at pixel ``x = A(t)(X) = c + s(t)·R(θ(t))·(X − c) + d(t)``. Within a
segment the motion has constant velocity (translation ``v`` px/s, rotation ``ω`` rad/s,
zoom rate ``κ``: s(t) = s₀·e^{κ(t−t₀)}); segments of a few frames each draw new
velocities, so a sequence mixes translation, rotation and zoom. Segment boundaries are
gt timestamps (MVSEC's gt assumes motion that is smooth within a gt interval). The flow from t_a to
t_b of the point at pixel x is ``A(t_b)(A(t_a)⁻¹(x)) − x``, exact.

Events come from the log intensity L = log I at ``substeps`` instants per image
interval: each pixel keeps a reference level and emits ⌊|L − L_ref|/C⌋ events of the
sign of the change (contrast threshold C), with times spread evenly over the sub-step;
the reference moves by C per event. Gray frames are ``round(255·I)``. Ground truth is
written at its own rate (``gt_ratio`` × the image period, offset by half a period),
as MVSEC's gt is not aligned with the images.

Sensor noise (``noise_rate`` > 0, a shifted condition of the pipeline): on top of the
scene's events, every pixel fires spurious events as a Poisson process of ``noise_rate``
events per second, each of random polarity at a uniform random time. They are drawn from
their own generator (seeded from ``seed``), so a recording with noise has exactly the
scene, motion, frames, gt and signal events of the one without.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.flow.mvsec_files import SequenceFiles, find_sequence, write_sequence

T0 = 1.5e9  # seconds, a ROS-epoch-like start (float64 keeps µs resolution)


@dataclass(frozen=True)
class StandinSpec:
    """Size and motion of one synthetic recording."""

    height: int = 72
    width: int = 88
    frames: int = 40
    frame_period: float = 0.032  # s
    segment_frames: int = 1
    #: velocity bounds: each component uniform in [−max, max] per gt interval. At these
    #: values the flow of a 32 ms window is ≈ 2 px on average (docs/flow.md §9: at a third
    #: of them, ≈ 0.7 px, with ≈ 0.4 events per pixel, not even a float CNN learns quickly)
    max_speed: float = 90.0  # px/s: up to ~3 px per frame
    max_rotation: float = 1.2  # rad/s
    max_zoom: float = 1.2  # 1/s
    contrast: float = 0.15
    substeps: int = 8
    gt_ratio: float = 1.5
    #: > 0: the simplest motion instead — translation along ±x at this speed (px/s), the
    #: sign drawn per segment, no rotation or zoom (the CI training test's stand-in)
    x_speed: float = 0.0
    #: spurious sensor events per pixel and second (background activity; module doc)
    noise_rate: float = 0.0


def _texture(rng: np.random.Generator, spacing: float = 12.0, table: int = 64):
    """Bright Gaussian blobs on a dark ground, one per cell of a ``spacing``-px lattice
    (jittered position, radius 2–4 px, peak 0.4–0.85), defined on the whole plane (cell
    parameters repeat every ``table`` cells). Edges of a bright blob have a consistent
    contrast sign, as objects in a real scene do."""
    jitter = rng.uniform(-0.3, 0.3, size=(2, table, table)) * spacing
    radius = rng.uniform(2.0, 4.0, size=(table, table))
    peak = rng.uniform(0.4, 0.85, size=(table, table))

    def intensity(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        ci = np.floor(gx / spacing).astype(np.int64)
        cj = np.floor(gy / spacing).astype(np.int64)
        total = np.zeros(gx.shape)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                i, j = ci + di, cj + dj
                ti, tj = i % table, j % table
                bx = (i + 0.5) * spacing + jitter[0, ti, tj]
                by = (j + 0.5) * spacing + jitter[1, ti, tj]
                d2 = (gx - bx) ** 2 + (gy - by) ** 2
                total += peak[ti, tj] * np.exp(-d2 / (2 * radius[ti, tj] ** 2))
        return np.clip(0.1 + total, 0.05, 1.0)

    return intensity


class _Motion:
    """Piecewise constant-velocity similarity motion; ``params(t) = (s, θ, dx, dy)``."""

    def __init__(self, rng, spec: StandinSpec, duration: float):
        # segments start at gt timestamps (a whole number of gt periods long, beginning at
        # the first one), so the velocity is constant within every gt interval, as the
        # linear scaling of the evaluation protocol assumes
        gt_period = spec.gt_ratio * spec.frame_period
        seg = gt_period * max(1, round(spec.segment_frames / spec.gt_ratio))
        self.starts = np.arange(-0.5 * gt_period, duration + seg, seg)
        n = len(self.starts)
        self.vel = np.stack(
            [
                rng.uniform(-spec.max_zoom, spec.max_zoom, n),
                rng.uniform(-spec.max_rotation, spec.max_rotation, n),
                rng.uniform(-spec.max_speed, spec.max_speed, n),
                rng.uniform(-spec.max_speed, spec.max_speed, n),
            ],
            axis=1,
        )
        if spec.x_speed > 0:
            self.vel[:, :2] = 0.0
            self.vel[:, 2] = spec.x_speed * rng.choice([-1.0, 1.0], size=n)
            self.vel[:, 3] = 0.0
        # state at each segment start: (log s, θ, dx, dy)
        state = np.zeros((n, 4))
        for i in range(1, n):
            state[i] = state[i - 1] + self.vel[i - 1] * seg
        self.state = state

    def params(self, t: float):
        i = int(np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.starts) - 1))
        log_s, theta, dx, dy = self.state[i] + self.vel[i] * (t - self.starts[i])
        return np.exp(log_s), theta, dx, dy


def _to_scene(params, cx, cy, x, y):
    """A(t)⁻¹: pixel → scene coordinates."""
    s, th, dx, dy = params
    ux, uy = (x - cx - dx) / s, (y - cy - dy) / s
    c, sn = np.cos(th), np.sin(th)
    return cx + c * ux + sn * uy, cy - sn * ux + c * uy


def _to_pixel(params, cx, cy, gx, gy):
    """A(t): scene → pixel coordinates."""
    s, th, dx, dy = params
    c, sn = np.cos(th), np.sin(th)
    rx, ry = gx - cx, gy - cy
    return cx + s * (c * rx - sn * ry) + dx, cy + s * (sn * rx + c * ry) + dy


def make_recording(spec: StandinSpec, seed: int):
    """``(events [N,4], images [M,H,W] uint8, image_ts [M], flow [Ngt,2,H,W], flow_ts)``."""
    rng = np.random.default_rng(seed)
    tex = _texture(rng)
    duration = spec.frames * spec.frame_period
    motion = _Motion(rng, spec, duration)
    h, w = spec.height, spec.width
    cy, cx = (h - 1) / 2, (w - 1) / 2
    py, px = np.mgrid[0:h, 0:w].astype(np.float64)

    def log_frame(t: float) -> np.ndarray:
        return np.log(tex(*_to_scene(motion.params(t), cx, cy, px, py)))

    image_t = np.arange(spec.frames) * spec.frame_period
    images = [np.rint(255 * np.exp(log_frame(0.0))).astype(np.uint8)]
    ref = log_frame(0.0)
    chunks = []
    sub = spec.frame_period / spec.substeps
    for k in range(spec.frames - 1):
        for j in range(spec.substeps):
            t_a = image_t[k] + j * sub
            cur = log_frame(t_a + sub)
            diff = cur - ref
            n = np.floor(np.abs(diff) / spec.contrast).astype(np.int64)
            ys, xs = np.nonzero(n)
            if len(ys):
                counts = n[ys, xs]
                sign = np.sign(diff[ys, xs])
                rep = np.repeat(np.arange(len(ys)), counts)
                order_in_pixel = np.concatenate([np.arange(c) for c in counts])
                frac = (order_in_pixel + 1) / (counts[rep] + 1)
                t_ev = t_a + sub * (frac + 1e-3 * rng.random(len(rep)))
                chunks.append(np.stack([xs[rep], ys[rep], t_ev, sign[rep]], axis=1))
                ref[ys, xs] += sign * counts * spec.contrast
        images.append(np.rint(255 * np.exp(log_frame(image_t[k + 1]))).astype(np.uint8))
    if spec.noise_rate > 0:
        chunks.append(_noise_events(spec, seed, image_t[-1]))
    events = np.concatenate(chunks) if chunks else np.zeros((0, 4))
    events = events[np.argsort(events[:, 2], kind="stable")]
    gt_period = spec.gt_ratio * spec.frame_period
    flow_t = np.arange(-0.5 * gt_period, duration + gt_period, gt_period)
    flow = np.zeros((len(flow_t), 2, h, w), dtype=np.float32)
    for i in range(len(flow_t) - 1):
        flow[i] = flow_over(motion, flow_t[i], flow_t[i + 1], cx, cy, px, py)
    events[:, 2] += T0
    return events, np.stack(images), image_t + T0, flow, flow_t + T0


def _noise_events(spec: StandinSpec, seed: int, duration: float) -> np.ndarray:
    """Spurious events ``[N, 4]`` (x, y, t, ±1) on ``[0, duration)``: per pixel a Poisson
    count of mean ``noise_rate·duration``, uniform times, random polarity; drawn from
    ``default_rng((seed, 1))``, independent of the scene's generator."""
    rng = np.random.default_rng((seed, 1))
    n = rng.poisson(spec.noise_rate * duration, size=(spec.height, spec.width))
    ys, xs = np.nonzero(n)
    rep = np.repeat(np.arange(len(ys)), n[ys, xs])
    t = rng.uniform(0.0, duration, len(rep))
    sign = rng.choice([-1.0, 1.0], size=len(rep))
    return np.stack([xs[rep], ys[rep], t, sign], axis=1).astype(np.float64)


def flow_over(motion: _Motion, t_a: float, t_b: float, cx, cy, px, py) -> np.ndarray:
    """Exact displacement ``[2, H, W]`` from ``t_a`` to ``t_b`` of the point at each pixel."""
    gx, gy = _to_scene(motion.params(t_a), cx, cy, px, py)
    # integrate across segment boundaries: the point's scene coordinates are fixed
    bx, by = _to_pixel(motion.params(t_b), cx, cy, gx, gy)
    return np.stack([bx - px, by - py]).astype(np.float32)


#: the stand-in's sequences: MVSEC's names, each with its own scene and motion
STANDIN_SEQUENCES = {
    "outdoor_day2": (StandinSpec(frames=160), 1),
    "indoor_flying1": (StandinSpec(frames=32), 2),
    "indoor_flying2": (StandinSpec(frames=32, max_speed=135.0), 3),
    "indoor_flying3": (StandinSpec(frames=32), 4),
    "outdoor_day1": (StandinSpec(frames=32, max_rotation=0.6, max_zoom=0.6), 5),
}


def translation_specs(size: int = 40, train_frames: int = 160, test_frames: int = 24,
                      x_speed: float = 80.0) -> dict[str, tuple[StandinSpec, int]]:  # fmt: skip
    """The ±x stand-in (docs/flow.md §9, the CI training test's, the flow benchmark's and
    the flow pipeline's): the five sequences of :data:`STANDIN_SEQUENCES` with their scene
    seeds, as ``size × size`` frames (``train_frames`` for ``outdoor_day2``,
    ``test_frames`` for the others) moving along ±x at ``x_speed`` px/s."""
    return {
        name: (
            StandinSpec(
                height=size,
                width=size,
                x_speed=x_speed,
                frames=train_frames if name == "outdoor_day2" else test_frames,
            ),
            seed,
        )  # fmt: skip
        for name, (_default, seed) in STANDIN_SEQUENCES.items()
    }


def specs_digest(specs: dict[str, tuple[StandinSpec, int]]) -> str:
    """16 hex digits of SHA-256 over ``specs`` (name → (spec, scene seed)) as sorted JSON:
    the cache folder of a set of recordings, so that changed specs (or changed defaults)
    are written afresh instead of reusing stale files."""
    key = json.dumps({n: [dataclasses.asdict(s), k] for n, (s, k) in specs.items()}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure_standin(root: Path, seed: int = 0) -> dict[str, SequenceFiles]:
    """Write the stand-in's five sequences under ``root/seed<seed>`` unless present;
    return their files."""
    folder = Path(root) / f"seed{seed}"
    out = {}
    for name, (spec, offset) in STANDIN_SEQUENCES.items():
        try:
            out[name] = find_sequence(folder, name)
        except ValueError:
            rec = make_recording(spec, seed * 1000 + offset)
            out[name] = write_sequence(folder, name, *rec)
    return out
