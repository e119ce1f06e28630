"""Bring-your-own events end to end: ``stllr pipeline --task custom --data FILE`` with the
default config (pipeline/configs/custom.toml), the model chosen from the data's shape."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from quantization.network import QNetwork
from stllr.cli.main import main
from stllr.config import ExperimentConfig
from stllr.data.event_writers import write_custom_events
from stllr.errors import UserError
from stllr.models.factory import build_model
from stllr.tasks import load_task

AUDIO = [("t", "<i8"), ("x", "<i4"), ("p", "u1")]
CAM = [("x", "<i4"), ("y", "<i4"), ("t", "<i8"), ("p", "u1")]

TINY = [
    "train.epochs=4",
    "train.hidden=32",
    "train.n_time_bins=10",
    "train.window=10",
    "quantize.sweep_bits=8",
    "lava.samples=2",
    "adaptation.samples=4",
    "adaptation.eval_every=2",
    "adaptation.window=10",
    "adaptation.lava_eval_samples=2",
]


def audio_file(path: Path, n_train: int = 60, n_test: int = 12, classes: int = 3) -> Path:
    """A 1-D sensor of 2 × 16 channels: class y fires around channel 5·y + 2, drifting
    up over 100 ms (learnable in a few epochs)."""
    rng = np.random.default_rng(0)
    recs, labels = [], []
    for i in range(n_train + n_test):
        y, n = i % classes, 200
        r = np.zeros(n, dtype=AUDIO)
        r["t"] = np.sort(rng.integers(0, 100_000, n))
        r["x"] = np.clip(5 * y + 2 + r["t"] // 25_000 + rng.integers(-1, 2, n), 0, 15)
        r["p"] = rng.integers(0, 2, n)
        recs.append(r)
        labels.append(y)
    splits = ["train"] * n_train + ["test"] * n_test
    return write_custom_events(path, recs, labels, splits, (16, 1, 2), classes)


def camera_file(path: Path) -> Path:
    rng = np.random.default_rng(1)
    recs = []
    for _ in range(4):
        r = np.zeros(50, dtype=CAM)
        r["x"], r["y"] = rng.integers(0, 12, 50), rng.integers(0, 8, 50)
        r["t"], r["p"] = np.sort(rng.integers(0, 10_000, 50)), rng.integers(0, 2, 50)
        recs.append(r)
    return write_custom_events(path, recs, [0, 1, 0, 1], ["train", "train", "test", "test"],
                               (12, 8, 2), 2)  # fmt: skip


def run_pipeline(data: Path, run_dir: Path, *flags: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    args = ["pipeline", "--no-progress", "--task", "custom", "--data", str(data)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--out", str(run_dir), *flags, "--set", *TINY])
    assert code == 0, err.getvalue()
    return out.getvalue()


def _json(path: Path):
    return json.loads(Path(path).read_text())


def test_one_d_sensor_frames_are_channels_p_times_w_plus_x(tmp_path):
    """A 1-D sensor's frames reach the model as [T, P·W], channel p·W + x (by hand)."""
    r = np.zeros(3, dtype=AUDIO)
    r["t"], r["x"], r["p"] = [0, 10, 25], [3, 15, 0], [1, 0, 1]
    path = write_custom_events(tmp_path / "a.h5", [r, r], [0, 1], ["train", "test"], (16, 1, 2), 2)
    data = load_task(ExperimentConfig(task="custom", data=str(path), frame_us=10))
    x, y = data.train[0]
    # windows of 10 µs from t = 0: [0, 10) and [10, 20); the event at 25 µs is dropped
    want = torch.zeros(2, 32)
    want[0, 16 + 3] = 1  # p = 1, x = 3
    want[1, 15] = 1  # p = 0, x = 15
    assert data.input_shape == (32,) and y == 0 and torch.equal(x, want)
    model, _ = build_model(ExperimentConfig(arch="auto", hidden=8), data.input_shape, 2)
    assert type(model).__name__ == "SHDNetSTLLR"
    with pytest.raises(
        UserError, match=r"arch 'vgg9' takes frames \[channels, height.*use arch=shd"
    ):
        build_model(ExperimentConfig(arch="vgg9"), data.input_shape, 2)


def test_camera_frames_pick_vgg_and_shd_rsnn_says_which_arch(tmp_path):
    path = camera_file(tmp_path / "c.h5")
    data = load_task(ExperimentConfig(task="custom", data=str(path), n_time_bins=3))
    assert data.input_shape == (2, 8, 12) and data.train[0][0].shape == (3, 2, 8, 12)
    cfg = ExperimentConfig(arch="auto", channels=(4,) * 8)
    model, _ = build_model(cfg, data.input_shape, 2)
    assert type(model).__name__ == "VGGSTLLR"
    with pytest.raises(UserError, match=r"arch 'shd_rsnn' takes frames \[channels\].*arch=vgg9"):
        build_model(ExperimentConfig(arch="shd_rsnn"), data.input_shape, 2)
    both = ExperimentConfig(task="custom", data=str(path), n_time_bins=3, frame_us=100)
    with pytest.raises(UserError, match="frame_us=100 and n_time_bins=3"):
        load_task(both)


def test_pipeline_custom_runs_with_the_default_config(tmp_path):
    """No hand-written config: the default picks the recurrent network for a 1-D sensor,
    trains it above chance, deploys it and adapts its output node (here without Lava)."""
    data = audio_file(tmp_path / "events.h5")
    run_dir = tmp_path / "run"
    out = run_pipeline(data, run_dir, "--skip-lava")
    for k, stage in enumerate(("train", "quantize", "cost", "lava", "adaptation", "report"), 1):
        assert f"[{k}/6] {stage}: " in out
    stored = _json(run_dir / "pipeline.json")["config"]
    assert stored["train"]["arch"] == "auto" and stored["train"]["data"] == str(data)
    train = _json(run_dir / "train" / "summary.json")
    assert train["test_samples"] == 12 and train["best_test_acc"] > 100 / 3 + 20
    nodes = [n.name for n in QNetwork.load(run_dir / "quantize" / "quantized.pt").nodes]
    assert nodes[-2:] == ["rec", "readout"]
    adapt = _json(run_dir / "adaptation" / "adaptation.json")
    assert adapt["scenario"] == "noisy_sensor" and adapt["settings"]["layers"] == ["readout"]
    assert adapt["settings"]["stream_samples"] == 4
    assert (run_dir / "report" / "report.html").is_file()


@pytest.mark.slow
def test_pipeline_custom_with_lava(tmp_path):
    """The same default run with Lava: fixed_pt bit-exact with the emulator, and the weights
    learned on the device equal the emulator's."""
    data = audio_file(tmp_path / "events.h5")
    run_dir = tmp_path / "run"
    run_pipeline(data, run_dir)
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    adapt = _json(run_dir / "adaptation" / "adaptation.json")
    assert adapt["lava"]["weights_equal"] and adapt["lava"]["outputs_bit_exact"]


def test_pipeline_custom_without_data_points_at_the_format():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["pipeline", "--task", "custom"]) == 2
    assert "give --data PATH (an events .h5 file in the format of docs/data.md)" in err.getvalue()
    assert "custom-standin" not in err.getvalue()
