"""Bring-your-own HDF5 event format: reading, hand-checked frames, clear errors."""

import h5py
import numpy as np
import pytest
import torch

from stllr.data.custom_events import CustomEventsConfig, custom_events_dataset, write_custom_events

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
