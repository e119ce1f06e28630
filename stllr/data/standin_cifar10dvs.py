"""The CIFAR10-DVS-like stand-in (read by :mod:`~stllr.data.cifar10_dvs`).

10 classes of textured composite images (class-specific shapes and grating textures) filling
a 128×128 view, moved in a repeated square loop (~1.2 s). Written as
``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4`` (AEDAT 4, uncompressed, read by tonic
through the ``aedat`` package) plus the zip file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.data.event_writers import write_aedat4
from stllr.data.offline import write_placeholder_archive
from stllr.data.standin_markers import _ensure, _finish, _prepare
from stllr.data.standin_random import _noise, _rng
from stllr.data.standin_saccades import _class_prototype, _finalize, _render, _saccade_events

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True)
class Cifar10DVSStandinConfig:
    """Size of the CIFAR10-DVS-like stand-in (the real one has 1000 recordings per class).

    Attributes:
        per_class: recordings per class (the loader's train split takes the first 90 %).
        events: mean events per recording (±30 %).
        amplitude_px: side of the square saccade loop, pixels.
        loops: number of loops (4 segments of ``segment_ms`` each).
        segment_ms: duration of one side of the loop.
        noise_fraction: share of background-noise events.
    """

    per_class: int = 20
    events: int = 20_000
    amplitude_px: float = 3.0
    loops: int = 2
    segment_ms: float = 150.0
    noise_fraction: float = 0.04


def cifar_recording(seed: int, label: int, index: int, config: Cifar10DVSStandinConfig):
    """One CIFAR10-DVS-like recording ``(x, y, p, t_us)`` on the 128×128 sensor."""
    rng = _rng(seed, "cifar10dvs", label, index)
    img = _render(rng, _class_prototype(seed, "cifar10dvs", label, True), 128, 128, 80.0, True)
    a = config.amplitude_px * rng.uniform(0.85, 1.15)
    square = np.array([[0, 0], [a, 0], [a, a], [0, a]], dtype=float)
    vertices = np.concatenate([np.tile(square, (config.loops, 1)), [[0.0, 0.0]]])
    seg = config.segment_ms * 1000 * rng.uniform(0.95, 1.05, 4 * config.loops)
    n = int(config.events * rng.uniform(0.7, 1.3))
    ev = _saccade_events(rng, img, vertices, seg, n)
    hot = rng.integers(0, 128, (int(rng.integers(1, 4)), 2))
    rate = config.noise_fraction * n / (seg.sum() * 1e-6)
    noise = _noise(rng, 0, seg.sum(), 128, 128, rate, hot, 40.0)
    return _finalize(ev, noise, 128, 128, int(rng.integers(1_000_000, 50_000_000)))


def make_cifar10dvs_standin(
    root: str | Path, config: Cifar10DVSStandinConfig | None = None, seed: int = 0
) -> Path:
    """Write the CIFAR10-DVS-like stand-in under ``<root>/CIFAR10DVS``; return that folder."""
    config = config or Cifar10DVSStandinConfig()
    base = _prepare(Path(root) / "CIFAR10DVS", "cifar10dvs", config, seed, CIFAR_CLASSES)
    write_placeholder_archive(base / "CIFAR10DVS.zip")
    for label, name in enumerate(CIFAR_CLASSES):
        d = base / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(config.per_class):
            x, y, p, t = cifar_recording(seed, label, i, config)
            write_aedat4(d / f"cifar10_{name}_{i}.aedat4", t, x, y, p)
    _finish(base, "cifar10dvs", config, seed)
    return base


def ensure_cifar10dvs_standin(root, config: Cifar10DVSStandinConfig | None = None, seed=0):
    """Generate the CIFAR10-DVS stand-in unless an identical one exists."""
    config = config or Cifar10DVSStandinConfig()
    return _ensure("CIFAR10DVS", "cifar10dvs", make_cifar10dvs_standin, root, config, seed)
