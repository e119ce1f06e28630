"""Bring-your-own HDF5 event format: reading, hand-checked frames, clear errors."""

import h5py
import numpy as np
import pytest
import tonic
import torch

from stllr.data.custom_events import CustomEventsConfig, custom_events_dataset, write_custom_events
from stllr.errors import UserError

#: how every format error ends
HINT = "; see docs/data.md (writer: stllr.data.event_writers.write_custom_events)"

CAM = [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")]
AUDIO = [("t", "<i8"), ("x", "<u2"), ("p", "u1")]


def rec(dtype, **cols):
    out = np.zeros(len(cols["t"]), dtype=dtype)
    for k, v in cols.items():
        out[k] = v
    return out


def camera_file(path, **overrides):
    recs = [
        rec(CAM, x=[0, 1, 1, 3], y=[0, 2, 2, 1], t=[0, 400, 900, 2500], p=[1, 0, 0, 1]),
        rec(CAM, x=[2, 2], y=[1, 1], t=[10, 20], p=[0, 1]),
        rec(CAM, x=[3], y=[0], t=[5], p=[1]),
    ]
    args = dict(
        recordings=recs,
        labels=[2, 0, 1],
        splits=["train", "train", "test"],
        sensor_size=(4, 3, 2),
        num_classes=3,
    )
    args.update(overrides)
    return write_custom_events(path, **args)


def cfg(path, **kw):
    return CustomEventsConfig(path=str(path), progress=False, cache=False, **kw)


def test_camera_frames_by_hand(tmp_path):
    path = camera_file(tmp_path / "cam.h5")
    ds = custom_events_dataset(cfg(path, time_window_us=1000))
    assert len(ds) == 2 and ds.labels == [2, 0] and ds.sensor_size == (4, 3, 2)
    x, y = ds[0]
    # windows of 1 ms from t=0: floor((2500 − 1000) / 1000) + 1 = 2 frames; t=2500 dropped
    want = torch.zeros(2, 2, 3, 4)
    want[0, 1, 0, 0] = 1
    want[0, 0, 2, 1] = 2
    assert y == 2 and x.dtype == torch.float32 and torch.equal(x, want)
    bins = custom_events_dataset(cfg(path, n_time_bins=5))
    # tonic's bins are floor(2500 / 5) = 500 µs wide from t=0: the event at t=2500 falls
    # past the last bin and is dropped
    b = bins[0][0]
    assert b.shape == (5, 2, 3, 4) and b.sum() == 3
    assert b[0, 1, 0, 0] == 1 and b[0, 0, 2, 1] == 1 and b[1, 0, 2, 1] == 1  # t=0, 400, 900
    test = custom_events_dataset(cfg(path, split="test", time_window_us=1000))
    assert len(test) == 1 and test[0][1] == 1 and test[0][0][0, 1, 0, 3] == 1


def test_audio_frames_and_cache(tmp_path):
    recs = [rec(AUDIO, t=[0, 5, 12, 30], x=[3, 3, 699, 1], p=[0, 0, 0, 0])]
    path = write_custom_events(tmp_path / "a.h5", recs, [4], ["train"], (700, 1, 1), 5)
    conf = CustomEventsConfig(path=str(path), time_window_us=10, progress=False)
    ds = custom_events_dataset(conf)
    x, y = ds[0]
    assert y == 4 and x.shape == (3, 1, 1, 700)  # [T, P, H=1, W=channels]
    assert x[0, 0, 0, 3] == 2 and x[1, 0, 0, 699] == 1 and x.sum() == 3
    assert ds.cache_folder is not None and ds.cache_folder.parent == tmp_path / "cache"
    assert torch.equal(custom_events_dataset(conf)[0][0], x)


def corrupt(path, how):
    with h5py.File(path, "a") as f:
        if how == "missing-labels":
            del f["labels"]
        elif how == "missing-attr":
            del f.attrs["num_classes"]
        elif how == "float-x":
            data = f["events/1"][()]
            del f["events/1"]
            new = np.zeros(data.size, dtype=[("x", "f4"), ("y", "i2"), ("t", "i8"), ("p", "u1")])
            for k in ("x", "y", "t", "p"):
                new[k] = data[k]
            f["events/1"] = new
        elif how == "missing-field":
            data = f["events/1"][()]
            del f["events/1"]
            f["events/1"] = np.zeros(data.size, dtype=[("x", "i2"), ("t", "i8"), ("p", "u1")])
        elif how == "empty":
            data = f["events/1"][()]
            del f["events/1"]
            f["events/1"] = data[:0]
        elif how == "label-range":
            f["labels"][1] = 3
        elif how == "bad-split":
            f["split"][0] = b"val"
        elif how == "missing-recording":
            del f["events/2"]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing-labels", "missing key 'labels'"),
        ("missing-attr", "missing file attribute 'num_classes'"),
        ("float-x", r"'events/1' field 'x' has dtype float32"),
        ("missing-field", r"'events/1' lacks field 'y'"),
        ("empty", r"'events/1' is empty"),
        ("label-range", r"'labels'\[1\] = 3 out of range; expected 0\.\.2"),
        ("bad-split", "'split' has values \\['val'\\]"),
        ("missing-recording", r"missing \['2'\]"),
    ],
)
def test_format_errors_name_file_and_key(tmp_path, how, message):
    path = camera_file(tmp_path / "bad.h5")
    corrupt(path, how)
    with pytest.raises(ValueError, match=message) as info:
        custom_events_dataset(cfg(path, time_window_us=1000))
    assert str(path) in str(info.value)
    assert isinstance(info.value, UserError) and str(info.value).endswith(HINT)
    assert "\n" not in str(info.value)


def test_truncated_file_and_bad_events(tmp_path):
    path = camera_file(tmp_path / "t.h5")
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ValueError, match="cannot be opened as HDF5") as info:
        custom_events_dataset(cfg(path, time_window_us=1000))
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        custom_events_dataset(cfg(tmp_path / "nope.h5", time_window_us=1000))
    bad = camera_file(
        tmp_path / "b.h5",
        recordings=[rec(CAM, x=[0, 9], y=[0, 0], t=[0, 1], p=[0, 0])] * 3,
    )
    with pytest.raises(ValueError, match=r"'events/0': field 'x' spans \[0, 9\]"):
        custom_events_dataset(cfg(bad, time_window_us=1000))
    with pytest.raises(ValueError, match="exactly one of time_window_us"):
        custom_events_dataset(cfg(bad))
    with pytest.raises(ValueError, match="exactly one of time_window_us"):
        custom_events_dataset(cfg(bad, time_window_us=5, n_time_bins=3))


def _no_tonic_binning(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("ToFrame was called: the frames would have been allocated")

    monkeypatch.setattr(tonic.transforms, "ToFrame", boom)


def test_outlier_timestamp_refused_before_binning(tmp_path, monkeypatch):
    """One event at 10^12 µs in a test recording: 10^9 frames of 1 ms would be needed."""
    _no_tonic_binning(monkeypatch)
    recs = [
        rec(CAM, x=[0], y=[0], t=[0], p=[0]),
        rec(CAM, x=[0], y=[0], t=[0], p=[0]),
        rec(CAM, x=[3, 1], y=[0, 2], t=[5, 10**12], p=[1, 0]),
    ]
    path = camera_file(tmp_path / "outlier.h5", recordings=recs)
    n = (10**12 - 5 - 1000) // 1000 + 1  # tonic's complete 1 ms windows from t = 5
    with pytest.raises(UserError, match=f"'events/2': binning would make {n} frames") as info:
        custom_events_dataset(cfg(path, split="test", time_window_us=1000))
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and msg.endswith(HINT)
    assert "5..1000000000000 µs" in msg and "frame_us" in msg and "STLLR_MAX_FRAME_BYTES" in msg


def test_huge_sensor_size_refused_from_the_header(tmp_path, monkeypatch):
    _no_tonic_binning(monkeypatch)
    path = camera_file(tmp_path / "huge.h5", sensor_size=(1 << 20, 1 << 20, 2))
    with pytest.raises(UserError, match=r"attribute 'sensor_size' = \[1048576, 1048576, 2\]"):
        custom_events_dataset(cfg(path, n_time_bins=4))
    # 1 frame of 2·2^40 float32 values = 8 TiB
    with pytest.raises(UserError, match="1 frame of .* 8 TiB of float32") as info:
        custom_events_dataset(cfg(path, n_time_bins=4))
    assert str(info.value).endswith(HINT)


@pytest.mark.parametrize("split", ["train", "test"])
def test_unsorted_times_refused_in_every_split(tmp_path, split):
    recs = [
        rec(CAM, x=[0, 1], y=[0, 0], t=[0, 9], p=[0, 0]),
        rec(CAM, x=[0, 1, 2], y=[0, 0, 0], t=[0, 40, 30], p=[0, 0, 0]),
    ]
    splits = [{"train": "test", "test": "train"}[split], split]
    path = write_custom_events(tmp_path / "u.h5", recs, [0, 1], splits, (4, 3, 2), 2)
    with pytest.raises(UserError, match="'events/1': field 't' must be sorted") as info:
        custom_events_dataset(cfg(path, split=split, time_window_us=10))
    assert str(info.value).endswith(HINT)
    other = {"train": "test", "test": "train"}[split]
    assert len(custom_events_dataset(cfg(path, split=other, time_window_us=10))) == 1


def _old_layout_file(path, recs, labels, splits, sensor_size, num_classes):
    """The format as written before compact dtypes and compression (and by hand)."""
    with h5py.File(path, "w") as f:
        for i, r in enumerate(recs):
            f.create_dataset(f"events/{i}", data=r)
        f["labels"] = np.asarray(labels, dtype=np.int64)
        f["split"] = np.array(splits, dtype="S5")
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["num_classes"] = np.int64(num_classes)
    return path


def _random_recordings(n, events, sensor_size, seed=0):
    rng = np.random.default_rng(seed)
    w, h, p = sensor_size
    recs = []
    for _ in range(n):
        recs.append(
            rec(
                CAM,
                x=rng.integers(0, w, events),
                y=rng.integers(0, h, events),
                t=np.sort(rng.integers(0, 3_000_000, events)),
                p=rng.integers(0, p, events),
            )
        )
    return recs


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_writer_compact_and_compressed_round_trip(tmp_path, compression):
    size = (128, 96, 2)
    recs = _random_recordings(4, 5000, size)
    labels, splits = [0, 1, 0, 1], ["train", "train", "test", "test"]
    old = _old_layout_file(tmp_path / "old.h5", recs, labels, splits, size, 2)
    new = write_custom_events(
        tmp_path / "new.h5", recs, labels, splits, size, 2, compression=compression
    )
    # 8 + 2 + 2 + 1 = 13 bytes per event before; 4 + 1 + 1 + 1 = 7 uncompressed after
    assert new.stat().st_size < 0.6 * old.stat().st_size
    with h5py.File(new, "r") as f:
        for i, r in enumerate(recs):
            ds = f[f"events/{i}"]
            assert ds.compression == compression
            assert [ds.dtype[k] for k in ("x", "y", "t", "p")] == [
                np.uint8,
                np.uint8,
                np.uint32,
                np.uint8,
            ]
            got = ds[()]
            for k in ("x", "y", "t", "p"):
                np.testing.assert_array_equal(got[k], r[k])
    # the reader gives the same frames from the old layout and the new one
    for split in ("train", "test"):
        a = custom_events_dataset(cfg(old, split=split, time_window_us=100_000))
        b = custom_events_dataset(cfg(new, split=split, time_window_us=100_000))
        assert len(a) == len(b) == 2
        for i in range(2):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]


def test_writer_widens_only_where_needed(tmp_path):
    big = [rec(AUDIO, t=[0, 2**32 + 5], x=[0, 699], p=[0, 1])]
    path = write_custom_events(tmp_path / "w.h5", big, [0], ["train"], (700, 1, 2), 1)
    with h5py.File(path, "r") as f:
        ds = f["events/0"]
        assert (ds.dtype["t"], ds.dtype["x"], ds.dtype["p"]) == (np.uint64, np.uint16, np.uint8)
        assert ds[()]["t"].tolist() == [0, 2**32 + 5]
    x, _ = custom_events_dataset(cfg(path, n_time_bins=2))[0]
    assert x.shape == (2, 2, 1, 700) and x.sum() == 1  # tonic drops the last event
