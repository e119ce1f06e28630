"""Readers and writers of the first-spike coding datasets' hdf5 layouts (docs/data.md,
"First-spike coding datasets"). Every reader checks the layout and raises
:class:`~stllr.errors.UserError` naming the file, the key and what was expected.

N-TIDIGITS, the reference repository's single-digit file (``n-tidigits-single.hdf5``)::

    data/<key>/times   uint32 [N]     µs, ascending
    data/<key>/addrs   uint8 [N, 1]   channel 0..63
    data/<key>/labels  uint8 ()       class 0..10 (z = 0, 1..9, o = 10)
    extra/train_keys, extra/test_keys  int [n]   keys of each split
    extra attrs N, Ntrain, Ntest

N-TIDIGITS, the original file tonic's ``NTIDIGITS18`` reads (``n-tidigits.hdf5``)::

    <split>_labels           [n] bytes, e.g. b"speaker-a-1z3"; last part = the digits
    <split>_addresses/<id>   uint16 [N] channel 0..63     (id = the decoded label)
    <split>_timestamps/<id>  float [N] seconds

  Single-digit samples only (last part one character), labelled like the reference's
  conversion (z = 0, 1..9, o = 10; tonic itself numbers o = 0 … z = 10), times
  ``int(t_s · 1e6)`` computed in the stored float type, as the reference converts them.

DVS Gesture at 32×32 (``DVS-Gesture-{train,test}10.hdf5``) and DVSPlane
(``DVSPlane-{train,test}.hdf5``), one group per recording, keys ``"0" … "n−1"``::

    [<group>/]<key>/time    uint32 [N]     µs, ascending
    [<group>/]<key>/data    uint8|uint16 [N, 3]   [x, y, p] sensor pixels, p ∈ {0, 1}
    [<group>/]<key>/labels  integer () or [1]     class
    stats (gesture only, optional)

  DVS Gesture has a ``train`` or ``test`` group (sensor 128×128, read at ÷4 → 32×32);
  DVSPlane keys sit at the root (sensor 304×240, ÷4 → 76×60).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from stllr.data.fs_frames import Recording
from stllr.errors import UserError

#: N-TIDIGITS digit characters → class (the reference repository's numbering)
DIGIT_CLASSES = {"z": 0, **{str(d): d for d in range(1, 10)}, "o": 10}
NTIDIGITS_CHANNELS = 64


def _open(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable hdf5 file ({exc})") from None


def _dataset(f: h5py.File, key: str, expected: str, ndim: tuple[int, ...], integer: bool):
    """The array at ``key``; UserError naming the file, the key and ``expected``."""
    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        got = "missing" if node is None else "a group"
        raise UserError(f"{f.filename}: key {key!r}: expected {expected}, got {got}")
    kind_ok = np.issubdtype(node.dtype, np.integer) if integer else node.dtype.kind in "fiu"
    if node.ndim not in ndim or not kind_ok:
        raise UserError(
            f"{f.filename}: key {key!r}: expected {expected}, got {node.dtype} {list(node.shape)}"
        )
    return node[()]


def _times(f, key: str, values: np.ndarray) -> np.ndarray:
    t = np.asarray(values).astype(np.int64)
    if t.size and (bool((np.diff(t) < 0).any()) or t[0] < 0):
        raise UserError(f"{f.filename}: key {key!r}: expected ascending times ≥ 0 µs")
    return t


def _label(f, key: str, num_classes: int) -> int:
    value = np.asarray(_dataset(f, key, "an integer label, shape () or [1]", (0, 1), True))
    if value.size != 1 or not 0 <= int(value.reshape(-1)[0]) < num_classes:
        raise UserError(
            f"{f.filename}: key {key!r}: expected one label in 0..{num_classes - 1}, "
            f"got {value.tolist()}"
        )
    return int(value.reshape(-1)[0])


def _check_addresses(f, key: str, values: np.ndarray, limits: tuple[int, ...], what: str):
    for column, limit in enumerate(limits):
        col = values if values.ndim == 1 else values[:, column]
        if col.size and (int(col.min()) < 0 or int(col.max()) >= limit):
            raise UserError(
                f"{f.filename}: key {key!r}: expected {what} (column {column} in "
                f"0..{limit - 1}), got {int(col.min())}..{int(col.max())}"
            )


# --- N-TIDIGITS -----------------------------------------------------------------------------


def read_ntidigits_single(path: str | os.PathLike, split: str) -> list[Recording]:
    """The ``split`` ("train"/"test") of a reference ``n-tidigits-single.hdf5``."""
    with _open(path) as f:
        extra = f.get("extra")
        if not isinstance(extra, h5py.Group) or f"N{split}" not in extra.attrs:
            raise UserError(
                f"{f.filename}: key 'extra': expected a group with attributes N, Ntrain, Ntest"
            )
        keys = _dataset(f, f"extra/{split}_keys", "integer sample keys [n]", (1,), True)
        if len(keys) != int(extra.attrs[f"N{split}"]):
            raise UserError(
                f"{f.filename}: key 'extra/{split}_keys': expected N{split} = "
                f"{int(extra.attrs[f'N{split}'])} keys, got {len(keys)}"
            )
        out = []
        for key in keys.tolist():
            base = f"data/{key}"
            t = _times(
                f, base + "/times", _dataset(f, base + "/times", "uint32 µs [N]", (1,), True)
            )
            a = _dataset(f, base + "/addrs", "uint8 channels [N, 1]", (1, 2), True).reshape(-1)
            if a.size != t.size:
                raise UserError(f"{f.filename}: key {base!r}: times and addrs differ in length")
            _check_addresses(f, base + "/addrs", a, (NTIDIGITS_CHANNELS,), "channels")
            out.append(Recording(t, a.astype(np.int64), _label(f, base + "/labels", 11)))
    return out


def write_ntidigits_single(path: str | os.PathLike, train: list[Recording], test: list[Recording]):
    """Write ``train`` then ``test`` in the reference's single-digit layout."""
    with h5py.File(path, "w") as f:
        data, extra = f.create_group("data"), f.create_group("extra")
        for key, rec in enumerate([*train, *test]):
            g = data.create_group(str(key))
            g.create_dataset("times", data=np.asarray(rec.t), dtype=np.uint32)
            g.create_dataset("addrs", data=np.asarray(rec.addr).reshape(-1, 1), dtype=np.uint8)
            g.create_dataset("labels", data=rec.label, dtype=np.uint8)
        extra.create_dataset("train_keys", data=np.arange(len(train)))
        extra.create_dataset("test_keys", data=np.arange(len(train), len(train) + len(test)))
        extra.attrs["N"] = len(train) + len(test)
        extra.attrs["Ntrain"] = len(train)
        extra.attrs["Ntest"] = len(test)


def read_ntidigits_tonic(path: str | os.PathLike, split: str) -> list[Recording]:
    """The single-digit samples of ``split`` in tonic's ``n-tidigits.hdf5`` layout."""
    with _open(path) as f:
        node = f.get(f"{split}_labels")
        if not isinstance(node, h5py.Dataset) or node.ndim != 1 or node.dtype.kind not in "SO":
            raise UserError(
                f"{f.filename}: key '{split}_labels': expected byte-string labels [n] such as "
                "b'speaker-a-1z3'"
            )
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in node[()]]
        out = []
        for name in names:
            digit = name.split("-")[-1]
            if len(digit) != 1:
                continue  # digit sequences: not part of the single-digit task
            if digit not in DIGIT_CLASSES:
                raise UserError(
                    f"{f.filename}: key '{split}_labels': expected digits z, 1-9, o after the "
                    f"last '-', got {name!r}"
                )
            tk, ak = f"{split}_timestamps/{name}", f"{split}_addresses/{name}"
            raw = _dataset(f, tk, "float seconds [N]", (1,), False)
            t = _times(f, tk, np.asarray(raw) * 1e6)
            a = _dataset(f, ak, "integer channels [N]", (1,), True)
            if a.size != t.size:
                raise UserError(
                    f"{f.filename}: key {ak!r}: expected {t.size} channels, got {a.size}"
                )
            _check_addresses(f, ak, a, (NTIDIGITS_CHANNELS,), "channels")
            out.append(Recording(t, a.astype(np.int64), DIGIT_CLASSES[digit]))
    return out


def write_ntidigits_tonic(path: str | os.PathLike, splits: dict[str, list[tuple[str, Recording]]]):
    """Write ``{split: [(name, recording)]}`` in tonic's layout (``name``'s last ``-`` part is
    the digit string). Times are stored as float64 seconds ``(t + 0.5 µs) / 1e6``, so that the
    truncating conversion of :func:`read_ntidigits_tonic` returns the integer ``t``."""
    with h5py.File(path, "w") as f:
        for split, items in splits.items():
            f.create_dataset(f"{split}_labels", data=np.array([n.encode() for n, _ in items]))
            ag, tg = f.create_group(f"{split}_addresses"), f.create_group(f"{split}_timestamps")
            for name, rec in items:
                ag.create_dataset(name, data=np.asarray(rec.addr), dtype=np.uint16)
                tg.create_dataset(name, data=(np.asarray(rec.t, dtype=np.float64) + 0.5) / 1e6)


# --- DVS Gesture 32×32 and DVSPlane ------------------------------------------------------------


def _read_groups(f: h5py.File, base: str, num_classes: int, sensor: tuple[int, int]):
    group = f[base] if base else f
    keys = [k for k in group.keys() if k != "stats"]
    if sorted(keys, key=lambda k: (len(k), k)) != [str(i) for i in range(len(keys))]:
        raise UserError(
            f"{f.filename}: key {base or '/'!r}: expected recording groups named 0..{len(keys) - 1}"
            f" (plus 'stats'), got {sorted(keys)[:5]}…"
        )
    w, h = sensor
    out = []
    for i in range(len(keys)):
        key = f"{base}/{i}" if base else str(i)
        t = _times(f, key + "/time", _dataset(f, key + "/time", "uint32 µs [N]", (1,), True))
        d = _dataset(f, key + "/data", "integer [N, 3] = [x, y, p]", (2,), True)
        if d.shape != (t.size, 3):
            raise UserError(
                f"{f.filename}: key {key + '/data'!r}: expected [{t.size}, 3] = [x, y, p], "
                f"got {list(d.shape)}"
            )
        _check_addresses(f, key + "/data", d, (w, h, 2), f"[x, y, p] in a {w}×{h} sensor")
        out.append(Recording(t, d.astype(np.int64), _label(f, key + "/labels", num_classes)))
    return out


def read_gesture32(path: str | os.PathLike, group: str, num_classes: int = 10) -> list[Recording]:
    """The recordings of ``group`` ("train"/"test") of a reference DVS Gesture hdf5."""
    with _open(path) as f:
        if not isinstance(f.get(group), h5py.Group):
            raise UserError(f"{f.filename}: key {group!r}: expected a group of recordings")
        return _read_groups(f, group, num_classes, (128, 128))


def read_dvsplane(path: str | os.PathLike, num_classes: int = 4) -> list[Recording]:
    """The recordings of a reference DVSPlane hdf5 (keys at the root)."""
    with _open(path) as f:
        return _read_groups(f, "", num_classes, (304, 240))


def write_event_groups(
    path: str | os.PathLike, recordings: list[Recording], group: str = "", data_dtype=np.uint8
) -> None:
    """Write recordings as ``[<group>/]<i>/{time, data, labels}`` (DVS Gesture: ``group``
    "train"/"test", uint8 data and a ``stats`` class histogram; DVSPlane: no group, uint16)."""
    with h5py.File(path, "w") as f:
        base = f.create_group(group) if group else f
        for i, rec in enumerate(recordings):
            g = base.create_group(str(i))
            g.create_dataset("time", data=np.asarray(rec.t), dtype=np.uint32)
            g.create_dataset("data", data=np.asarray(rec.addr), dtype=data_dtype)
            g.create_dataset("labels", data=rec.label, dtype=np.uint8)
        if group:
            labels = np.array([r.label for r in recordings])
            counts = np.bincount(labels).astype(np.float64)
            f.create_dataset("stats", data=counts / max(counts.sum(), 1.0))
