"""Common event-pipeline pieces: collation, resize/crop, offline checks, the frame cache."""

import pickle
import warnings

import numpy as np
import pytest
import tonic
import torch
import torch.nn.functional as F

from stllr.data import events as ev
from stllr.data.events import (
    EventFrameDataset,
    FrameDatasetConfig,
    check_offline,
    events_to_frames,
    make_loader,
    offline_tonic_class,
    pad_collate,
    random_crop,
    resize_frames,
)
from stllr.errors import UserError


def structured(x, y, t, p):
    out = np.zeros(len(t), dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


# --------------------------------------------------------------------------- collation


def test_pad_collate_time_major_zero_padded():
    a = torch.ones(3, 2, 4, 4)
    b = 2 * torch.ones(5, 2, 4, 4)
    x, y = pad_collate([(a, 1), (b, 7)])
    assert x.shape == (5, 2, 2, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x[:3, 0], a) and torch.all(x[3:, 0] == 0)
    assert torch.equal(x[:, 1], b)
    assert y.tolist() == [1, 7] and y.dtype == torch.long


def test_pad_collate_rejects_bad_batches():
    with pytest.raises(ValueError, match="at least one"):
        pad_collate([])
    with pytest.raises(ValueError, match="one trailing shape"):
        pad_collate([(torch.zeros(2, 2, 4, 4), 0), (torch.zeros(2, 2, 5, 4), 1)])


# --------------------------------------------------------------------------- binning helpers


def test_events_to_frames_counts_by_hand():
    # 3 events in 10 µs windows starting at the first event (t=100): frames 0, 0, 2;
    # the window [130, 140) is incomplete and dropped together with the last event.
    e = structured([1, 1, 3, 0], [2, 2, 0, 0], [100, 105, 125, 131], [1, 1, 0, 1])
    frames = events_to_frames(e, (4, 3, 2), "demo", time_window=10)
    assert frames.shape == (3, 2, 3, 4)
    expected = np.zeros((3, 2, 3, 4), dtype=np.int16)
    expected[0, 1, 2, 1] = 2
    expected[2, 0, 0, 3] = 1
    np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (structured([], [], [], []), "empty recording"),
        (structured([5], [0], [0], [0]), "field 'x' spans"),
        (structured([0, 0], [0, 0], [5, 3], [0, 0]), "sorted"),
        (np.zeros(3), "structured array"),
    ],
)
def test_events_to_frames_errors_name_the_recording(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        events_to_frames(bad, (4, 3, 2), "/data/rec_7.npy", time_window=10)
    assert "/data/rec_7.npy" in str(info.value)


def _no_tonic_binning(monkeypatch):
    """Make tonic's ToFrame fail the test if it is reached (the guard must refuse first)."""

    def boom(*args, **kwargs):
        raise AssertionError("ToFrame was called: the frames would have been allocated")

    monkeypatch.setattr(tonic.transforms, "ToFrame", boom)


def test_outlier_timestamp_refused_before_binning(monkeypatch):
    """One timestamp at 10^12 µs would need 10^9 frames of 1 ms: refused with the numbers
    (frame count, bytes, span of 't') before anything is allocated."""
    _no_tonic_binning(monkeypatch)
    e = structured([0, 1, 2], [0, 0, 1], [0, 500, 10**12], [0, 1, 0])
    # independent count: complete 1000 µs windows in 10^12 µs; 2·3·4 float32 values each
    n = (10**12 - 1000) // 1000 + 1
    with pytest.raises(ValueError, match="binning would make") as info:
        events_to_frames(e, (4, 3, 2), "/data/rec_7.h5", time_window=1000)
    msg = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in msg
    assert msg.startswith("/data/rec_7.h5: ") and f"{n} frames" in msg
    assert f"{n * 24 * 4 / 2**30:.3g} GiB" in msg and "0..1000000000000 µs" in msg
    assert "frame_us" in msg and "STLLR_MAX_FRAME_BYTES" in msg


def test_huge_sensor_size_refused_and_limit_is_a_setting(monkeypatch):
    _no_tonic_binning(monkeypatch)
    e = structured([0, 1], [0, 0], [0, 10], [0, 1])
    with pytest.raises(UserError, match=r"5 frames of \(P, H, W\) = \(2, 100000, 100000\)"):
        events_to_frames(e, (100_000, 100_000, 2), "rec", n_time_bins=5)
    # the limit is the documented environment variable, in bytes
    monkeypatch.setenv("STLLR_MAX_FRAME_BYTES", str(5 * 24 * 4 - 1))
    with pytest.raises(UserError, match="over the limit of 479 bytes"):
        events_to_frames(e, (4, 3, 2), "rec", n_time_bins=5)
    monkeypatch.setenv("STLLR_MAX_FRAME_BYTES", "lots")
    with pytest.raises(UserError, match="STLLR_MAX_FRAME_BYTES = 'lots'"):
        events_to_frames(e, (4, 3, 2), "rec", n_time_bins=5)


def test_frames_at_the_memory_limit_are_binned(monkeypatch):
    e = structured([0, 1], [0, 0], [0, 10], [0, 1])
    monkeypatch.setenv("STLLR_MAX_FRAME_BYTES", str(5 * 24 * 4))  # exactly 5 frames
    assert events_to_frames(e, (4, 3, 2), "rec", n_time_bins=5).shape == (5, 2, 3, 4)


def test_resize_matches_hand_computation_and_interpolate():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # Without antialias, 4 → 2 bilinear (align_corners=False) samples at 0.5 and 2.5:
    # the mean of each 2×2 block.
    plain = resize_frames(x, (2, 2), antialias=False, round_to_int=False)
    torch.testing.assert_close(plain[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    # With antialias (scale 2): triangle of half-width 2 around 1.0 and 3.0 gives 1-d weights
    # (0.75, 0.75, 0.25)/1.75 on pixels 0..2 and (0.25, 0.75, 0.75)/1.75 on pixels 1..3.
    w = torch.tensor([[0.75, 0.75, 0.25, 0.0], [0.0, 0.25, 0.75, 0.75]]) / 1.75
    hand = w @ x[0, 0] @ w.T
    aa = resize_frames(x, (2, 2), antialias=True, round_to_int=False)
    torch.testing.assert_close(aa[0, 0], hand)
    ref = F.interpolate(x, size=(2, 2), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(aa, ref)
    # torchvision on int16 input rounds back to integers
    assert torch.equal(resize_frames(x.to(torch.int16), (2, 2)), torch.round(hand)[None, None])


def test_random_crop_is_shared_by_frames_and_seeded():
    frames = torch.arange(3 * 2 * 6 * 6, dtype=torch.float32).reshape(3, 2, 6, 6) + 1
    frames[1] = frames[0]
    frames[2] = frames[0]
    a = random_crop(frames, (6, 6), 2, torch.Generator().manual_seed(5))
    b = random_crop(frames, (6, 6), 2, torch.Generator().manual_seed(5))
    assert a.shape == (3, 2, 6, 6) and torch.equal(a, b)
    assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])
    offsets = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        c = random_crop(frames, (6, 6), 2, g)
        padded = F.pad(frames, (2, 2, 2, 2))
        hits = [
            (i, j)
            for i in range(5)
            for j in range(5)
            if torch.equal(padded[..., i : i + 6, j : j + 6], c)
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) == 25  # every offset in [0, 2·padding] occurs


# --------------------------------------------------------------------------- offline


def test_check_offline_shows_layout(tmp_path):
    layout = "<root>/Thing/\n└── data/\n    └── a.npy"
    with pytest.raises(FileNotFoundError) as info:
        check_offline(tmp_path / "nope", "Thing", layout, subdir="data", suffix=".npy")
    assert layout in str(info.value) and "never downloads" in str(info.value)
    (tmp_path / "Thing" / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"holds 0 '\*\.npy' file\(s\)"):
        check_offline(tmp_path, "Thing", layout, subdir="data", suffix=".npy")
    (tmp_path / "Thing" / "data" / "a.npy").write_bytes(b"x")
    assert check_offline(tmp_path, "Thing", layout, subdir="data", suffix=".npy") == (
        tmp_path / "Thing"
    )


def test_offline_tonic_class_never_downloads(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("tonic tried to download")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", forbidden)
    # Plain tonic would download here: the folder holds fewer than 100 .npy files.
    (tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led").mkdir(parents=True)
    np.save(tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "3.npy", np.zeros((1, 4)))
    with pytest.raises(AssertionError, match="download"):
        tonic.datasets.DVSGesture(save_to=str(tmp_path), train=True)
    cls = offline_tonic_class(tonic.datasets.DVSGesture, "LAYOUT TEXT")
    assert cls.__name__ == "DVSGesture" and issubclass(cls, tonic.datasets.DVSGesture)
    ds = cls(save_to=str(tmp_path), train=True)
    assert ds.targets == [3] and ds.users == [1] and ds.lighting == ["led"]
    with pytest.raises(FileNotFoundError, match="LAYOUT TEXT"):
        ds.download()
    again = pickle.loads(pickle.dumps(ds))  # DataLoader workers started with "spawn"
    assert type(again) is cls and again.data == ds.data


# --------------------------------------------------------------------------- frame cache


class ToySource:
    """Three recordings with a counter of loads."""

    def __init__(self, tmp_path):
        self.labels = [0, 1, 2]
        self.files = []
        for i in range(3):
            path = tmp_path / f"rec{i}.bin"
            if not path.exists():
                path.write_bytes(bytes([i]) * (i + 1))
            self.files.append(str(path))

    def __len__(self):
        return 3

    def describe(self, i):
        return self.files[i]

    def identity(self):
        return ev.file_identity(self.files)

    def load(self, i):
        t = np.arange([3, 10, 20][i], dtype=np.int64) * 7  # 1, 3 and 6 frames of 20 µs
        return structured(t % 4, t % 3, t, t % 2)


class CountingFrames:
    def __init__(self):
        self.calls = 0

    def __call__(self, events, where):
        self.calls += 1
        frames = events_to_frames(events, (4, 3, 2), where, time_window=20).astype(np.float32)
        return [frames[:2], frames[2:]] if len(frames) > 2 else [frames]


def make_dataset(tmp_path, fn, params=None, cache=True):
    cfg = FrameDatasetConfig(
        name="toy", cache_dir=str(tmp_path / "cache") if cache else None, progress=False
    )
    return EventFrameDataset(ToySource(tmp_path), fn, params or {"w": 20}, cfg)


def test_cache_second_read_identical_and_not_rebinned(tmp_path):
    fn = CountingFrames()
    first = make_dataset(tmp_path, fn)
    assert fn.calls == 3  # every recording binned once while building
    items = [first[i] for i in range(len(first))]
    assert len(first) == 5 and first.labels == [0, 1, 1, 2, 2]
    assert fn.calls == 3  # reading does not re-bin
    for _epoch in range(2):  # a second epoch through a DataLoader reads the cache only
        for x, _y in make_loader(first, batch_size=2, shuffle=True, seed=0):
            assert x.shape[2:] == (2, 3, 4)
    assert fn.calls == 3
    second = make_dataset(tmp_path, fn)  # a new dataset with the same key
    assert fn.calls == 3
    for (a, ya), i in zip(items, range(len(second)), strict=True):
        b, yb = second[i]
        assert torch.equal(a, b) and ya == yb and b.dtype == torch.float32
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave nothing behind


def test_cache_key_changes_with_params_and_files(tmp_path):
    fn = CountingFrames()
    a = make_dataset(tmp_path, fn)
    b = make_dataset(tmp_path, fn, params={"w": 21})
    assert a.cache_folder != b.cache_folder and fn.calls == 6
    key = ev.cache_key("toy", ["a:1"], {"w": 20})
    assert key == ev.cache_key("toy", ["a:1"], {"w": 20})
    assert key != ev.cache_key("toy", ["a:2"], {"w": 20})


def test_corrupt_cache_entry_is_recomputed_with_warning(tmp_path):
    fn = CountingFrames()
    ds = make_dataset(tmp_path, fn)
    want = [ds[i][0] for i in range(len(ds))]
    entry = ds.cache_folder / "r000001.npz"
    entry.write_bytes(entry.read_bytes()[:50])  # truncated
    with pytest.warns(UserWarning, match="corrupt frame-cache entry"):
        got, _ = ds[1]
    assert torch.equal(got, want[1]) and fn.calls == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(ds[1][0], want[1])  # repaired entry
    entry.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt frame-cache entry"):
        rebuilt = make_dataset(tmp_path, fn)
    assert fn.calls == 5 and torch.equal(rebuilt[1][0], want[1])


def test_memory_mode_bins_once(tmp_path):
    fn = CountingFrames()
    ds = make_dataset(tmp_path, fn, cache=False)
    assert ds.cache_folder is None and fn.calls == 3
    a = ds[4][0]
    assert torch.equal(a, ds[4][0]) and fn.calls == 3
    with pytest.raises(IndexError):
        ds[5]
