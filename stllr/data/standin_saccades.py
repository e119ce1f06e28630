"""Static images seen through saccades: the event synthesis of the N-Caltech101-like and
CIFAR10-DVS-like stand-ins.

Per class a composite "object" of 2–4 primitives (:func:`_class_prototype`) is drawn with a
random pose, distractors and background (:func:`_render`) and moved along a polyline;
events come from the moving image gradients (:func:`_saccade_events`), merged with noise by
:func:`_finalize`.
"""

from __future__ import annotations

import numpy as np

from stllr.data.standin_random import Rng, _rng


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    return xx, yy


def _primitive_mask(kind: str, xx, yy, cx, cy, size, aspect, angle) -> np.ndarray:
    """Antialiased (1 px) mask in [0, 1] of a primitive centred at ``(cx, cy)``."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    a, b = size * aspect, size / aspect
    if kind in ("ellipse", "ring"):
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        sdf = (rho - 1) * min(a, b)
        if kind == "ring":
            sdf = np.abs(sdf + 0.25 * min(a, b)) - 0.25 * min(a, b)
    else:
        n = {"triangle": 3, "rect": 4, "pentagon": 5, "hexagon": 6}[kind]
        sdf = np.full(u.shape, -np.inf)
        for k in range(n):
            th = 2 * np.pi * k / n + (np.pi / 4 if n == 4 else 0)
            sdf = np.maximum(sdf, (u * np.cos(th) / a + v * np.sin(th) / b) * min(a, b))
        sdf = sdf - 0.7 * min(a, b)
    return np.clip(0.5 - sdf, 0.0, 1.0)


KINDS = ("ellipse", "ring", "triangle", "rect", "pentagon", "hexagon")


def _class_prototype(seed: int, dataset: str, label: int, textured: bool) -> list[dict]:
    """2–4 primitives (relative units of the object size) that define class ``label``."""
    rng = _rng(seed, dataset, "prototype", label)
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        parts.append(
            {
                "kind": KINDS[int(rng.integers(len(KINDS)))],
                "dx": rng.uniform(-0.35, 0.35),
                "dy": rng.uniform(-0.35, 0.35),
                "size": rng.uniform(0.15, 0.4),
                "aspect": rng.uniform(0.6, 1.6),
                "angle": rng.uniform(0, np.pi),
                "level": rng.choice([-1, 1]) * rng.uniform(0.3, 0.7),
                "freq": rng.uniform(0.08, 0.3) if textured else 0.0,
                "orient": rng.uniform(0, np.pi),
            }
        )
    return parts


def _render(rng: Rng, proto: list[dict], h: int, w: int, obj_px: float, textured: bool):
    """Grayscale image ``[h, w]`` in [0, 1]: background clutter + the posed object."""
    xx, yy = _grid(h, w)
    img = np.full((h, w), 0.5)
    for _ in range(3):  # smooth background clutter
        f, th, ph = rng.uniform(0.01, 0.05), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        img += 0.05 * np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph)
    scale = obj_px * rng.uniform(0.85, 1.15)
    rot = rng.normal(0, 0.25)
    ox, oy = w / 2 + rng.normal(0, 0.08 * w), h / 2 + rng.normal(0, 0.08 * h)
    distractors = [
        {
            "kind": KINDS[int(rng.integers(len(KINDS)))],
            "dx": rng.uniform(-0.6, 0.6),
            "dy": rng.uniform(-0.6, 0.6),
            "size": rng.uniform(0.06, 0.15),
            "aspect": 1.0,
            "angle": rng.uniform(0, np.pi),
            "level": rng.uniform(-0.4, 0.4),
            "freq": 0.0,
            "orient": 0.0,
        }
        for _ in range(int(rng.integers(0, 3)))
    ]
    for part in proto + distractors:
        dx = part["dx"] + rng.normal(0, 0.04)
        dy = part["dy"] + rng.normal(0, 0.04)
        cx = ox + scale * (dx * np.cos(rot) - dy * np.sin(rot))
        cy = oy + scale * (dx * np.sin(rot) + dy * np.cos(rot))
        size = scale * part["size"] * rng.uniform(0.9, 1.1)
        mask = _primitive_mask(
            part["kind"], xx, yy, cx, cy, size, part["aspect"], part["angle"] + rot
        )
        level = part["level"] * rng.uniform(0.8, 1.2)
        if textured and part["freq"] > 0:
            th = part["orient"] + rot
            phase = 2 * np.pi * part["freq"] * (xx * np.cos(th) + yy * np.sin(th))
            level = level + 0.3 * np.sin(phase + rng.uniform(0, 2 * np.pi))
        img = img * (1 - mask) + (0.5 + level) * mask
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0.0, 1.0)


def _saccade_events(
    rng: Rng, img: np.ndarray, vertices: np.ndarray, seg_us: np.ndarray, n_events: int
) -> tuple[np.ndarray, ...]:
    """Events of a static image moved along the polyline ``vertices [K+1, 2]`` (pixels),
    segment ``k`` lasting ``seg_us[k]`` µs. Each image point emits events in proportion to
    ``|∇I·Δ_k|`` (Δ_k the segment's displacement), polarity ON when brightness rises
    (``−∇I·Δ_k > 0``); ``n_events`` in total (Poisson). Returns image-frame ``(x, y, p, t)``.
    """
    gy, gx = np.gradient(img)
    starts = np.concatenate([[0.0], np.cumsum(seg_us)[:-1]])
    rates = [np.abs(gx * d[0] + gy * d[1]) for d in np.diff(vertices, axis=0)]
    total = sum(r.sum() for r in rates) + 1e-12
    out = []
    for k, (d, rate) in enumerate(zip(np.diff(vertices, axis=0), rates, strict=True)):
        counts = rng.poisson(rate * n_events / total).ravel()
        idx = np.repeat(np.arange(counts.size), counts)
        py, px = np.divmod(idx, img.shape[1])
        frac = rng.uniform(0, 1, idx.size)
        x = px + vertices[k, 0] + frac * d[0] + rng.normal(0, 0.3, idx.size)
        y = py + vertices[k, 1] + frac * d[1] + rng.normal(0, 0.3, idx.size)
        on = -(gx.ravel()[idx] * d[0] + gy.ravel()[idx] * d[1]) > 0
        out.append((x, y, on.astype(np.int64), starts[k] + frac * seg_us[k]))
    return tuple(np.concatenate(c) for c in zip(*out, strict=True))


def _finalize(ev, noise, width: int, height: int, t0: int):
    """Merge signal and noise, round, keep in-sensor events, sort by time, add ``t0`` µs."""
    x = np.round(np.concatenate([ev[0], noise[0]])).astype(np.int64)
    y = np.round(np.concatenate([ev[1], noise[1]])).astype(np.int64)
    p = np.concatenate([ev[2], noise[2]]).astype(np.int64)
    t = np.floor(np.concatenate([ev[3], noise[3]])).astype(np.int64)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    order = np.argsort(t[keep], kind="stable")
    return x[keep][order], y[keep][order], p[keep][order], t[keep][order] + t0
