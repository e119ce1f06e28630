"""Writers of the real on-disk event formats, used by the stand-in generators.

* :func:`write_gesture_npy`: tonic's DVSGesture ``.npy`` (``(N, 4)`` int32 ``[x, y, p, t_ms]``);
* :func:`encode_ncaltech_bin`: N-MNIST/N-Caltech101 5-byte ``.bin`` events;
* :func:`write_aedat4`: minimal uncompressed AEDAT 4 (CIFAR10-DVS), read by the ``aedat``
  package.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from stllr.errors import UserError


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
