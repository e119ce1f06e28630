"""DVS Gesture loader on small fake files in tonic's real layout."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stllr.data.dvs_gesture import GestureConfig, dvs_gesture_dataset

pytestmark = pytest.mark.filterwarnings("ignore:.*extraction looks incomplete")

# [x, y, p, t_ms]: one 1.7 s recording. Train: one 1.575 s slice from t=0 ms, frames of
# 75 ms; the slice's last event (1500 ms) closes 20 complete frames and is itself dropped.
EVENTS = np.array(
    [
        [0, 0, 1, 0],
        [5, 6, 0, 10],
        [5, 6, 0, 20],
        [100, 100, 1, 80],
        [7, 8, 1, 1499],
        [9, 9, 1, 1500],
        [3, 3, 0, 1700],
    ]
)


def expected_train_counts():
    f = torch.zeros(20, 2, 128, 128)
    f[0, 1, 0, 0] = 1
    f[0, 0, 6, 5] = 2
    f[1, 1, 100, 100] = 1
    f[19, 1, 8, 7] = 1
    return f


def write(root, split, user, lighting, label, events):
    folder = root / "DVSGesture" / split / f"user{user:02d}_{lighting}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.npy"
    np.save(path, np.asarray(events))
    return path


@pytest.fixture
def root(tmp_path):
    write(tmp_path, "ibmGestureTrain", 1, "led", 4, EVENTS)
    write(tmp_path, "ibmGestureTrain", 2, "fluorescent_led", 0, EVENTS)
    write(tmp_path, "ibmGestureTest", 24, "natural", 10, EVENTS)
    return tmp_path


def cfg(root, **kw):
    return GestureConfig(root=str(root), progress=False, cache_dir=str(root / "cache"), **kw)


def test_train_counts_by_hand_before_resize(root):
    ds = dvs_gesture_dataset(cfg(root, size=128, augment=False))
    assert len(ds) == 2  # one slice per recording
    x, y = ds[0]  # sorted by user: user 1 (label 4) then user 2 (label 0)
    assert y == 4 and x.dtype == torch.float32
    assert torch.equal(x, expected_train_counts())
    assert ds.recording_users == [1, 2] and ds.recording_lighting == ["led", "fluorescent_led"]
    assert ds.sample_users == [1, 2] and ds.labels == [4, 0]


def test_train_resize_and_crop(root):
    plain = dvs_gesture_dataset(cfg(root, augment=False))
    x, _ = plain[0]
    want = F.interpolate(
        expected_train_counts(), size=(32, 32), mode="bilinear", antialias=True
    ).round()
    assert x.shape == (20, 2, 32, 32) and torch.equal(x, want)
    raw = dvs_gesture_dataset(cfg(root, augment=False, round_resized=False))[0][0]
    torch.testing.assert_close(
        raw, F.interpolate(expected_train_counts(), size=(32, 32), mode="bilinear", antialias=True)
    )


def test_train_random_crop_shared_and_seeded(root):
    a = dvs_gesture_dataset(cfg(root, size=128, seed=3))
    b = dvs_gesture_dataset(cfg(root, size=128, seed=3))
    crops_a = [a[1][0] for _ in range(8)]
    crops_b = [b[1][0] for _ in range(8)]
    assert all(torch.equal(u, v) for u, v in zip(crops_a, crops_b, strict=True))
    padded = F.pad(expected_train_counts(), (4, 4, 4, 4))
    offsets = set()
    for c in crops_a:  # each crop is one window of the zero-padded stack, shared by all frames
        assert c.shape == (20, 2, 128, 128)
        hits = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if torch.equal(padded[..., i : i + 128, j : j + 128], c)
        ]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 1
    test = dvs_gesture_dataset(cfg(root, train=False, size=128, seed=3))
    assert torch.equal(test[0][0], test[0][0])  # never cropped


def test_test_split_is_not_sliced(root):
    ds = dvs_gesture_dataset(cfg(root, train=False, size=128))
    x, y = ds[0]
    # whole 1.7 s recording: floor((1700 − 75) / 75) + 1 = 22 frames of 75 ms covering
    # [0, 1650) ms; the event at 1500 ms is in frame 20, the one at 1700 ms is dropped
    assert y == 10 and x.shape == (22, 2, 128, 128)
    assert torch.equal(x[:20], expected_train_counts())
    assert x[20].sum() == 1 and x[20, 1, 9, 9] == 1 and x[21].sum() == 0
    assert ds.recording_users == [24] and ds.recording_lighting == ["natural"]


def test_slicing_long_recording(root):
    long = EVENTS.copy()
    long[:, 3] = long[:, 3] * 2  # 3.4 s: floor((3400 − 1575) / 1575) + 1 = 2 slices
    write(root, "ibmGestureTrain", 3, "lab", 5, long)
    ds = dvs_gesture_dataset(cfg(root, users=(3,), augment=False))
    assert len(ds) == 2 and ds.sample_users == [3, 3]
    assert all(ds[i][0].shape[0] <= 20 for i in range(2))
    with pytest.raises(ValueError, match="no recording of users"):
        dvs_gesture_dataset(cfg(root, users=(9,)))


def test_missing_data_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        dvs_gesture_dataset(cfg(tmp_path))
    text = str(info.value)
    assert "ibmGestureTrain" in text and "userNN_<lighting>" in text and "0.npy" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("truncated", "cannot be read as a DVSGesture recording"),
        ("empty-file", "empty file"),
        ("no-events", "empty recording"),
        ("three-columns", "cannot be read as a DVSGesture recording"),
    ],
)
def test_corrupt_recordings_name_the_file(tmp_path, content, message):
    path = write(tmp_path, "ibmGestureTrain", 1, "led", 2, EVENTS)
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:150])
    elif content == "empty-file":
        path.write_bytes(b"")
    elif content == "no-events":
        np.save(path, np.zeros((0, 4), dtype=np.int64))
    else:
        np.save(path, EVENTS[:, :3])
    with pytest.raises(ValueError, match=message) as info:
        dvs_gesture_dataset(cfg(tmp_path))
    assert str(path) in str(info.value)


def test_label_out_of_range_names_the_file(tmp_path):
    path = write(tmp_path, "ibmGestureTrain", 1, "led", 11, EVENTS)
    with pytest.raises(ValueError, match=r"label 11 .* out of range") as info:
        dvs_gesture_dataset(cfg(tmp_path))
    assert str(path) in str(info.value)


@pytest.mark.filterwarnings("default")
def test_partial_real_data_warns(root):
    with pytest.warns(UserWarning, match="found 2 ibmGestureTrain recordings, the full dataset"):
        dvs_gesture_dataset(cfg(root))
    (root / "DVSGesture" / "stllr_standin.json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dvs_gesture_dataset(cfg(root))


def test_bad_folder_name(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "alice"
    folder.mkdir(parents=True)
    np.save(folder / "1.npy", EVENTS)
    with pytest.raises(ValueError, match="unexpected folder or file name"):
        dvs_gesture_dataset(cfg(tmp_path))


@pytest.mark.parametrize("train", [True, False])
def test_unsorted_times_refused_in_both_splits(tmp_path, train):
    """The last two events swapped: in the train split they fall into the partial last
    slice, which the slicer drops, so only a check of the whole recording sees them."""
    events = EVENTS.copy()
    events[[-2, -1], 3] = events[[-1, -2], 3]  # t = …, 1700, 1500 ms
    split = "ibmGestureTrain" if train else "ibmGestureTest"
    path = write(tmp_path, split, 1 if train else 24, "led", 2, events)
    with pytest.raises(ValueError, match="field 't' must be sorted in ascending time") as info:
        dvs_gesture_dataset(cfg(tmp_path, train=train))
    assert str(path) in str(info.value)
