"""N-Caltech101 loader on small fake .bin files in the real layout."""

import numpy as np
import pytest
import tonic
import torch
import torch.nn.functional as F

from stllr.data.ncaltech101 import NCaltech101Config, ncaltech101_dataset, split_indices
from stllr.data.standins import encode_ncaltech_bin

pytestmark = pytest.mark.filterwarnings("ignore:.*extraction looks incomplete")

# (x, y, p, t_us); tonic shifts x and y so that their minima are 0 (here by 10 and 20)
EVENTS = np.array(
    [
        [10, 20, 1, 100],
        [12, 25, 0, 5_000],
        [12, 25, 0, 29_000],
        [40, 60, 1, 31_000],
        [249, 199, 1, 59_999],
        [11, 21, 0, 61_000],
    ]
)


def write(root, cls, i, events=EVENTS):
    folder = root / "NCALTECH101" / "Caltech101" / cls
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"image_{i:04d}.bin"
    path.write_bytes(encode_ncaltech_bin(*np.asarray(events).T))
    return path


def cfg(root, **kw):
    return NCaltech101Config(root=str(root), progress=False, cache_dir=str(root / "cache"), **kw)


def test_bin_encoding_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    n = 1000
    x, y, p = rng.integers(0, 256, n), rng.integers(0, 240, n), rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 2**23, n))
    path = tmp_path / "a.bin"
    path.write_bytes(encode_ncaltech_bin(x, y, p, t))
    ev = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NCALTECH101.dtype)
    for field, want in zip("xytp", (x, y, t, p), strict=True):
        np.testing.assert_array_equal(ev[field], want)
    with pytest.raises(ValueError, match="y ≤ 239"):
        encode_ncaltech_bin([0], [240], [0], [0])


def test_frames_by_hand_before_resize(tmp_path):
    for i in range(1, 11):
        write(tmp_path, "ant", i)
    ds = ncaltech101_dataset(cfg(tmp_path, split="test", size=(180, 240)))
    assert len(ds) == 1 and ds.class_names == ["ant"]
    x, y = ds[0]
    # 30 ms frames from the first event (t=100): the last complete window ends at 60 100 µs
    # (floor((61 000 − 100 − 30 000) / 30 000) + 1 = 2 frames); t=61 000 is dropped.
    want = torch.zeros(2, 2, 180, 240)
    want[0, 1, 0, 0] = 1
    want[0, 0, 5, 2] = 2
    want[1, 1, 40, 30] = 1
    want[1, 1, 179, 239] = 1  # (249 − 10, 199 − 20): the sensor's last column and row
    assert y == 0 and x.shape == (2, 2, 180, 240)
    assert torch.equal(x, want)


def test_label_mapping_split_and_resize(tmp_path):
    events = EVENTS[:4]
    for cls, n in (("bass", 6), ("Leopards", 7), ("anchor", 7)):
        for i in range(1, n + 1):
            write(tmp_path, cls, i, events)
    train = ncaltech101_dataset(cfg(tmp_path))
    test = ncaltech101_dataset(cfg(tmp_path, split="test"))
    assert train.class_names == ["Leopards", "anchor", "bass"]  # sorted(), upper case first
    assert len(train) == 18 and len(test) == 2  # int(20 · 0.9) = 18
    files = sorted(train.source.files + test.source.files)
    assert len(set(files)) == 20
    # the split is torch's random_split(…, generator=manual_seed(42)) over the fixed order
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(42)).tolist()
    assert split_indices(20, "train", 0.9, 42) == perm[:18]
    assert split_indices(20, "test", 0.9, 42) == perm[18:]
    for ds in (train, test):
        for i in range(len(ds)):
            name = ds.source.files[i].split("/")[-2]
            assert ds.class_names[ds[i][1]] == name
    # EVENTS[:4] last 30 900 µs: one complete 30 ms frame holding the first three events
    raw = ncaltech101_dataset(cfg(tmp_path, split="test", round_resized=False))[0][0]
    counts = torch.zeros(1, 2, 180, 240)
    counts[0, 1, 0, 0], counts[0, 0, 5, 2] = 1, 2
    want = F.interpolate(counts, size=(45, 60), mode="bilinear", antialias=True)
    assert raw.shape == (1, 2, 45, 60)
    torch.testing.assert_close(raw, want)
    assert torch.equal(test[0][0], want.round())


@pytest.mark.filterwarnings("ignore:Length of split at index 0 is 0")
def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image_0001.bin"):
        ncaltech101_dataset(cfg(tmp_path))
    path = write(tmp_path, "ant", 1)
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="not a positive multiple of 5") as info:
        ncaltech101_dataset(cfg(tmp_path, split="test", train_fraction=0.5))
    assert str(path) in str(info.value)
    wide = EVENTS.copy()
    wide[0, 0] = 0  # x spans 0..249 after the shift: outside the 240-wide sensor
    write(tmp_path, "ant", 1, wide)
    with pytest.raises(ValueError, match=r"field 'x' spans \[0, 249\]") as info:
        ncaltech101_dataset(cfg(tmp_path, split="test", train_fraction=0.5))
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="split must be"):
        ncaltech101_dataset(cfg(tmp_path, split="val"))
