"""``stllr pipeline --task gesture-standin`` end to end on a tiny VGG: the event-camera path
(conv layers, pooling, the held-out-user scenario, on-device DFA learning of a conv layer
behind pooling), checked against Lava and against recomputation from the data."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from stllr.cli.main import main

TINY_GESTURE = [
    "train.epochs=2",  # the config's narrow VGG: with fewer channels or epochs conv7 is silent
    "quantize.sweep_bits=8",
    "lava.samples=2",
    "adaptation.scenario=held_out_user",
    "adaptation.calib_frames=20",
    "adaptation.samples=4",
    "adaptation.eval_every=2",
    "adaptation.eval_samples=6",
    "adaptation.lava_eval_samples=2",
    "adaptation.lr=0.05",
    # DFA into conv7 (the config's default is the head with the host's error and replay)
    "adaptation.signal=dfa",
    "adaptation.layers=conv7,head",
    "adaptation.replay_buffer=0",
    "adaptation.replay_every=0",
]


@pytest.fixture(scope="module")
def gesture_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipeline_gesture") / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            [
                "pipeline",
                "--no-progress",
                "--task",
                "gesture-standin",
                "--out",
                str(run_dir),
                "--set",
                *TINY_GESTURE,
            ]
        )
    assert code == 0, err.getvalue()
    return run_dir, out.getvalue()


def _json(path: Path):
    return json.loads(Path(path).read_text())


def test_every_stage_runs_and_lava_matches_the_emulator(gesture_run):
    run_dir, out = gesture_run
    for stage in ("train", "quantize", "cost", "lava", "adaptation", "report"):
        assert f"] {stage}: " in out
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    assert lava["lava_float"]["within_tolerance"]
    assert (run_dir / "report" / "report.html").is_file()


def test_held_out_user_adapts_conv_and_head_on_device_like_lava(gesture_run):
    """The scenario's sets come from the test recordings (recomputed here from the data);
    conv7 (behind no host-reachable path) and the head learn from Lava's own error and
    DFA processes exactly as in the emulator."""
    from pipeline.config import from_tables
    from stllr.tasks import load_task

    run_dir, out = gesture_run
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert "held-out user" in res["description"]
    assert "third factor only (on-device error + DFA)" in out
    s = res["settings"]
    assert s["signal"] == "dfa" and s["layers"] == ["conv7", "head"]
    assert s["stream_samples"] == 4 and s["stream_steps"] == 20
    # eval: the part after frame 20 of each test recording long enough to be split
    cfg = from_tables(_json(run_dir / "pipeline.json")["config"], "pipeline.json")
    data = load_task(cfg.train)
    long_enough = [i for i in range(len(data.test)) if data.test[i][0].shape[0] > 20]
    assert s["eval_samples"] == min(6, len(long_enough))
    rest = max(data.test[i][0].shape[0] - 20 for i in long_enough[: s["eval_samples"]])
    assert s["steps"] == max(rest, 20)  # padded with the clean set (training slices, T = 20)
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]
    # DFA reaches conv7 behind the pooling (the host's e·W_ro could not); the head learns
    # only once conv7 spikes, which two epochs of training need not give
    assert res["weights_changed"]["conv7"] > 0
    stored = torch.load(run_dir / "adaptation" / "weights.pt", weights_only=True)
    assert not torch.equal(
        stored["float_after"]["conv7"]["w"], stored["float_before"]["conv7"]["w"]
    )
