"""MVSEC files, split coding and the stand-in (docs/flow.md §1, §2, §5)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from stllr.errors import UserError
from stllr.flow.dataset import WindowDataset, centre_crop_offsets
from stllr.flow.encoding import encoded_counts, split_counts, window_frames
from stllr.flow.loss import warp
from stllr.flow.mvsec_files import EVENTS, check_sequence, find_sequence, write_sequence
from stllr.flow.standin import StandinSpec, make_recording


def test_split_counts_by_hand():
    # 7 events, 3 bins: groups of 2 (events 0-1, 2-3, 4-5), event 6 dropped
    ev = np.array(
        [
            [1, 0, 0.1, 1],
            [1, 0, 0.2, 1],
            [2, 1, 0.3, -1],
            [1, 0, 0.4, 1],
            [0, 1, 0.5, -1],
            [0, 1, 0.6, -1],
            [2, 1, 0.7, 1],
        ]
    )
    c = split_counts(ev, 3, height=2, width=3)
    want = np.zeros((3, 2, 2, 3), dtype=np.int64)
    want[0, 0, 0, 1] = 2  # bin 0: two ON at (x=1, y=0)
    want[1, 1, 1, 2] = 1  # bin 1: OFF at (2, 1) and ON at (1, 0)
    want[1, 0, 0, 1] = 1
    want[2, 1, 1, 0] = 2  # bin 2: two OFF at (0, 1)
    assert np.array_equal(c, want)
    assert split_counts(ev[:2], 3, 2, 3).sum() == 0  # fewer events than bins


def test_window_layouts():
    counts = np.arange(3 * 4 * 2 * 1 * 1, dtype=np.uint8).reshape(
        3, 4, 2, 1, 1
    )  # 3 intervals, 4 bins
    a = window_frames(counts, 1, 2, "2x10")  # intervals 1, 2: 8 steps of (ON, OFF)
    assert a.shape == (8, 2, 1, 1)
    assert a[:, 0, 0, 0].tolist() == [8, 10, 12, 14, 16, 18, 20, 22]
    b = window_frames(counts, 1, 2, "4x5")  # 4 steps of (ON, OFF) first half, (ON, OFF) second
    assert b.shape == (4, 4, 1, 1)
    assert b[0, :, 0, 0].tolist() == [8, 9, 16, 17]
    with pytest.raises(UserError, match="flow_encoding"):
        window_frames(counts, 0, 1, "3x7")


def _tiny_sequence(folder, name="indoor_flying1"):
    """Events at known times between 4 images (t = 0, 1, 2, 3 s)."""
    t = np.array([0.0, 0.2, 0.5, 0.9, 1.0, 1.5, 2.2, 2.4, 2.6, 2.8])
    ev = np.stack([np.arange(10) % 4, np.zeros(10), t, np.where(np.arange(10) % 2, -1, 1)], axis=1)
    images = np.zeros((4, 2, 4), dtype=np.uint8)
    flow = np.zeros((5, 2, 2, 4), dtype=np.float32)
    return write_sequence(folder, name, ev, images, np.arange(4.0), flow, np.arange(-1.0, 4.0))


def test_intervals_take_events_between_image_timestamps(tmp_path):
    files = _tiny_sequence(tmp_path)
    info = check_sequence(files)
    counts = encoded_counts(info, 2, tmp_path / "cache")
    # interval k: events with ts[k] ≤ t < ts[k+1]: 4, 2, 4 events → 2, 1, 2 per bin
    assert counts.shape == (3, 2, 2, 2, 4)
    assert counts.reshape(3, -1).sum(axis=1).tolist() == [4, 2, 4]
    # interval 0 bin 0: events 0, 1 → ON at x=0, OFF at x=1
    assert counts[0, 0, 0, 0, 0] == 1 and counts[0, 0, 1, 0, 1] == 1
    again = encoded_counts(info, 2, tmp_path / "cache")  # from the cache file
    assert np.array_equal(np.asarray(again), np.asarray(counts))
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []


def test_missing_files_state_the_expected_layout(tmp_path):
    with pytest.raises(UserError, match=r"outdoor_day1_data\.hdf5 and .*outdoor_day1_gt\.hdf5"):
        find_sequence(tmp_path, "outdoor_day1")
    (tmp_path / "outdoor_day").mkdir()
    files = _tiny_sequence(tmp_path / "outdoor_day", "outdoor_day1")
    assert find_sequence(tmp_path, "outdoor_day1") == files  # the release's scene folder


def test_wrong_field_is_named(tmp_path):
    files = _tiny_sequence(tmp_path)
    with h5py.File(files.data, "a") as f:
        del f[EVENTS]
        f.create_dataset(EVENTS, data=np.zeros((3, 3)))
    with pytest.raises(UserError, match=r"davis/left/events.*4 columns, expected 4|expected 4"):
        check_sequence(files)
    with h5py.File(files.data, "a") as f:
        del f[EVENTS]
    with pytest.raises(UserError, match=r"missing field 'davis/left/events'.*float64 \[N, 4\]"):
        check_sequence(files)


def test_centre_crop_of_mvsec_frames():
    assert centre_crop_offsets(260, 346, 256) == (2, 45)
    with pytest.raises(UserError, match="larger"):
        centre_crop_offsets(60, 80, 64)


@pytest.fixture(scope="module")
def standin_recording():
    spec = StandinSpec(height=36, width=44, frames=8, segment_frames=3)
    return spec, make_recording(spec, seed=11)


def test_standin_events_follow_the_log_intensity(standin_recording):
    """Summed event polarities × C at a pixel approximate the change of log intensity
    between the first and last image (to within the contrast threshold and rounding)."""
    spec, (events, images, image_ts, _flow, _flow_ts) = standin_recording
    assert np.all(np.diff(events[:, 2]) >= 0) and set(np.unique(events[:, 3])) <= {-1.0, 1.0}
    net = np.zeros(images.shape[1:])
    inside = events[:, 2] < image_ts[-1]
    np.add.at(
        net, (events[inside, 1].astype(int), events[inside, 0].astype(int)), events[inside, 3]
    )
    log_change = np.log(images[-1].astype(float) / 255) - np.log(images[0].astype(float) / 255)
    err = np.abs(net * spec.contrast - log_change)
    assert np.median(err) < spec.contrast and np.mean(err < 1.5 * spec.contrast) > 0.9


@pytest.mark.parametrize("train", [False, True], ids=["centre", "random_crop_and_flips"])
def test_standin_ground_truth_explains_the_images(standin_recording, tmp_path, train):
    """Warping the second image by the gt flow (read back through the same reader as
    MVSEC) reproduces the first far better than not warping; with the training
    augmentation too (a flip that forgot to negate the flow would fail)."""
    spec, rec = standin_recording
    files = write_sequence(tmp_path, "outdoor_day2", *rec)
    ds = WindowDataset(files, tmp_path / "cache", dt=1, bins=5, crop=32, skip=1, train=train)
    ratios = []
    for i in list(range(len(ds))) * (4 if train else 1):
        s = ds[i]
        warped = warp(s.gray1[None], s.flow[None])[0]
        inner = (slice(None), slice(3, -3), slice(3, -3))
        ratios.append(
            float((warped - s.gray0)[inner].abs().mean())
            / float((s.gray1 - s.gray0)[inner].abs().mean())
        )
        assert s.x.shape == (5, 2, 32, 32) and torch.equal(s.events, s.x.sum((0, 1)) > 0)
    assert max(ratios) < 0.35, ratios


def test_standin_sensor_noise_adds_poisson_events_and_keeps_the_scene(standin_recording):
    """``noise_rate`` (the pipeline's shifted sensor): the recording keeps every event of
    the noiseless one (same scene, motion, frames, gt) and adds about
    rate · H · W · duration events of random polarity, uniform over pixels and time."""
    import dataclasses

    spec, (events, images, image_ts, flow, flow_ts) = standin_recording
    noisy = dataclasses.replace(spec, noise_rate=40.0)
    ev_n, im_n, its_n, fl_n, fts_n = make_recording(noisy, seed=11)
    assert np.array_equal(im_n, images) and np.array_equal(fl_n, flow)
    assert np.array_equal(its_n, image_ts) and np.array_equal(fts_n, flow_ts)
    assert np.all(np.diff(ev_n[:, 2]) >= 0)
    scene = {tuple(r) for r in events.tolist()}
    assert scene <= {tuple(r) for r in ev_n.tolist()}  # the scene's events are all there
    noise = np.array([r for r in ev_n.tolist() if tuple(r) not in scene])
    assert len(noise) == len(ev_n) - len(events)
    mean = noisy.noise_rate * spec.height * spec.width * (image_ts[-1] - image_ts[0])
    assert abs(len(noise) - mean) < 5 * np.sqrt(mean), (len(noise), mean)  # Poisson: ± 5 σ
    assert set(np.unique(noise[:, 3])) == {-1.0, 1.0} and abs(np.mean(noise[:, 3] > 0) - 0.5) < 0.1
    assert noise[:, 0].min() >= 0 and noise[:, 0].max() <= spec.width - 1
    assert noise[:, 1].min() >= 0 and noise[:, 1].max() <= spec.height - 1
    assert image_ts[0] <= noise[:, 2].min() and noise[:, 2].max() < image_ts[-1]


def test_default_standin_folder_is_named_by_its_specs(tmp_path, monkeypatch):
    """Without ``data`` the stand-in lives under ``mvsec_standin/<digest of the specs>``
    (docs/flow.md §5): recordings written by an older generator (the former layout
    ``mvsec_standin/seed0``) are never read, and other specs get another folder."""
    import dataclasses
    import hashlib
    import json

    from stllr.config import ExperimentConfig
    from stllr.flow.tasks import load_flow_task

    tiny = {
        name: (StandinSpec(height=24, width=24, frames=8), seed)
        for seed, name in enumerate(
            ["outdoor_day2", "indoor_flying1", "indoor_flying2", "indoor_flying3", "outdoor_day1"],
            start=1,
        )
    }
    monkeypatch.setattr("stllr.flow.standin.STANDIN_SEQUENCES", tiny)
    stale = dataclasses.replace(tiny["outdoor_day2"][0], contrast=0.5)
    write_sequence(tmp_path / "mvsec_standin" / "seed0", "outdoor_day2", *make_recording(stale, 1))
    cfg = ExperimentConfig(task="mvsec-standin", flow_crop=16, flow_bins=2)

    def folder(specs):  # the key as docs/flow.md §5 states it, written out here
        key = {n: [dataclasses.asdict(s), k] for n, (s, k) in specs.items()}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return tmp_path / "mvsec_standin" / digest / "seed0"

    data = load_flow_task(cfg, standin=True, cache_root=tmp_path)
    assert str(folder(tiny)) in data.description
    with h5py.File(folder(tiny) / "outdoor_day2_data.hdf5", "r") as f:
        events = f[EVENTS][:]
    fresh = make_recording(tiny["outdoor_day2"][0], 1)[0]
    assert np.array_equal(events, fresh)  # the current specs' events, not the stale ones
    faster = {
        n: (dataclasses.replace(s, max_speed=2 * s.max_speed), k) for n, (s, k) in tiny.items()
    }
    monkeypatch.setattr("stllr.flow.standin.STANDIN_SEQUENCES", faster)
    assert str(folder(faster)) in load_flow_task(cfg, standin=True, cache_root=tmp_path).description
    assert folder(faster) != folder(tiny) and folder(tiny).is_dir()
