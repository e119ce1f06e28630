"""The first-spike coding datasets: hand-made files with known events give known frames, the
readers read what the writers wrote, wrong layouts give one-line errors (docs/data.md)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.data.fs_frames import BinSpec, Recording, fixed_bins
from stllr.data.fs_h5 import (
    read_dvsplane,
    read_gesture32,
    read_ntidigits_single,
    read_ntidigits_tonic,
    write_event_groups,
    write_ntidigits_single,
    write_ntidigits_tonic,
)
from stllr.data.standin_first_spike import (
    Gesture32StandinConfig,
    NTidigitsStandinConfig,
    make_gesture32_standin,
    make_ntidigits_standin,
)
from stllr.errors import UserError
from stllr.tasks import load_task

AUDIO = BinSpec(steps=4, dt_us=5000, shape=(64,), empty=2)


def expected_audio():
    """Events (1000, ch 3), (1500, ch 3), (7000, ch 5), (12000, ch 63), (30000, ch 1):
    the window keeps t < 4·5000, counted from the first event (1000): bins 0, 0, 1, 2."""
    frames = np.zeros((6, 64), np.float32)
    frames[0, 3], frames[1, 5], frames[2, 63] = 2, 1, 1
    return frames


def test_hand_made_reference_ntidigits_file(tmp_path):
    path = tmp_path / "n-tidigits-single.hdf5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data/0")
        g["times"] = np.array([1000, 1500, 7000, 12000, 30000], np.uint32)
        g["addrs"] = np.array([[3], [3], [5], [63], [1]], np.uint8)
        g["labels"] = np.uint8(4)
        g = f.create_group("data/1")
        g["times"] = np.array([0], np.uint32)
        g["addrs"] = np.array([[0]], np.uint8)
        g["labels"] = np.uint8(10)
        f["extra/train_keys"] = np.array([0])
        f["extra/test_keys"] = np.array([1])
        f["extra"].attrs.update({"N": 2, "Ntrain": 1, "Ntest": 1})
    (rec,) = read_ntidigits_single(path, "train")
    assert rec.label == 4
    np.testing.assert_array_equal(fixed_bins(rec, AUDIO), expected_audio())
    (test,) = read_ntidigits_single(path, "test")
    assert test.label == 10 and test.t.tolist() == [0]


def test_hand_made_tonic_ntidigits_file(tmp_path):
    path = tmp_path / "n-tidigits.hdf5"
    names = [b"ab-a-3", b"ab-a-12", b"cd-b-o", b"cd-b-z"]
    with h5py.File(path, "w") as f:
        f["train_labels"] = np.array(names)
        for n in names:
            # 0.2 µs above each whole µs: the conversion truncates
            f[f"train_timestamps/{n.decode()}"] = (
                np.array([1000, 1500, 7000, 12000, 30000]) + 0.2
            ) / 1e6
            f[f"train_addresses/{n.decode()}"] = np.array([3, 3, 5, 63, 1], np.uint16)
    recs = read_ntidigits_tonic(path, "train")
    assert [r.label for r in recs] == [3, 10, 0]  # the digit sequence "12" is left out
    assert recs[0].t.tolist() == [1000, 1500, 7000, 12000, 30000]
    np.testing.assert_array_equal(fixed_bins(recs[0], AUDIO), expected_audio())


def test_hand_made_gesture32_file():
    spec = BinSpec(steps=4, dt_us=10_000, shape=(2, 32, 32), ds=4)
    rec = Recording(
        np.array([0, 9999, 10000, 35000, 50000]),
        np.array([[0, 0, 1], [127, 127, 0], [4, 8, 1], [12, 4, 0], [5, 5, 1]]),
        7,
    )
    frames = fixed_bins(rec, spec)
    expected = np.zeros((4, 2, 32, 32), np.float32)
    expected[0, 1, 0, 0] = expected[0, 0, 31, 31] = 1  # [k, p, y // 4, x // 4]
    expected[1, 1, 2, 1] = expected[3, 0, 1, 3] = 1
    np.testing.assert_array_equal(frames, expected)
    # slice (file time < 40 ms) before the shift to the first kept event: 44 ms is dropped
    late = Recording(np.array([5000, 14000, 16000, 44000]), np.zeros((4, 3), int), 0)
    assert fixed_bins(late, spec)[:, 0, 0, 0].tolist() == [2, 1, 0, 0]


def test_hand_made_dvsplane_file(tmp_path):
    path = tmp_path / "DVSPlane-train.hdf5"
    with h5py.File(path, "w") as f:
        f["0/time"] = np.array([100_000, 101_000, 103_500, 110_000], np.uint32)
        f["0/data"] = np.array([[303, 239, 1], [0, 0, 0], [8, 4, 1], [1, 1, 1]], np.uint16)
        f["0/labels"] = np.uint8(2)
    (rec,) = read_dvsplane(path)
    spec = BinSpec(steps=4, dt_us=2000, shape=(2, 60, 76), ds=4, align="shift_then_slice")
    frames = fixed_bins(rec, spec)
    expected = np.zeros((4, 2, 60, 76), np.float32)
    expected[0, 1, 59, 75] = expected[0, 0, 0, 0] = expected[1, 1, 1, 2] = 1
    np.testing.assert_array_equal(frames, expected)
    assert rec.label == 2


def _random_recordings(seed, n, addr, classes, sensor=None):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(g.integers(1, 50))
        t = np.sort(g.integers(0, 2_000_000, k))
        if sensor is None:
            a = g.integers(0, addr, k)
        else:
            a = np.stack(
                [g.integers(0, sensor[0], k), g.integers(0, sensor[1], k), g.integers(0, 2, k)], 1
            )
        out.append(Recording(t, a, int(g.integers(0, classes))))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label
        np.testing.assert_array_equal(x.t, y.t)
        np.testing.assert_array_equal(x.addr, y.addr)


def test_readers_read_what_writers_wrote(tmp_path):
    train, test = _random_recordings(0, 7, 64, 11), _random_recordings(1, 3, 64, 11)
    write_ntidigits_single(tmp_path / "s.hdf5", train, test)
    _same(read_ntidigits_single(tmp_path / "s.hdf5", "train"), train)
    _same(read_ntidigits_single(tmp_path / "s.hdf5", "test"), test)
    digits = "z123456789o"
    named = {"train": [(f"u{i}-a-{digits[r.label]}", r) for i, r in enumerate(train)]}
    write_ntidigits_tonic(tmp_path / "t.hdf5", named)
    _same(read_ntidigits_tonic(tmp_path / "t.hdf5", "train"), train)
    gest = _random_recordings(2, 5, 0, 10, (128, 128))
    write_event_groups(tmp_path / "g.hdf5", gest, "test")
    _same(read_gesture32(tmp_path / "g.hdf5", "test"), gest)
    plane = _random_recordings(3, 5, 0, 4, (304, 240))
    write_event_groups(tmp_path / "p.hdf5", plane, "", np.uint16)
    _same(read_dvsplane(tmp_path / "p.hdf5"), plane)


def _drop_labels(f):
    del f["train/0/labels"]


def _label_out_of_range(f):
    f["train/0/labels"][()] = 10


def _two_columns(f):
    del f["train/0/data"]
    f["train/0/data"] = np.zeros((3, 2), np.uint8)


def _rename_key(f):
    f["train"].move("1", "7")


def _unsorted_times(f):
    f["train/0/time"][0] = 5


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_drop_labels, r"g\.hdf5: key 'train/0/labels': expected"),
        (_label_out_of_range, r"key 'train/0/labels': expected one label in 0\.\.9"),
        (_two_columns, r"key 'train/0/data': expected \[3, 3\]"),
        (_rename_key, r"key 'train': expected recording groups named 0\.\.1"),
        (_unsorted_times, r"key 'train/0/time': expected ascending"),
    ],
)
def test_wrong_gesture_layout_names_file_and_key(tmp_path, edit, match):
    path = tmp_path / "g.hdf5"
    recs = [Recording(np.array([0, 1, 2]), np.ones((3, 3), int), 1) for _ in range(2)]
    write_event_groups(path, recs, "train")
    with h5py.File(path, "a") as f:
        edit(f)
    with pytest.raises(UserError, match=match):
        read_gesture32(path, "train")


def test_wrong_ntidigits_layouts(tmp_path):
    path = tmp_path / "s.hdf5"
    write_ntidigits_single(path, _random_recordings(0, 2, 64, 11), [])
    with h5py.File(path, "a") as f:
        del f["extra"].attrs["Ntest"]
    with pytest.raises(UserError, match=r"s\.hdf5: key 'extra': expected a group with attributes"):
        read_ntidigits_single(path, "test")
    with h5py.File(path, "a") as f:
        f["data/1/addrs"][0, 0] = 64
    with pytest.raises(UserError, match=r"key 'data/1/addrs': expected channels"):
        read_ntidigits_single(path, "train")
    with pytest.raises(UserError, match=r"key 'train_labels': expected byte-string labels"):
        read_ntidigits_tonic(path, "train")
    with pytest.raises(UserError, match=r"key 'test': expected a group"):
        read_gesture32(path, "test")


def test_standins_in_both_ntidigits_layouts_and_refusal(tmp_path):
    base = make_ntidigits_standin(tmp_path, NTidigitsStandinConfig(22, 11))
    single = read_ntidigits_single(base / "n-tidigits-single.hdf5", "train")
    _same(read_ntidigits_tonic(base / "n-tidigits.hdf5", "train"), single)
    assert sorted({r.label for r in single}) == list(range(11))
    (base / "stllr_standin.json").unlink()  # now it looks like real data
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        make_ntidigits_standin(tmp_path, NTidigitsStandinConfig(22, 11))


def test_standin_tasks_give_frames(tmp_path):
    make_gesture32_standin(tmp_path, Gesture32StandinConfig((1,), (24,), ("led",)))
    cfg = ExperimentConfig(task="gesture32", data=str(tmp_path), n_time_bins=6, empty_bins=2)
    data = load_task(cfg)
    x, y = data.train[3]
    assert data.input_shape == (2, 32, 32) and data.num_classes == 10
    assert x.shape == (8, 2, 32, 32) and x.dtype == torch.float32 and y == 3
    assert float(x[:6].sum()) > 0 and float(x[6:].abs().sum()) == 0
    cfg = ExperimentConfig(
        task="ntidigits-standin", data=str(tmp_path), standin_train=22, standin_test=11
    )
    data = load_task(cfg)
    assert (
        data.input_shape == (64,) and len(data.train) == 22 and data.train[0][0].shape == (250, 64)
    )
