"""Writers of the real on-disk event formats, used by the stand-in generators.

* :func:`write_gesture_npy`: tonic's DVSGesture ``.npy`` (``(N, 4)`` int32 ``[x, y, p, t_ms]``);
* :func:`encode_ncaltech_bin`: N-MNIST/N-Caltech101 5-byte ``.bin`` events;
* :func:`write_aedat4`: minimal uncompressed AEDAT 4 (CIFAR10-DVS), read by the ``aedat``
  package;
* :func:`write_custom_events`: the bring-your-own HDF5 format of
  :mod:`stllr.data.custom_events` (docs/data.md), compressed, in compact dtypes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from stllr.errors import UserError

#: the split names of the bring-your-own format
CUSTOM_SPLITS = ("train", "test")


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
        raise UserError("N-Caltech101 .bin needs 0 ≤ x ≤ 255 and 0 ≤ y ≤ 239")
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise UserError("N-Caltech101 .bin timestamps must be in [0, 2**23) µs")
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


def _compact_int(values: np.ndarray, bound: int, floor: type = np.uint8) -> np.dtype:
    """The smallest integer dtype (at least ``floor``) that holds ``values`` and
    ``0..bound − 1``."""
    lo = min(int(values.min()), 0) if values.size else 0
    hi = max(int(values.max()), bound - 1) if values.size else bound - 1
    return np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi), floor)


def compact_events(events: np.ndarray, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """``events`` with the same fields and values in the narrowest dtypes that hold them:
    ``x``/``y`` by the sensor's width/height (uint8 up to 256, uint16 up to 65536), ``p``
    uint8, ``t`` uint32 when ``0 ≤ t < 2³²`` µs (71 minutes), else wider."""
    bounds = {"x": sensor_size[0], "y": sensor_size[1], "p": sensor_size[2], "t": 1}
    dtype = []
    for name in events.dtype.names:
        values = np.asarray(events[name])
        if values.dtype.kind not in "iub" or name not in bounds:
            dtype.append((name, values.dtype))  # left to the reader's checks
        else:
            floor = np.uint32 if name == "t" else np.uint8
            dtype.append((name, _compact_int(values.astype(np.int64), bounds[name], floor)))
    out = np.empty(events.shape, dtype=dtype)
    for name in events.dtype.names:
        out[name] = events[name]
    return out


def write_custom_events(
    path: str | os.PathLike,
    recordings: Sequence[np.ndarray],
    labels: Sequence[int],
    splits: Sequence[str],
    sensor_size: tuple[int, int, int],
    num_classes: int,
    compression: str | None = "gzip",
) -> Path:
    """Write ``recordings`` (structured arrays, fields x, y, t, p or t, x, p) in the
    bring-your-own format (:mod:`stllr.data.custom_events`, docs/data.md).

    Each recording is stored in compact dtypes (:func:`compact_events`), shuffled and
    compressed (``compression``: ``"gzip"``, ``"lzf"`` or ``None``); the values are
    unchanged, and the reader reads uncompressed files with wide dtypes too.

    Raises:
        UserError: lengths disagree, a split name is not train/test, or a recording is not
            a structured array.
    """
    path = Path(path)
    n = len(recordings)
    if len(labels) != n or len(splits) != n:
        raise UserError(
            f"{path}: {n} recordings, {len(labels)} labels, {len(splits)} splits; expected "
            "one label and one split per recording"
        )
    bad = sorted({s for s in splits if s not in CUSTOM_SPLITS})
    if bad:
        raise UserError(f"{path}: split values {bad}; expected 'train' or 'test'")
    options = {} if compression is None else {"compression": compression, "shuffle": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        group = f.create_group("events")
        for i, rec in enumerate(recordings):
            rec = np.asarray(rec)
            if rec.dtype.names is None:
                raise UserError(
                    f"{path}: recording {i} has dtype {rec.dtype}; expected a structured "
                    "array with fields x, y, t, p (or t, x, p)"
                )
            compact = compact_events(rec, sensor_size)
            group.create_dataset(str(i), data=compact, **(options if rec.size else {}))
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        f.create_dataset("split", data=np.array(list(splits), dtype="S5"))
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["num_classes"] = np.int64(num_classes)
    return path
