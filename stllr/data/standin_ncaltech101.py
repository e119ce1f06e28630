"""The N-Caltech101-like stand-in (read by :mod:`~stllr.data.ncaltech101`).

Per class a composite "object" of 2–4 primitives (random per class), drawn with random pose,
distractors and background, seen through three 100 ms saccades (a triangle, as in
N-Caltech101); events at the moving image gradients. Written as
``NCALTECH101/Caltech101/<class>/image_XXXX.bin`` (5-byte events, read by tonic's
``read_mnist_file``) plus the archive file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.data.event_writers import encode_ncaltech_bin
from stllr.data.offline import write_placeholder_archive
from stllr.data.standin_markers import _ensure, _finish, _prepare
from stllr.data.standin_random import _noise, _rng
from stllr.data.standin_saccades import _class_prototype, _finalize, _render, _saccade_events

NCALTECH_CLASSES = (
    "accordion",
    "airplanes",
    "anchor",
    "ant",
    "barrel",
    "bass",
    "beaver",
    "binocular",
    "bonsai",
    "brain",
    "brontosaurus",
    "buddha",
    "butterfly",
    "camera",
    "cannon",
    "car_side",
    "ceiling_fan",
    "cellphone",
    "chair",
    "chandelier",
)


@dataclass(frozen=True)
class NCaltech101StandinConfig:
    """Size of the N-Caltech101-like stand-in (the real one has 101 classes, 8709 files).

    Attributes:
        n_classes: number of classes (names from :data:`NCALTECH_CLASSES`, then class_NNN).
        per_class: recordings per class.
        events: mean events per recording (±30 %).
        amplitude_px: saccade amplitude in pixels.
        noise_fraction: share of background-noise events.
    """

    n_classes: int = 10
    per_class: int = 20
    events: int = 50_000
    amplitude_px: float = 5.0
    noise_fraction: float = 0.04


def ncaltech_recording(seed: int, label: int, index: int, config: NCaltech101StandinConfig):
    """One N-Caltech101-like recording ``(x, y, p, t_us)`` in the 240×180 sensor."""
    rng = _rng(seed, "ncaltech", label, index)
    h, w = int(rng.integers(120, 171)), int(rng.integers(160, 231))
    img = _render(
        rng, _class_prototype(seed, "ncaltech", label, False), h, w, 0.8 * min(h, w), textured=False
    )
    a = config.amplitude_px * rng.uniform(0.85, 1.15)
    vertices = np.array([[0, 0], [a / 2, a], [a, 0], [0, 0]], dtype=float)
    seg = 100_000 + rng.uniform(-5000, 5000, 3)
    n = int(config.events * rng.uniform(0.7, 1.3))
    ev = _saccade_events(rng, img, vertices, seg, n)
    hot = rng.integers(0, (w, h), (int(rng.integers(0, 3)), 2))
    rate = config.noise_fraction * n / (seg.sum() * 1e-6)
    noise = _noise(rng, 0, seg.sum(), w, h, rate, hot, 60.0)
    x, y, p, t = _finalize(ev, noise, 240, 180, int(rng.integers(0, 2000)))
    return x, y, p, t


def _ncaltech_name(k: int) -> str:
    return NCALTECH_CLASSES[k] if k < len(NCALTECH_CLASSES) else f"class_{k:03d}"


def make_ncaltech101_standin(
    root: str | Path, config: NCaltech101StandinConfig | None = None, seed: int = 0
) -> Path:
    """Write the N-Caltech101-like stand-in under ``<root>/NCALTECH101``; return that folder."""
    config = config or NCaltech101StandinConfig()
    base = _prepare(Path(root) / "NCALTECH101", "ncaltech101", config, seed, ("Caltech101",))
    write_placeholder_archive(base / "N-Caltech101-archive.zip")
    for label in range(config.n_classes):
        d = base / "Caltech101" / _ncaltech_name(label)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(config.per_class):
            x, y, p, t = ncaltech_recording(seed, label, i, config)
            (d / f"image_{i + 1:04d}.bin").write_bytes(encode_ncaltech_bin(x, y, p, t))
    _finish(base, "ncaltech101", config, seed)
    return base


def ensure_ncaltech101_standin(root, config: NCaltech101StandinConfig | None = None, seed=0):
    """Generate the N-Caltech101 stand-in unless an identical one exists."""
    config = config or NCaltech101StandinConfig()
    return _ensure("NCALTECH101", "ncaltech101", make_ncaltech101_standin, root, config, seed)
