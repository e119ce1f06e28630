"""Stand-ins: deterministic for a seed, in the real formats, read by the real loaders."""

import hashlib

import numpy as np
import pytest

from stllr.data import standins as S
from stllr.data.cifar10_dvs import Cifar10DVSConfig, cifar10_dvs_dataset
from stllr.data.dvs_gesture import GestureConfig, dvs_gesture_dataset
from stllr.data.ncaltech101 import NCaltech101Config, ncaltech101_dataset

GESTURE = S.GestureStandinConfig(
    train_users=(1, 2), test_users=(24,), lightings=("led",), duration_s=(1.7, 2.4)
)
NCAL = S.NCaltech101StandinConfig(n_classes=3, per_class=4, events=4000)
CIFAR = S.Cifar10DVSStandinConfig(per_class=2, events=3000, loops=1)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("make", "config", "folder"),
    [
        (S.make_gesture_standin, GESTURE, "DVSGesture"),
        (S.make_ncaltech101_standin, NCAL, "NCALTECH101"),
        (S.make_cifar10dvs_standin, CIFAR, "CIFAR10DVS"),
    ],
)
def test_standins_are_deterministic(tmp_path, make, config, folder):
    a = make(tmp_path / "a", config, seed=5)
    b = make(tmp_path / "b", config, seed=5)
    c = make(tmp_path / "c", config, seed=6)
    assert a.name == folder and digest(a) == digest(b) != digest(c)
    assert S.read_marker(a)["seed"] == 5


def test_gesture_standin_read_by_loader(tmp_path):
    S.make_gesture_standin(tmp_path, GESTURE, seed=0)
    base = tmp_path / "DVSGesture"
    assert (base / "ibmGestureTrain.tar.gz").exists() and (base / "ibmGestureTest.tar.gz").exists()
    rec = np.load(base / "ibmGestureTrain" / "user01_led" / "7.npy")
    assert rec.ndim == 2 and rec.shape[1] == 4 and np.issubdtype(rec.dtype, np.integer)
    assert rec[:, :2].min() >= 0 and rec[:, :2].max() < 128 and set(np.unique(rec[:, 2])) <= {0, 1}
    assert np.all(np.diff(rec[:, 3]) >= 0) and 1500 < rec[-1, 3] - rec[0, 3] < 2700
    train = dvs_gesture_dataset(GestureConfig(root=str(tmp_path), progress=False))
    test = dvs_gesture_dataset(GestureConfig(root=str(tmp_path), train=False, progress=False))
    assert sorted(set(train.labels)) == list(range(11)) and len(train) >= 22
    assert sorted(set(train.recording_users)) == [1, 2] and set(test.recording_users) == {24}
    x, _ = train[0]
    assert x.shape == (20, 2, 32, 32) and x.sum() > 0
    assert test[0][0].shape[0] > 20  # whole recordings, not sliced


def test_gesture_recordings_vary_within_a_class():
    a = S.gesture_recording(0, 1, "led", 3, GESTURE)
    b = S.gesture_recording(0, 2, "led", 3, GESTURE)
    c = S.gesture_recording(0, 1, "natural", 3, GESTURE)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # users differ in position, size and speed: the event clouds are not identical in place
    assert abs(a[:, 0].mean() - b[:, 0].mean()) + abs(a[:, 1].mean() - b[:, 1].mean()) > 0.5
    # sensor noise: events all over the sensor, not just on the moving shapes
    assert np.ptp(a[:, 0]) > 100 and np.ptp(a[:, 1]) > 100


def test_ncaltech_standin_read_by_loader(tmp_path):
    S.make_ncaltech101_standin(tmp_path, NCAL, seed=0)
    base = tmp_path / "NCALTECH101"
    assert (base / "N-Caltech101-archive.zip").exists()
    assert (base / "Caltech101" / "accordion" / "image_0001.bin").stat().st_size % 5 == 0
    train = ncaltech101_dataset(NCaltech101Config(root=str(tmp_path), progress=False))
    test = ncaltech101_dataset(NCaltech101Config(root=str(tmp_path), split="test", progress=False))
    assert len(train) == 10 and len(test) == 2
    assert train.class_names == ["accordion", "airplanes", "anchor"]
    x, _ = train[0]
    assert x.shape[1:] == (2, 45, 60) and 8 <= x.shape[0] <= 10


def test_cifar_standin_read_by_loader(tmp_path):
    S.make_cifar10dvs_standin(tmp_path, CIFAR, seed=0)
    assert (tmp_path / "CIFAR10DVS" / "CIFAR10DVS.zip").exists()
    train = cifar10_dvs_dataset(Cifar10DVSConfig(root=str(tmp_path), progress=False))
    test = cifar10_dvs_dataset(Cifar10DVSConfig(root=str(tmp_path), train=False, progress=False))
    assert len(train) == 10 and len(test) == 10
    assert train.labels == list(range(10)) and test.labels == list(range(10))
    x, _ = test[0]
    assert x.shape == (10, 2, 48, 48)


def test_ensure_skips_identical_and_protects_real_data(tmp_path):
    base = S.ensure_ncaltech101_standin(tmp_path, NCAL, seed=1)
    probe = base / "Caltech101" / "anchor" / "image_0002.bin"
    before = probe.stat().st_mtime_ns
    S.ensure_ncaltech101_standin(tmp_path, NCAL, seed=1)
    assert probe.stat().st_mtime_ns == before
    S.ensure_ncaltech101_standin(tmp_path, NCAL, seed=2)  # other seed: regenerated
    assert S.read_marker(base)["seed"] == 2
    real = tmp_path / "real" / "DVSGesture" / "ibmGestureTrain"
    real.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        S.ensure_gesture_standin(tmp_path / "real", GESTURE)
