"""Generated stand-ins for DVS Gesture, N-Caltech101 and CIFAR10-DVS in the real file formats.

No network is available, so the toolkit generates small, seeded datasets that the *same*
loaders read (:mod:`~stllr.data.dvs_gesture`, :mod:`~stllr.data.ncaltech101`,
:mod:`~stllr.data.cifar10_dvs`):

* **gesture-like** (:func:`make_gesture_standin`): 11 classes of moving shapes on a
  128×128×2 sensor (clapping circles, left/right waves, bars turning clockwise or
  counter-clockwise on the left or right, rolling pair, drumming pair, strumming bar,
  "other" = expanding ring + wandering blob). Events come from the moving outlines
  (polarity = sign of the normal speed), plus background noise and hot pixels; users change
  position/size/speed, lightings change noise and event density. Written as tonic's
  ``DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`` ``(N, 4)`` int32
  arrays ``[x, y, p, t_ms]`` plus the (empty) archive files.
* **N-Caltech101-like** (:func:`make_ncaltech101_standin`): per class a composite "object"
  of 2–4 primitives (random per class), drawn with random pose, distractors and background,
  seen through three 100 ms saccades (a triangle, as in N-Caltech101); events at the moving
  image gradients. Written as ``NCALTECH101/Caltech101/<class>/image_XXXX.bin`` (5-byte
  events, read by tonic's ``read_mnist_file``) plus the archive file.
* **CIFAR10-DVS-like** (:func:`make_cifar10dvs_standin`): 10 classes of textured composite
  images (class-specific shapes and grating textures) filling a 128×128 view, moved in a
  repeated square loop (~1.2 s). Written as ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4``
  (AEDAT 4, uncompressed, read by tonic through the ``aedat`` package) plus the zip file.

Every recording draws from its own ``numpy`` generator seeded by ``(seed, dataset, split,
class, index)``, so output is bit-identical for a seed. Each dataset folder gets a
``stllr_standin.json`` marker; the ``ensure_*`` functions regenerate only when the marker is
missing or different and refuse to touch a folder that holds real data (no marker).
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stllr.data.events import STANDIN_MARKER, write_placeholder_archive

MARKER = STANDIN_MARKER
Rng = np.random.Generator

# =========================================================================== file writers


def write_gesture_npy(path: str | Path, x, y, p, t_ms) -> None:
    """tonic DVSGesture recording: ``(N, 4)`` int32 ``[x, y, p, t_ms]`` saved with np.save."""
    arr = np.stack([x, y, p, t_ms], axis=1).astype(np.int32)
    np.save(path, arr)


def encode_ncaltech_bin(x, y, p, t_us) -> bytes:
    """N-MNIST/N-Caltech101 40-bit events: byte 0 = x, byte 1 = y, byte 2 = p<<7 | t[22:16],
    bytes 3–4 = t[15:0] (big-endian), t in µs < 2**23. (tonic ``read_mnist_file``; y = 240
    would mark a timestamp-overflow event, so y must stay below 240.)"""
    x, y, p, t = (np.asarray(v, dtype=np.int64) for v in (x, y, p, t_us))
    if x.size and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 239):
        raise ValueError("N-Caltech101 .bin needs 0 ≤ x ≤ 255 and 0 ≤ y ≤ 239")
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-Caltech101 .bin timestamps must be in [0, 2**23) µs")
    out = np.empty((x.size, 5), dtype=np.uint8)
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
_EVENT4 = np.dtype(
    {
        "names": ["t", "x", "y", "on"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)


def _aedat4_description(width: int, height: int) -> bytes:
    return (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">stllr-standin</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr>'
        f'<attr key="sizeY" type="int">{height}</attr>'
        '<attr key="source" type="string">stllr synthetic DVS128</attr>'
        "</node></node></node></dv>"
    ).encode()


def _aedat4_ioheader(width: int, height: int) -> bytes:
    """Size-prefixed flatbuffer ``Ioheader {compression = None, file_data_position = -1,
    description}`` (identifier "IOHE"). Offsets are relative to the buffer start."""
    text = _aedat4_description(width, height)
    buf = struct.pack("<I", 20) + b"IOHE"  # root table at 20
    buf += struct.pack("<5H", 10, 20, 4, 12, 8) + b"\0\0"  # vtable at 8: 3 fields
    buf += struct.pack("<iiIq", 20 - 8, 0, 40 - 28, -1)  # table at 20; string at 40
    buf += struct.pack("<I", len(text)) + text + b"\0"
    buf += b"\0" * (-len(buf) % 8)
    return struct.pack("<I", len(buf)) + buf


def _aedat4_packet(t, x, y, p, stream_id: int = 0) -> bytes:
    """Stream id, byte size, then a size-prefixed flatbuffer ``EventPacket`` ("EVTS") whose
    ``elements`` vector holds 16-byte ``Event {t: int64, x: int16, y: int16, on: bool}``."""
    n = len(t)
    body = struct.pack("<I", 16) + b"EVTS"  # root offset (from byte 4 of the prefixed buffer)
    body += struct.pack("<3H", 6, 8, 4) + b"\0\0"  # vtable at 12: one field at +4
    body += struct.pack("<iII", 20 - 12, 28 - 24, n)  # table at 20, vector at 28
    events = np.zeros(n, dtype=_EVENT4)
    events["t"], events["x"], events["y"], events["on"] = t, x, y, p
    body += events.tobytes()  # elements start at 32: 8-byte aligned
    packet = struct.pack("<I", len(body)) + body
    return struct.pack("<iI", stream_id, len(packet)) + packet


def write_aedat4(path, t_us, x, y, p, width: int = 128, height: int = 128, packet_events=8192):
    """Minimal uncompressed AEDAT 4 file with one polarity-event stream (id 0).

    Layout: ``#!AER-DAT4.0\\r\\n``, int32 size + ``Ioheader`` flatbuffer (XML description
    declaring stream 0 as ``EVTS`` of ``width×height``), then packets of at most
    ``packet_events`` events. No file data table (``file_data_position = -1``: readers stop
    at the end of the file). Decoded by ``aedat.Decoder`` / ``tonic.io.read_aedat4``.
    """
    t, x, y, p = (np.asarray(v) for v in (t_us, x, y, p))
    with open(path, "wb") as f:
        f.write(AEDAT4_MAGIC)
        f.write(_aedat4_ioheader(width, height))
        for s in range(0, max(len(t), 1), packet_events):
            e = slice(s, s + packet_events)
            f.write(_aedat4_packet(t[e], x[e], y[e], p[e]))


# =========================================================================== event synthesis


def _rng(seed: int, *keys) -> Rng:
    """A generator seeded by ``seed`` and string/int keys (stable across runs and OSes)."""
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        words.append(zlib.crc32(str(k).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def _noise(
    rng: Rng,
    t0: float,
    t1: float,
    width: int,
    height: int,
    rate_hz: float,
    hot: np.ndarray,
    hot_hz: float,
) -> tuple[np.ndarray, ...]:
    """Background events (uniform pixels, Poisson ``rate_hz``) and hot pixels ``[K, 2]``
    firing at ``hot_hz`` each, between ``t0`` and ``t1`` µs: ``(x, y, p, t_us)``."""
    dur_s = (t1 - t0) * 1e-6
    n_bg = rng.poisson(rate_hz * dur_s)
    xs, ys = [rng.integers(0, width, n_bg)], [rng.integers(0, height, n_bg)]
    for hx, hy in hot:
        k = rng.poisson(hot_hz * dur_s)
        xs.append(np.full(k, hx))
        ys.append(np.full(k, hy))
    x, y = np.concatenate(xs), np.concatenate(ys)
    p = rng.integers(0, 2, x.size)
    t = rng.uniform(t0, t1, x.size)
    return x, y, p, t


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
        raise ValueError(f"unknown lighting {lighting!r}; expected one of {sorted(LIGHTINGS)}")
    if not 0 <= label < len(GESTURE_MOTIONS):
        raise ValueError(f"gesture label {label} out of range 0..{len(GESTURE_MOTIONS) - 1}")
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


# ----------------------------------------------------------------- static images + saccades


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


# =========================================================================== bookkeeping


def _marker(kind: str, config, seed: int) -> dict:
    return json.loads(json.dumps({"kind": kind, "seed": seed, "config": asdict(config)}))


def read_marker(base: str | Path) -> dict | None:
    """The stand-in marker of a dataset folder, or ``None`` (real data or nothing)."""
    path = Path(base) / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _prepare(base: Path, kind: str, config, seed: int, generated: tuple[str, ...]) -> Path:
    """Refuse to write over real data; remove an older stand-in's generated folders."""
    marker = read_marker(base)
    if marker is None and any((base / g).exists() for g in generated):
        raise FileExistsError(
            f"{base} already holds data without a {MARKER} marker (real data?); refusing "
            "to overwrite it with a stand-in: choose another root"
        )
    for g in generated:
        if (base / g).exists():
            shutil.rmtree(base / g)
    (base / MARKER).unlink(missing_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    return base


def _finish(base: Path, kind: str, config, seed: int) -> None:
    (base / MARKER).write_text(json.dumps(_marker(kind, config, seed), indent=1, sort_keys=True))


def _ensure(folder: str, kind: str, make: Callable, root, config, seed: int) -> Path:
    base = Path(root) / folder
    if read_marker(base) == _marker(kind, config, seed):
        return base
    return make(root, config, seed)


def ensure_gesture_standin(root, config: GestureStandinConfig | None = None, seed: int = 0):
    """Generate the gesture stand-in unless an identical one (same marker) exists."""
    config = config or GestureStandinConfig()
    return _ensure("DVSGesture", "dvsgesture", make_gesture_standin, root, config, seed)


def ensure_ncaltech101_standin(root, config: NCaltech101StandinConfig | None = None, seed=0):
    """Generate the N-Caltech101 stand-in unless an identical one exists."""
    config = config or NCaltech101StandinConfig()
    return _ensure("NCALTECH101", "ncaltech101", make_ncaltech101_standin, root, config, seed)


def ensure_cifar10dvs_standin(root, config: Cifar10DVSStandinConfig | None = None, seed=0):
    """Generate the CIFAR10-DVS stand-in unless an identical one exists."""
    config = config or Cifar10DVSStandinConfig()
    return _ensure("CIFAR10DVS", "cifar10dvs", make_cifar10dvs_standin, root, config, seed)
