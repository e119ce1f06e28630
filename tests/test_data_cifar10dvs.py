"""CIFAR10-DVS loader: aedat4 writer, the uint8 wrap quirk, exact Pillow resize, split."""

import numpy as np
import pytest
import tonic
import torch

from stllr.data.cifar10_dvs import (
    MEAN,
    STD,
    Cifar10DVSConfig,
    cifar10_dvs_dataset,
    counts_to_uint8,
    pil_la_resize,
    pil_resize_uint8,
)
from stllr.data.standins import write_aedat4

pytestmark = pytest.mark.filterwarnings("ignore:.*extraction looks incomplete")


def events_20():
    """20 events, 2 per equal-count frame: frame k has x = k at y = 1 (ON) twice, except
    frame 3 whose two events hit (x, y) = (3, 1) and (3, 2) with p = 0."""
    t = np.arange(20) * 1000 + 5_000_000
    x = np.repeat(np.arange(10), 2)
    y = np.ones(20, dtype=int)
    p = np.ones(20, dtype=int)
    y[7], p[6], p[7] = 2, 0, 0
    return t, x, y, p


def write_class_files(root, name, n, events=events_20):
    folder = root / "CIFAR10DVS" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"cifar10_{name}_{i}.aedat4"
        write_aedat4(path, *events())
        paths.append(path)
    return paths


def cfg(root, **kw):
    return Cifar10DVSConfig(root=str(root), progress=False, cache_dir=str(root / "cache"), **kw)


def test_aedat4_writer_roundtrip_through_tonic(tmp_path):
    rng = np.random.default_rng(0)
    n = 20_000
    t = np.sort(rng.integers(0, 10**9, n)).astype(np.uint64)
    x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    path = tmp_path / "a.aedat4"
    write_aedat4(path, t, x, y, p, packet_events=3000)  # several packets
    events = tonic.io.read_aedat4(str(path))
    assert len(events) == n
    np.testing.assert_array_equal(events["t"], t)
    np.testing.assert_array_equal(events["x"], x)
    np.testing.assert_array_equal(events["y"], y)
    np.testing.assert_array_equal(events["on"], p.astype(bool))


def test_uint8_wrap_quirk():
    counts = np.array([0, 1, 2, 3, 255, 256, 257])
    # torch's (255·c).byte(): 255·c mod 256
    np.testing.assert_array_equal(counts_to_uint8(counts), [0, 255, 254, 253, 1, 0, 255])
    want = torch.tensor(counts * 255.0).byte().numpy()
    np.testing.assert_array_equal(counts_to_uint8(counts), want)
    np.testing.assert_array_equal(counts_to_uint8(counts, wrap=False), [0] + [255] * 6)


def test_pil_resize_is_bit_exact():
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    for h_in, w_in, h, w in [(128, 128, 48, 48), (37, 53, 20, 61), (16, 16, 5, 9)]:
        la = rng.integers(0, 256, (2, h_in, w_in)).astype(np.uint8)
        la[:, rng.random((h_in, w_in)) < 0.3] = 0
        la[1, rng.random((h_in, w_in)) < 0.2] = 255
        img = pil.fromarray(np.ascontiguousarray(la.transpose(1, 2, 0)), "LA")
        want = np.asarray(img.resize((w, h), pil.BILINEAR)).transpose(2, 0, 1)
        np.testing.assert_array_equal(pil_la_resize(la, (h, w)), want)
        band = pil.fromarray(la[0], "L").resize((w, h), pil.BILINEAR)
        np.testing.assert_array_equal(pil_resize_uint8(la[0], (h, w)), np.asarray(band))


def test_frames_by_hand_before_resize(tmp_path):
    write_class_files(tmp_path, "cat", 10)
    ds = cifar10_dvs_dataset(cfg(tmp_path, size=128, augment=False, mean=(0, 0), std=(1, 1)))
    assert len(ds) == 9  # files 0..8 of 10 are train
    x, y = ds[0]
    assert y == 3 and x.shape == (10, 2, 128, 128) and x.dtype == torch.float32
    want = np.zeros((10, 2, 128, 128))
    for k in range(10):
        want[k, 1, 1, k] = 254 / 255  # two events → 255·2 mod 256 = 254
    want[3, 1, 1, 3] = 0
    want[3, 0, 1, 3] = want[3, 0, 2, 3] = 255 / 255  # one event each → 255
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-7)


def test_split_order_normalisation_and_crop(tmp_path):
    write_class_files(tmp_path, "airplane", 12)
    write_class_files(tmp_path, "truck", 10)
    train = cifar10_dvs_dataset(cfg(tmp_path, augment=False))
    test = cifar10_dvs_dataset(cfg(tmp_path, train=False))
    names = [p.rsplit("/", 1)[1] for p in test.source.files]
    # per class floor(0.9·n) train files in natural order (2 before 10)
    assert names == ["cifar10_airplane_10.aedat4", "cifar10_airplane_11.aedat4"] + [
        "cifar10_truck_9.aedat4"
    ]
    assert len(train) == 10 + 9 and train.labels == [0] * 10 + [9] * 9
    x, _ = test[0]
    raw = test.recording_samples(0)[0]
    mean = torch.tensor(MEAN).view(1, 2, 1, 1)
    std = torch.tensor(STD).view(1, 2, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std)
    assert x.shape == (10, 2, 48, 48)
    # train crop: zero padding (before normalisation) then a 48×48 window for all frames
    cropped = cifar10_dvs_dataset(cfg(tmp_path, seed=1))[0][0] * std + mean
    padded = torch.nn.functional.pad(train.recording_samples(0)[0], (4,) * 4)
    assert any(
        torch.allclose(padded[..., i : i + 48, j : j + 48], cropped, atol=1e-6)
        for i in range(9)
        for j in range(9)
    )


def test_torch_resize_mode_close_to_pil_on_alpha_band(tmp_path):
    write_class_files(tmp_path, "dog", 10)
    pil = cifar10_dvs_dataset(cfg(tmp_path, augment=False, mean=(0, 0), std=(1, 1)))[0][0]
    tor = cifar10_dvs_dataset(
        cfg(tmp_path, augment=False, mean=(0, 0), std=(1, 1), resize_mode="torch")
    )[0][0]
    # channel 1 (the alpha band) is resampled identically up to one grey level
    assert (pil[:, 1] - tor[:, 1]).abs().max() <= 1 / 255 + 1e-6


def test_errors_name_files_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar10_airplane_0.aedat4"):
        cifar10_dvs_dataset(cfg(tmp_path))
    paths = write_class_files(tmp_path, "bird", 10)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[:-50])  # truncated inside the event packet
    with pytest.raises(ValueError, match="cannot be read as a CIFAR10DVS recording") as info:
        cifar10_dvs_dataset(cfg(tmp_path))
    assert str(paths[0]) in str(info.value)
    paths[0].write_bytes(b"not an aedat file at all")
    with pytest.raises(ValueError, match="not an AEDAT 4 file") as info:
        cifar10_dvs_dataset(cfg(tmp_path))
    assert str(paths[0]) in str(info.value)
    write_aedat4(paths[0], *(np.zeros(5, dtype=int) for _ in range(4)))  # 5 events < 10 frames
    with pytest.raises(ValueError, match="expected at least 10 events"):
        cifar10_dvs_dataset(cfg(tmp_path))
    write_class_files(tmp_path, "unicorn", 1)
    with pytest.raises(ValueError, match="unknown class folder 'unicorn'"):
        cifar10_dvs_dataset(cfg(tmp_path))
