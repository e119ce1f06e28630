"""The gesture-like stand-in for DVS Gesture (read by :mod:`~stllr.data.dvs_gesture`).

11 classes of moving shapes on a 128×128×2 sensor (clapping circles, left/right waves, bars
turning clockwise or counter-clockwise on the left or right, rolling pair, drumming pair,
strumming bar, "other" = expanding ring + wandering blob). Events come from the moving
outlines (polarity = sign of the normal speed), plus background noise and hot pixels; users
change position/size/speed, lightings change noise and event density. Written as tonic's
``DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`` ``(N, 4)`` int32 arrays
``[x, y, p, t_ms]`` plus the (empty) archive files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.data.event_writers import write_gesture_npy
from stllr.data.offline import write_placeholder_archive
from stllr.data.standin_markers import _ensure, _finish, _prepare
from stllr.data.standin_random import Rng, _noise, _rng
from stllr.errors import UserError


def _edge_events(rng: Rng, pts: np.ndarray, t_ms: np.ndarray, density: float):
    """Events of closed outlines ``pts [S, N, 2]`` (pixels) sampled at times ``t_ms [S]``.

    Each outline point emits Poisson(density · |v·n| · dt · arc) events per step (``v`` its
    velocity, ``n`` the outward normal, ``arc`` its share of the perimeter), spread over the
    band it sweeps; polarity = ``v·n > 0`` (leading edge ON). Returns ``(x, y, p, t_ms)``.
    """
    dt = float(t_ms[1] - t_ms[0])
    vel = np.gradient(pts, axis=0) / dt
    tangent = (np.roll(pts, -1, axis=1) - np.roll(pts, 1, axis=1)) / 2
    arc = np.linalg.norm(tangent, axis=-1) + 1e-9
    normal = np.stack([tangent[..., 1], -tangent[..., 0]], axis=-1) / arc[..., None]
    vn = np.sum(vel * normal, axis=-1)
    k = rng.poisson(density * np.abs(vn) * dt * arc).ravel()
    idx = np.repeat(np.arange(k.size), k)
    flat = pts.reshape(-1, 2)[idx]
    sweep = (vn.ravel()[idx] * dt)[:, None] * normal.reshape(-1, 2)[idx]
    along = tangent.reshape(-1, 2)[idx]
    pos = flat + rng.uniform(0, 1, (idx.size, 1)) * sweep
    pos += along * rng.uniform(-0.5, 0.5, (idx.size, 1)) + rng.normal(0, 0.4, (idx.size, 2))
    p = (vn.ravel()[idx] > 0) ^ (rng.random(idx.size) < 0.05)
    step = idx // pts.shape[1]
    t = t_ms[step] + rng.uniform(0, dt, idx.size)
    return pos[:, 0], pos[:, 1], p.astype(np.int64), t


def _circle(center: np.ndarray, radius, n: int = 96) -> np.ndarray:
    """Outline ``[S, n, 2]`` of circles with centres ``[S, 2]`` and radius (scalar or [S])."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.broadcast_to(np.asarray(radius, dtype=float), center.shape[:1])[:, None]
    return np.stack([center[:, :1] + r * np.cos(a), center[:, 1:] + r * np.sin(a)], axis=-1)


def _bar(pivot: np.ndarray, angle: np.ndarray, length: float, width: float, n: int = 120):
    """Outline ``[S, n, 2]`` of a rectangle from ``pivot`` along ``angle [S]`` (an "arm")."""
    per = 2 * (length + width)
    s = np.linspace(0, per, n, endpoint=False)
    a = np.select(
        [s < length, s < length + width, s < 2 * length + width],
        [s, length, 2 * length + width - s],
        0.0,
    )
    b = np.select(
        [s < length, s < length + width, s < 2 * length + width],
        [-width / 2, -width / 2 + (s - length), width / 2],
        width / 2 - (s - 2 * length - width),
    )
    c, si = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x = pivot[:, :1] + a * c - b * si
    y = pivot[:, 1:] + a * si + b * c
    return np.stack([x, y], axis=-1)


def _track(x, y) -> np.ndarray:
    return np.stack(np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float)), axis=-1)


GESTURE_MOTIONS = (
    "clap: two circles approach and separate",
    "right wave: circle swings left-right on the right",
    "left wave: circle swings left-right on the left",
    "right arm clockwise: bar turns clockwise around a pivot on the right",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll: two circles orbit each other at the centre",
    "air drums: two circles bounce up and down in antiphase",
    "air guitar: bar strums on the right, small circle drifts on the left",
    "other: expanding ring plus a wandering circle",
)


def _gesture_outlines(label: int, t: np.ndarray, g: dict, rng: Rng) -> list[np.ndarray]:
    """Outlines ``[S, N, 2]`` of class ``label`` at times ``t`` (s) for pose parameters ``g``."""
    s, cx, cy = g["scale"], g["cx"], g["cy"]
    w = 2 * np.pi / g["period"] * t + g["phase"]
    one = np.ones_like(t)
    if label == 0:
        gap = 8 * s + 12 * s * (1 + np.sin(w)) / 2
        return [
            _circle(_track(cx - gap, cy + 8 * s * one), 9 * s),
            _circle(_track(cx + gap, cy + 8 * s * one), 9 * s),
        ]
    if label in (1, 2):
        side = 1 if label == 1 else -1
        x = cx + side * (26 * s + 14 * s * np.sin(w))
        return [_circle(_track(x, (cy - 16 * s) * one), 8 * s)]
    if label in (3, 4, 5, 6):
        side = 1 if label in (3, 4) else -1
        turn = 1 if label in (3, 5) else -1  # +angle is clockwise on screen (y points down)
        pivot = _track((cx + side * 14 * s) * one, cy * one)
        return [_bar(pivot, turn * w, 32 * s, 8 * s)]
    if label == 7:
        off = 10 * s * np.stack([np.cos(2 * w), np.sin(2 * w)], axis=-1)
        c = _track(cx * one, cy * one)
        return [_circle(c + off, 7 * s), _circle(c - off, 7 * s)]
    if label == 8:
        return [
            _circle(_track((cx - 20 * s) * one, cy + 12 * s * np.sin(w)), 7 * s),
            _circle(_track((cx + 20 * s) * one, cy - 12 * s * np.sin(w)), 7 * s),
        ]
    if label == 9:
        pivot = _track((cx - 2 * s) * one, (cy + 6 * s) * one)
        strum = -0.6 + 0.45 * np.sin(2 * w)
        hand = _track((cx - 26 * s) * one, cy - 10 * s + 5 * s * np.sin(0.5 * w))
        return [_bar(pivot, strum, 30 * s, 6 * s), _circle(hand, 6 * s)]
    # label 10: expanding ring (saw-tooth radius) and a slowly wandering circle
    frac = (w / (2 * np.pi)) % 1.0
    ring_c = _track((cx + g["dx10"]) * one, (cy + g["dy10"]) * one)
    steps = rng.normal(0, 0.35, (t.size, 2)).cumsum(axis=0)
    wander = _track(cx - g["dx10"] * one, cy - g["dy10"] * one) + steps
    return [_circle(ring_c, 4 + 28 * s * frac), _circle(wander, 6 * s)]


LIGHTINGS = {
    # name: (background noise Hz, hot pixels, hot pixel Hz, event density factor)
    "fluorescent": (1500.0, 2, 80.0, 1.0),
    "fluorescent_led": (2500.0, 3, 120.0, 0.9),
    "lab": (1000.0, 1, 60.0, 1.1),
    "led": (4000.0, 4, 150.0, 0.85),
    "natural": (800.0, 1, 50.0, 0.7),
}


@dataclass(frozen=True)
class GestureStandinConfig:
    """Size and difficulty of the gesture-like stand-in.

    Attributes:
        train_users, test_users: user numbers (folder ``userNN_<lighting>``).
        lightings: lighting names (keys of :data:`LIGHTINGS`), one recording per class each.
        duration_s: recording length range in seconds (uniform).
        density: events per pixel swept by a moving edge.
        dt_ms: simulation step in ms.
    """

    train_users: tuple[int, ...] = (1, 2, 3)
    test_users: tuple[int, ...] = (24,)
    lightings: tuple[str, ...] = ("fluorescent", "led")
    duration_s: tuple[float, float] = (2.0, 6.0)
    density: float = 3.0
    dt_ms: float = 2.0


def gesture_recording(
    seed: int, user: int, lighting: str, label: int, config: GestureStandinConfig
) -> np.ndarray:
    """One gesture-like recording: int32 ``(N, 4)`` ``[x, y, p, t_ms]`` sorted by time."""
    if lighting not in LIGHTINGS:
        raise UserError(f"unknown lighting {lighting!r}; expected one of {sorted(LIGHTINGS)}")
    if not 0 <= label < len(GESTURE_MOTIONS):
        raise UserError(f"gesture label {label} out of range 0..{len(GESTURE_MOTIONS) - 1}")
    noise_hz, n_hot, hot_hz, density = LIGHTINGS[lighting]
    urng = _rng(seed, "gesture-user", user)  # per-user style, shared by all recordings
    style = {
        "scale": urng.uniform(0.95, 1.35),
        "cx": 64 + urng.uniform(-8, 8),
        "cy": 64 + urng.uniform(-8, 8),
        "period": urng.uniform(0.7, 1.2),
    }
    rng = _rng(seed, "gesture", user, lighting, label)
    g = {
        "scale": style["scale"] * rng.uniform(0.9, 1.1),
        "cx": style["cx"] + rng.normal(0, 3),
        "cy": style["cy"] + rng.normal(0, 3),
        "period": style["period"] * rng.uniform(0.85, 1.15),
        "phase": rng.uniform(0, 2 * np.pi),
        "dx10": rng.uniform(-20, 20),
        "dy10": rng.uniform(-20, 20),
    }
    duration_ms = rng.uniform(*config.duration_s) * 1000
    t_ms = np.arange(0.0, duration_ms, config.dt_ms)
    xs, ys, ps, ts = [], [], [], []
    for outline in _gesture_outlines(label, t_ms / 1000, g, rng):
        x, y, p, t = _edge_events(rng, outline, t_ms, config.density * density)
        xs.append(x), ys.append(y), ps.append(p), ts.append(t)
    hot = _rng(seed, "hot", user, lighting).integers(0, 128, (n_hot, 2))
    nx, ny, npol, nt = _noise(rng, 0, duration_ms * 1000, 128, 128, noise_hz, hot, hot_hz)
    x = np.round(np.concatenate([*xs, nx])).astype(np.int64)
    y = np.round(np.concatenate([*ys, ny])).astype(np.int64)
    p = np.concatenate([*ps, npol])
    t = np.floor(np.concatenate([*ts, nt / 1000])).astype(np.int64)
    keep = (x >= 0) & (x < 128) & (y >= 0) & (y < 128)
    order = np.argsort(t[keep], kind="stable")
    start = int(rng.integers(0, 200))
    cols = [v[keep][order] for v in (x, y, p, t)]
    cols[3] = cols[3] + start
    return np.stack(cols, axis=1).astype(np.int32)


def make_gesture_standin(
    root: str | Path, config: GestureStandinConfig | None = None, seed: int = 0
) -> Path:
    """Write the gesture-like stand-in under ``<root>/DVSGesture`` and return that folder."""
    config = config or GestureStandinConfig()
    base = _prepare(
        Path(root) / "DVSGesture", "dvsgesture", config, seed, ("ibmGestureTrain", "ibmGestureTest")
    )
    for folder, users in (
        ("ibmGestureTrain", config.train_users),
        ("ibmGestureTest", config.test_users),
    ):
        write_placeholder_archive(base / f"{folder}.tar.gz")
        for user in users:
            for lighting in config.lightings:
                d = base / folder / f"user{user:02d}_{lighting}"
                d.mkdir(parents=True, exist_ok=True)
                for label in range(len(GESTURE_MOTIONS)):
                    rec = gesture_recording(seed, user, lighting, label, config)
                    write_gesture_npy(d / f"{label}.npy", *rec.T)
    _finish(base, "dvsgesture", config, seed)
    return base


def ensure_gesture_standin(root, config: GestureStandinConfig | None = None, seed: int = 0):
    """Generate the gesture stand-in unless an identical one (same marker) exists."""
    config = config or GestureStandinConfig()
    return _ensure("DVSGesture", "dvsgesture", make_gesture_standin, root, config, seed)
