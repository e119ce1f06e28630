"""The generated SHD stand-in (layout, determinism, difficulty) and its frame reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from stllr.data import shd_standin
from stllr.data.shd_frames import (
    bin_events,
    load_shd_frames,
    pad_batch,
    seconds_to_us,
    standin_shd_tensors,
)
from stllr.data.shd_standin import (
    TEST_FILE,
    TRAIN_FILE,
    ShdStandinConfig,
    generate_shd_standin,
    read_standin_attrs,
)

tonic = pytest.importorskip("tonic")

SMALL = dict(n_train=40, n_test=20)
TONIC_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])


def write_h5(path: Path, times, units, labels, overrides: dict | None = None) -> Path:
    """A minimal SHD-layout file; ``overrides`` replace or (value ``None``) drop datasets."""
    data = {
        "spikes/times": (times, h5py.vlen_dtype(np.float32)),
        "spikes/units": (units, h5py.vlen_dtype(np.uint16)),
        "labels": (np.asarray(labels, dtype=np.uint16), None),
    }
    for key, value in (overrides or {}).items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with h5py.File(path, "w") as f:
        for key, (value, dtype) in data.items():
            if dtype is not None and h5py.check_vlen_dtype(dtype) is not None:
                column = np.empty(len(value), dtype=object)
                for i, v in enumerate(value):
                    column[i] = np.asarray(v, dtype=h5py.check_vlen_dtype(dtype))
                f.create_dataset(key, data=column, dtype=dtype)
            else:
                f.create_dataset(key, data=value)
    return path


def read_all(path: Path) -> dict[str, list | np.ndarray]:
    with h5py.File(path, "r") as f:
        return {
            "times": list(f["spikes/times"][()]),
            "units": list(f["spikes/units"][()]),
            "labels": f["labels"][()],
            "keys": f["extra/keys"][()],
            "speaker": f["extra/speaker"][()],
        }


def tonic_frames(times_s: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The reference pipeline: SHD's µs conversion, SliceByTime(1 s), ToFrame(10 ms)."""
    events = tonic.io.make_structured_array(
        times_s.astype(np.float64) * 1e6, units, 1, dtype=TONIC_DTYPE
    )
    first_slice = tonic.slicers.SliceByTime(time_window=1_000_000).slice(events, 0)[0][0]
    frames = tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=10_000)(first_slice)
    return frames[:, 0, :]


@pytest.fixture(scope="module")
def small_standin(tmp_path_factory) -> tuple[Path, Path]:
    return generate_shd_standin(tmp_path_factory.mktemp("standin"), **SMALL)


# --- generator: layout and determinism ------------------------------------------------


def test_layout_keys_and_dtypes(small_standin):
    train, test = small_standin
    assert (train.name, test.name) == (TRAIN_FILE, TEST_FILE)
    for path, n in ((train, SMALL["n_train"]), (test, SMALL["n_test"])):
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visit(names.append)
            assert sorted(names) == sorted(
                ["spikes", "spikes/times", "spikes/units", "labels"]
                + ["extra", "extra/keys", "extra/speaker"]
            )
            assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
            assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
            assert f["spikes/times"].shape == f["spikes/units"].shape == (n,)
            assert f["labels"].dtype == np.uint16 and f["labels"].shape == (n,)
            assert f["extra/speaker"].dtype == np.uint16 and f["extra/speaker"].shape == (n,)
            keys = f["extra/keys"][()]
            assert keys.dtype.kind == "S"
            assert list(keys) == [f"standin-{c}".encode() for c in range(20)]
            assert set(f["labels"][()]) == set(range(20))
            for t, u in zip(f["spikes/times"][()], f["spikes/units"][()], strict=True):
                assert t.dtype == np.float32 and u.dtype == np.uint16
                assert len(t) == len(u) > 1000
                assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 1.0
                assert u.max() < 700
        assert read_standin_attrs(path)["n"] == n


def test_test_split_has_heldout_speakers(small_standin):
    train, test = small_standin
    cfg = ShdStandinConfig()
    n_seen = cfg.num_speakers - cfg.num_heldout_speakers
    assert read_all(train)["speaker"].max() < n_seen
    assert read_all(test)["speaker"].max() >= n_seen


def test_same_seed_same_data_other_seed_other_data(small_standin, tmp_path):
    again = generate_shd_standin(tmp_path / "again", **SMALL)
    other = generate_shd_standin(tmp_path / "other", seed=1, **SMALL)
    for ref, same, diff in zip(small_standin, again, other, strict=True):
        a, b, c = read_all(ref), read_all(same), read_all(diff)
        for key in ("labels", "keys", "speaker"):
            np.testing.assert_array_equal(a[key], b[key])
        for key in ("times", "units"):
            assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key], strict=True))
        assert ref.read_bytes() == same.read_bytes()
        assert not all(np.array_equal(x, y) for x, y in zip(a["times"], c["times"], strict=True))


def test_interrupted_write_leaves_old_file_and_no_temp(small_standin, tmp_path, monkeypatch):
    folder = tmp_path / "atomic"
    train, _ = generate_shd_standin(folder, **SMALL)
    before = train.read_bytes()

    def fail(arrays):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(shd_standin, "_vlen_column", fail)
    with pytest.raises(KeyboardInterrupt):
        generate_shd_standin(folder, seed=5, **SMALL)
    assert train.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [TEST_FILE, TRAIN_FILE]


def test_progress_bar(tmp_path, capsys):
    generate_shd_standin(tmp_path, n_train=3, n_test=2, progress=True)
    assert "SHD stand-in (train)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value"),
    [("drop_prob", 1.0), ("shared_formants", 3), ("stretch_range", (1.2, 0.9))],
)
def test_config_rejects_bad_knobs(field, value):
    with pytest.raises(ValueError, match=f"ShdStandinConfig.{field}"):
        ShdStandinConfig(**{field: value})


def test_generate_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        generate_shd_standin(tmp_path, n_train=0)


# --- reader: binning ------------------------------------------------------------------


def test_binning_by_hand(tmp_path):
    # Times exactly representable in float32: 0.25 s, 0.25 s + 2^-7 s, 0.28125 s.
    t = np.array([0.25, 0.2578125, 0.28125], dtype=np.float32)  # 250000, 257812, 281250 µs
    path = write_h5(tmp_path / "hand.h5", [t, t[:1]], [[3, 5, 3], [9]], [7, 2])

    frames, labels = load_shd_frames(path)
    assert labels.dtype == torch.long and labels.tolist() == [7, 2]
    # First-spike origin: spikes at 0, 7812 and 31250 µs; floor(31250 / 10000) = 3 complete
    # 10 ms frames; the third spike falls in the dropped partial frame.
    expected = torch.zeros(3, 700)
    expected[0, 3] = expected[0, 5] = 1
    assert frames[0].dtype == torch.float32
    assert torch.equal(frames[0], expected)
    # A single spike: a recording shorter than one frame gives one frame holding it.
    expected_single = torch.zeros(1, 700)
    expected_single[0, 9] = 1
    assert torch.equal(frames[1], expected_single)

    zero, _ = load_shd_frames(path, align="zero")
    # Zero origin: bins 25, 25 and 28; the frame of the last spike is the last frame.
    expected = torch.zeros(29, 700)
    expected[25, 3] = expected[25, 5] = expected[28, 3] = 1
    assert torch.equal(zero[0], expected)
    assert zero[1].shape == (26, 700) and zero[1][25, 9] == 1 and zero[1].sum() == 1


def test_binning_respects_max_time_and_truncation():
    # 0.01 s in float32 is 9999.9998 µs → 9999 µs after tonic's truncation: frame 0.
    t_us = seconds_to_us(np.array([0.0, 0.01, 0.02, 1.5], dtype=np.float32))
    assert t_us.tolist() == [0, 9999, 19999, 1500000]
    frames = bin_events(t_us, np.array([0, 1, 2, 3]), 10_000, 1_000_000, 700)
    # The 1.5 s spike is beyond the 1 s slice; the slice lasts 19999 µs → 1 frame.
    assert frames.shape == (1, 700)
    assert frames[0, :4].tolist() == [1, 1, 0, 0]


def test_binning_matches_tonic_on_edge_cases(tmp_path):
    rng = np.random.default_rng(0)
    boundary = np.float32(0.3) + np.arange(0, 0.2, 0.01, dtype=np.float32)
    recordings = [
        boundary,  # spikes at (float32-rounded) frame edges
        np.array([0.123], dtype=np.float32),  # one spike
        np.array([0.5, 0.5, 0.505], dtype=np.float32),  # shorter than a frame, ties
        np.sort(rng.uniform(0.0, 1.7, 500)).astype(np.float32),  # longer than the slice
        np.sort(rng.uniform(0.0, 2.5, 500)).astype(np.float32),  # tonic: several slices
        np.array([0.0, 0.04], dtype=np.float32),  # duration an exact frame multiple
        np.sort(rng.uniform(0.2, 0.9, 3000)).astype(np.float16).astype(np.float32),
    ]
    units = [rng.integers(0, 700, len(t)) for t in recordings]
    path = write_h5(tmp_path / "edges.h5", recordings, units, [0] * len(recordings))
    frames, _ = load_shd_frames(path)
    for t, u, got in zip(recordings, units, frames, strict=True):
        np.testing.assert_array_equal(got.numpy(), tonic_frames(t, u))


def test_binning_matches_tonic_shd_dataset(small_standin, tmp_path):
    """Read the generated file through tonic's own SHD class and SlicedDataset."""
    train, _ = small_standin
    shd_folder = tmp_path / "SHD"
    shd_folder.mkdir()
    shutil.copy(train, shd_folder / TRAIN_FILE)
    (shd_folder / f"{TRAIN_FILE}.zip").touch()  # tonic only checks that the archive exists
    dataset = tonic.datasets.SHD(save_to=str(tmp_path), train=True)
    sliced = tonic.SlicedDataset(
        dataset,
        slicer=tonic.slicers.SliceByTime(time_window=1_000_000),
        transform=tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=10_000),
    )
    frames, labels = load_shd_frames(train)
    assert len(sliced) == len(frames)
    for i in range(len(frames)):
        reference, target = sliced[i]
        assert int(target) == int(labels[i])
        np.testing.assert_array_equal(frames[i].numpy(), reference[:, 0, :])
    lengths = {f.shape[0] for f in frames}
    assert len(lengths) > 1 and max(lengths) <= 100


def test_pad_batch_is_time_major_and_zero_padded():
    a, b = torch.ones(3, 700), 2 * torch.ones(5, 700)
    batch = pad_batch([a, b])
    assert batch.shape == (5, 2, 700)
    assert torch.equal(batch[:3, 0], a) and batch[3:, 0].abs().sum() == 0
    assert torch.equal(batch[:, 1], b)
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])
    with pytest.raises(ValueError, match="one C"):
        pad_batch([torch.ones(3, 700), torch.ones(3, 10)])


# --- reader: errors -------------------------------------------------------------------


def good_recording():
    return [np.array([0.1, 0.2], dtype=np.float32)], [[1, 2]], [0]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"spikes/units": None}, "missing dataset 'spikes/units'"),
        ({"labels": None}, "missing dataset 'labels'"),
        (
            {"labels": (np.array([0, 1], dtype=np.uint16), None)},
            r"'spikes/times' has 1 recording\(s\) but 'labels' has 2",
        ),
        ({"labels": (np.array([20], dtype=np.uint16), None)}, r"'labels' has values in \[20"),
        (
            {"spikes/units": ([[1, 2, 3]], h5py.vlen_dtype(np.uint16))},
            "recording 0: 'spikes/times' has 2 entries but 'spikes/units' has 3",
        ),
        (
            {"spikes/units": ([[1, 700]], h5py.vlen_dtype(np.uint16))},
            r"'spikes/units' has channels in \[1, 700\]; expected 0..699",
        ),
        (
            {
                "spikes/times": ([np.zeros(0)], h5py.vlen_dtype(np.float32)),
                "spikes/units": ([np.zeros(0)], h5py.vlen_dtype(np.uint16)),
            },
            "recording 0 is empty",
        ),
        (
            {"spikes/times": ([[0.2, 0.1]], h5py.vlen_dtype(np.float32))},
            "must be sorted ascending",
        ),
        (
            {"spikes/times": (np.array([0.1]), None)},
            "'spikes/times' must be a variable-length dataset",
        ),
    ],
)
def test_malformed_files_name_file_and_key(tmp_path, overrides, match):
    path = write_h5(tmp_path / "bad.h5", *good_recording(), overrides)
    with pytest.raises(ValueError, match=match) as info:
        load_shd_frames(path)
    assert str(path) in str(info.value)


def test_missing_and_non_hdf5_files(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_shd_frames(missing)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ValueError, match="junk.h5.*HDF5"):
        load_shd_frames(junk)


def test_bad_bin_arguments(tmp_path):
    path = write_h5(tmp_path / "ok.h5", *good_recording())
    with pytest.raises(ValueError, match="dt_s"):
        load_shd_frames(path, dt_s=0.0)
    with pytest.raises(ValueError, match="max_time_s"):
        load_shd_frames(path, dt_s=0.01, max_time_s=0.001)
    with pytest.raises(ValueError, match="align"):
        load_shd_frames(path, align="middle")


# --- convenience loader ---------------------------------------------------------------


def test_standin_shd_tensors_generates_once(tmp_path):
    splits = standin_shd_tensors(tmp_path, n_train=20, n_test=10)
    assert len(splits.train_frames) == 20 and splits.test_labels.shape == (10,)
    assert all(f.shape[1] == 700 for f in splits.train_frames)
    stamp = (tmp_path / TRAIN_FILE).stat().st_mtime_ns
    standin_shd_tensors(tmp_path, n_train=20, n_test=10)
    assert (tmp_path / TRAIN_FILE).stat().st_mtime_ns == stamp
    regenerated = standin_shd_tensors(tmp_path, n_train=20, n_test=10, seed=3)
    assert read_standin_attrs(tmp_path / TRAIN_FILE)["seed"] == 3
    assert not all(
        torch.equal(a, b)
        for a, b in zip(splits.train_frames, regenerated.train_frames, strict=True)
    )


def test_standin_shd_tensors_refuses_to_overwrite_real_files(tmp_path):
    write_h5(tmp_path / TRAIN_FILE, *good_recording())
    with pytest.raises(ValueError, match="not a generated stand-in"):
        standin_shd_tensors(tmp_path, n_train=20, n_test=10)


# --- difficulty -----------------------------------------------------------------------


def binned_features(frames: list[torch.Tensor]) -> torch.Tensor:
    """log(1 + counts) in 10 bins of 100 ms × 70 groups of 10 channels: ``[N, 700]``."""
    x = pad_batch(frames)
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 100 - x.shape[0]))
    x = x.permute(1, 0, 2).reshape(len(frames), 10, 10, 70, 10).sum(dim=(2, 4))
    return torch.log1p(x.reshape(len(frames), -1))


def test_nearest_class_mean_is_above_chance_but_not_perfect(tmp_path):
    splits = standin_shd_tensors(tmp_path, n_train=600, n_test=300)
    x_train, x_test = binned_features(splits.train_frames), binned_features(splits.test_frames)
    means = torch.stack([x_train[splits.train_labels == c].mean(0) for c in range(20)])
    predicted = torch.cdist(x_test, means).argmin(dim=1)
    accuracy = float((predicted == splits.test_labels).float().mean())
    # Measured 0.73 with these settings (0.69-0.74 for seeds 0-3); chance is 0.05.
    assert 0.3 < accuracy < 0.95
