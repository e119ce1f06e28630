"""Generated stand-ins for N-TIDIGITS, DVS Gesture (32×32 hdf5) and DVSPlane, written in the
hdf5 layouts of :mod:`stllr.data.fs_h5` (docs/data.md, "First-spike coding datasets").

* **N-TIDIGITS-like** (:func:`make_ntidigits_standin`): the SHD stand-in's generator
  (:mod:`stllr.data.shd_standin`: class templates of formant bands, speakers, jitter, noise)
  on 64 channels with 11 classes, formant widths and shifts scaled to 64 channels. Written
  twice into ``<root>/NTIDIGITS18/``: ``n-tidigits-single.hdf5`` (the reference's layout,
  what the task reads) and ``n-tidigits.hdf5`` (tonic's layout, names
  ``standin<speaker>x<index>-<a|b>-<digit>``), the same recordings in both.
* **DVS-Gesture-like** (:func:`make_gesture32_standin`): the gesture stand-in's recordings
  (:func:`stllr.data.standin_gesture.gesture_recording`, 128×128 sensor) of classes 0–9,
  times in µs from the first event, as ``<root>/DVSGesture32/DVS-Gesture-{train,test}10.hdf5``.
* **DVSPlane-like** (:func:`make_dvsplane_standin`): four composite shapes ("planes", one
  per class) crossing the 304×240 sensor in a straight line in about 0.3 s, events at the
  moving edges (:mod:`stllr.data.standin_saccades`) plus background noise, as
  ``<root>/DVSPlane/DVSPlane-{train,test}.hdf5``.

Each folder gets the ``stllr_standin.json`` marker (:mod:`stllr.data.standin_markers`); a
folder holding these files without a marker (real data) is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stllr.data.fs_frames import Recording
from stllr.data.fs_h5 import (
    write_event_groups,
    write_ntidigits_single,
    write_ntidigits_tonic,
)
from stllr.data.shd_standin import ShdStandinConfig, generate_split
from stllr.data.standin_gesture import GestureStandinConfig, gesture_recording
from stllr.data.standin_markers import _finish, _marker, read_marker
from stllr.data.standin_random import _noise, _rng
from stllr.data.standin_saccades import _class_prototype, _render, _saccade_events

NTIDIGITS_FILES = ("n-tidigits-single.hdf5", "n-tidigits.hdf5")
GESTURE32_FILES = ("DVS-Gesture-train10.hdf5", "DVS-Gesture-test10.hdf5")
DVSPLANE_FILES = ("DVSPlane-train.hdf5", "DVSPlane-test.hdf5")
DIGIT_NAMES = ("z", "1", "2", "3", "4", "5", "6", "7", "8", "9", "o")


def _prepare_files(base: Path, files: tuple[str, ...]) -> Path:
    """Refuse to overwrite real data (files without a marker); remove an older stand-in."""
    if read_marker(base) is None and any((base / n).exists() for n in files):
        raise FileExistsError(
            f"{base} already holds {', '.join(files)} without a stllr_standin.json marker "
            "(real data?); refusing to overwrite it with a stand-in: choose another root"
        )
    base.mkdir(parents=True, exist_ok=True)
    for n in files:
        (base / n).unlink(missing_ok=True)
    return base


def _ensure(folder: str, kind: str, make, root, config, seed: int) -> Path:
    base = Path(root) / folder
    if read_marker(base) == _marker(kind, config, seed):
        return base
    return make(root, config, seed)


# --- N-TIDIGITS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NTidigitsStandinConfig:
    """Recordings per split (balanced over the 11 digits) and their length in seconds."""

    n_train: int = 330
    n_test: int = 110
    duration_s: float = 1.0


#: the SHD stand-in's knobs scaled from 700 to 64 channels
NTIDIGITS_SOUND = ShdStandinConfig(
    formant_rate_hz=1500.0,
    formant_width=1.2,
    speaker_shift_max=3.0,
    sample_shift_std=0.6,
    channel_jitter=0.3,
    noise_rate_hz=2.0,
)


def ntidigits_recordings(split: str, n: int, seed: int, duration_s: float):
    """``[(name, Recording)]`` of one split (times in whole µs, truncated)."""
    times, units, labels, speakers = generate_split(
        split, n, seed, 11, 64, duration_s, NTIDIGITS_SOUND
    )
    out = []
    for i, (t, u, y, spk) in enumerate(zip(times, units, labels, speakers, strict=True)):
        t_us = (t.astype(np.float64) * 1e6).astype(np.int64)
        name = f"standin{int(spk):02d}x{i:05d}-{'ab'[i % 2]}-{DIGIT_NAMES[int(y)]}"
        out.append((name, Recording(t_us, u.astype(np.int64), int(y))))
    return out


def make_ntidigits_standin(root, config: NTidigitsStandinConfig | None = None, seed: int = 0):
    """Write ``<root>/NTIDIGITS18/`` (both layouts) and return that folder."""
    config = config or NTidigitsStandinConfig()
    base = _prepare_files(Path(root) / "NTIDIGITS18", NTIDIGITS_FILES)
    splits = {
        "train": ntidigits_recordings("train", config.n_train, seed, config.duration_s),
        "test": ntidigits_recordings("test", config.n_test, seed, config.duration_s),
    }
    write_ntidigits_single(
        base / NTIDIGITS_FILES[0],
        [r for _, r in splits["train"]],
        [r for _, r in splits["test"]],
    )
    write_ntidigits_tonic(base / NTIDIGITS_FILES[1], splits)
    _finish(base, "ntidigits", config, seed)
    return base


def ensure_ntidigits_standin(root, config: NTidigitsStandinConfig | None = None, seed: int = 0):
    """Generate the N-TIDIGITS stand-in unless an identical one (same marker) exists."""
    config = config or NTidigitsStandinConfig()
    return _ensure("NTIDIGITS18", "ntidigits", make_ntidigits_standin, root, config, seed)


# --- DVS Gesture 32×32 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gesture32StandinConfig:
    """Users per split (each: every lighting × classes 0–9) and recording lengths (s)."""

    train_users: tuple[int, ...] = (1, 2, 3, 4)
    test_users: tuple[int, ...] = (24, 25)
    lightings: tuple[str, ...] = ("fluorescent", "led")
    duration_s: tuple[float, float] = (1.3, 1.8)


def gesture32_recordings(users, seed: int, config: Gesture32StandinConfig) -> list[Recording]:
    style = GestureStandinConfig(lightings=config.lightings, duration_s=config.duration_s)
    out = []
    for user in users:
        for lighting in config.lightings:
            for label in range(10):
                x, y, p, t_ms = gesture_recording(seed, user, lighting, label, style).T
                t = (t_ms.astype(np.int64) - int(t_ms[0])) * 1000
                out.append(Recording(t, np.stack([x, y, p], axis=1).astype(np.int64), label))
    return out


def make_gesture32_standin(root, config: Gesture32StandinConfig | None = None, seed: int = 0):
    """Write ``<root>/DVSGesture32/DVS-Gesture-{train,test}10.hdf5``; return that folder."""
    config = config or Gesture32StandinConfig()
    base = _prepare_files(Path(root) / "DVSGesture32", GESTURE32_FILES)
    for name, group, users in zip(
        GESTURE32_FILES, ("train", "test"), (config.train_users, config.test_users), strict=True
    ):
        write_event_groups(base / name, gesture32_recordings(users, seed, config), group)
    _finish(base, "gesture32", config, seed)
    return base


def ensure_gesture32_standin(root, config: Gesture32StandinConfig | None = None, seed: int = 0):
    """Generate the DVS Gesture 32×32 stand-in unless an identical one exists."""
    config = config or Gesture32StandinConfig()
    return _ensure("DVSGesture32", "gesture32", make_gesture32_standin, root, config, seed)


# --- DVSPlane ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DVSPlaneStandinConfig:
    """Recordings per class and split, mean events per recording, crossing time (µs)."""

    per_class_train: int = 24
    per_class_test: int = 8
    events: int = 12_000
    crossing_us: int = 300_000
    noise_fraction: float = 0.05


def plane_recording(seed: int, split: str, label: int, index: int, config: DVSPlaneStandinConfig):
    """One plane-like recording in the 304×240 sensor, times from 0 µs."""
    rng = _rng(seed, "dvsplane", split, label, index)
    h, w = int(rng.integers(50, 71)), int(rng.integers(70, 96))
    img = _render(rng, _class_prototype(seed, "dvsplane", label, False), h, w, 0.8 * h, False)
    x0, y0 = rng.uniform(-0.3 * w, 0.2 * w), rng.uniform(20, 240 - h - 20)
    dx, dy = rng.uniform(120, 220), rng.uniform(-40, 40)
    vertices = np.array([[x0, y0], [x0 + dx, y0 + dy]])
    seg = np.array([config.crossing_us * rng.uniform(0.9, 1.1)])
    n = int(config.events * rng.uniform(0.8, 1.2))
    ex, ey, ep, et = _saccade_events(rng, img, vertices - vertices[0], seg, n)
    ev = (ex + x0, ey + y0, ep, et)
    rate = config.noise_fraction * n / (seg.sum() * 1e-6)
    nx, ny, npol, nt = _noise(rng, 0, seg.sum(), 304, 240, rate, np.zeros((0, 2), int), 0.0)
    x = np.round(np.concatenate([ev[0], nx])).astype(np.int64)
    y = np.round(np.concatenate([ev[1], ny])).astype(np.int64)
    p = np.concatenate([ev[2], npol]).astype(np.int64)
    t = np.floor(np.concatenate([ev[3], nt])).astype(np.int64)
    keep = (x >= 0) & (x < 304) & (y >= 0) & (y < 240)
    order = np.argsort(t[keep], kind="stable")
    t = t[keep][order]
    addr = np.stack([x[keep][order], y[keep][order], p[keep][order]], axis=1)
    return Recording(t - t[0], addr, label)


def make_dvsplane_standin(root, config: DVSPlaneStandinConfig | None = None, seed: int = 0):
    """Write ``<root>/DVSPlane/DVSPlane-{train,test}.hdf5`` and return that folder."""
    config = config or DVSPlaneStandinConfig()
    base = _prepare_files(Path(root) / "DVSPlane", DVSPLANE_FILES)
    for name, split, per_class in zip(
        DVSPLANE_FILES,
        ("train", "test"),
        (config.per_class_train, config.per_class_test),
        strict=True,
    ):
        recs = [
            plane_recording(seed, split, label, i, config)
            for i in range(per_class)
            for label in range(4)
        ]
        write_event_groups(base / name, recs, "", np.uint16)
    _finish(base, "dvsplane", config, seed)
    return base


def ensure_dvsplane_standin(root, config: DVSPlaneStandinConfig | None = None, seed: int = 0):
    """Generate the DVSPlane stand-in unless an identical one exists."""
    config = config or DVSPlaneStandinConfig()
    return _ensure("DVSPlane", "dvsplane", make_dvsplane_standin, root, config, seed)
