"""``stllr pipeline --task mvsec-standin`` end to end on a tiny stand-in, without Lava:
FSFN S-TLLR training, 8-bit PTQ, on-device adaptation of the flow head, the report.

The references are independent of the pipeline's code: the stand-in is written again
here (:func:`stllr.flow.standin.make_recording`, the same specs) and read with the
task loader; the 8-bit AEE is recomputed by :func:`quantization.flow_eval.
evaluate_integer_flow` from the saved integer network, and the zero-flow baseline is the
mean gt magnitude on the evaluation mask (events ∧ finite gt ∧ ‖gt‖ > 0), a loop here.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from stllr.cli.main import main
from stllr.errors import UserError

SIZE, CROP, TRAIN_FRAMES, TEST_FRAMES, SPEED = 24, 16, 60, 10, 80.0
TINY = [
    f"flow.size={SIZE}",
    f"train.flow_crop={CROP}",
    f"flow.train_frames={TRAIN_FRAMES}",
    f"flow.test_frames={TEST_FRAMES}",
    f"flow.x_speed={SPEED}",
    "train.epochs=6",
    "train.lr=1e-2",
    "quantize.sweep_bits=8",
    "adaptation.samples=10",
]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_flow")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--threads", "1", "--task", "mvsec-standin",
                     "--skip-lava", "--out", str(root / "run"), "--set", *TINY,
                     f"train.data={root / 'data'}"])  # fmt: skip
    assert code == 0, err.getvalue()
    return root, out.getvalue()


def _json(path: Path):
    return json.loads(Path(path).read_text())


def _independent_data(root: Path):
    """The tiny stand-in written again from the specs (not by pipeline.flow_data), read
    by the task loader with the run's own training config."""
    from stllr.checkpoints import stored_config
    from stllr.flow.mvsec_files import write_sequence
    from stllr.flow.standin import STANDIN_SEQUENCES, StandinSpec, make_recording
    from stllr.flow.tasks import load_flow_task

    folder = root / "again"
    for name, (_spec, seed) in STANDIN_SEQUENCES.items():
        frames = TRAIN_FRAMES if name == "outdoor_day2" else TEST_FRAMES
        spec = StandinSpec(height=SIZE, width=SIZE, frames=frames, x_speed=SPEED)
        write_sequence(folder / "seed0", name, *make_recording(spec, seed))
    path = root / "run" / "train" / "config.json"
    cfg = stored_config({"config": _json(path)}, path).replace(data=str(folder))
    return cfg, load_flow_task(cfg, standin=True, cache_root=root / "cache")


def _zero_flow_sum(tests: dict) -> float:
    """Σ_sequences mean_windows mean_{x ∈ mask} ‖gt(x)‖ (windows with an empty mask left
    out), written as loops."""
    total = 0.0
    for data in tests.values():
        per_window = []
        for i in range(len(data)):
            s = data[i]
            gt, ev = s.flow.double().numpy(), s.events.numpy()
            vals = []
            for y in range(gt.shape[1]):
                for x in range(gt.shape[2]):
                    gx, gy = gt[0, y, x], gt[1, y, x]
                    if ev[y, x] > 0 and math.isfinite(gx) and math.isfinite(gy):
                        m = math.hypot(gx, gy)
                        if m > 0:
                            vals.append(m)
            if vals:
                per_window.append(sum(vals) / len(vals))
        total += sum(per_window) / len(per_window)
    return total


def test_flow_pipeline_runs_every_stage_and_reports_aee(flow_run):
    root, out = flow_run
    run = root / "run"
    for stage in ("train", "quantize", "lava", "adaptation", "report"):
        assert f"] {stage}: " in out
    assert "] cost: " not in out  # no classification cost stage for flow
    md = (run / "report" / "report.md").read_text()
    assert "## Summed AEE: float vs 8-bit vs Lava" in md
    for row in ("| float | ", "| 8-bit emulator | ", "| zero flow | "):
        assert row in md
    assert "Lava fixed_pt, Lava's windows" not in md  # --skip-lava
    assert "## On-device adaptation of the flow head" in md
    assert (run / "report" / "figures" / "flows.png").stat().st_size > 1000
    assert _json(run / "lava" / "lava.json")["enabled"] is False
    flows = np.load(run / "lava" / "flows.npz")
    assert any(k.endswith("__int") for k in flows) and not any(k.endswith("__lava") for k in flows)


def test_flow_pipeline_aee_equals_independent_evaluations(flow_run):
    """8-bit AEE = quantization.flow_eval on the saved integer network and independently
    written data; float AEE = the training's best epoch; zero flow = the loop baseline,
    which the trained network beats."""
    from quantization.flow_eval import evaluate_integer_flow
    from quantization.network import QNetwork

    root, _ = flow_run
    run = root / "run"
    cfg, data = _independent_data(root)
    q = _json(run / "quantize" / "quantization.json")
    qnet = QNetwork.load(run / "quantize" / "quantized.pt")
    scores = evaluate_integer_flow(qnet, data.test, cfg.val_batch_size)
    assert q["sum_aee"]["int8"] == pytest.approx(sum(s.aee for s in scores), rel=1e-9)
    for s in scores:
        assert q["sequence_aee"]["int8"][s.name] == pytest.approx(s.aee, rel=1e-9)
    zero = _zero_flow_sum(data.test)
    assert q["sum_aee"]["zero"] == pytest.approx(zero, rel=1e-6)
    history = _json(run / "train" / "trial_1" / "metrics.json")
    best = min(h["sum_aee"] for h in history)
    assert q["sum_aee"]["float"] == pytest.approx(best, rel=1e-6)
    assert best < zero, (best, zero)
    assert q["sum_aee"]["int8"] < zero


def test_flow_adaptation_scores_both_conditions_before_and_after(flow_run):
    """The adaptation's 'before' on the original condition is the deployed network's AEE;
    the learned head differs from it and 'after' is the emulator's AEE of the learned
    head (recomputed from adaptation/weights.pt)."""
    import dataclasses

    import torch

    from quantization.flow_eval import FINEST, evaluate_integer_flow
    from quantization.network import QNetwork

    root, _ = flow_run
    run = root / "run"
    a = _json(run / "adaptation" / "adaptation.json")
    q = _json(run / "quantize" / "quantization.json")
    orig = a["conditions"]["original"]
    assert orig["sum_aee_before"] == pytest.approx(q["sum_aee"]["int8"], rel=1e-9)
    assert a["shift"] == "sensor_noise" and a["windows"] == 10 and "lava_replay" not in a
    w = torch.load(run / "adaptation" / "weights.pt", weights_only=True)
    assert a["weights_moved"] == int((w["flow1"] != w["deployed"]).sum()) > 0
    cfg, data = _independent_data(root)
    qnet = QNetwork.load(run / "quantize" / "quantized.pt")
    head = qnet.node(FINEST)
    adapted = qnet.replace_node(dataclasses.replace(head, weight=w["flow1"]))
    after = sum(s.aee for s in evaluate_integer_flow(adapted, data.test, cfg.val_batch_size))
    assert orig["sum_aee_after"] == pytest.approx(after, rel=1e-9)
    p = orig["paired"]
    assert p["better"] + p["worse"] <= p["n"]


def test_flow_settings_are_checked(tmp_path):
    from pipeline.config import load_pipeline_config

    path = Path(__file__).resolve().parents[1] / "pipeline" / "configs" / "mvsec_standin.toml"
    with pytest.raises(UserError, match=r"mvsec_standin.toml: flow.shift must be one of"):
        load_pipeline_config(path, ["flow.shift=blur"])
    with pytest.raises(UserError, match=r"flow.size must be ≥ train.flow_crop \(32\), got 20"):
        load_pipeline_config(path, ["flow.size=20"])
    with pytest.raises(UserError, match=r"train.arch must be 'fsfn'"):
        load_pipeline_config(path, ["train.arch=vgg9"])


def test_paired_aee_change_by_hand():
    """Windows (1 → 0.5), (2 → 2.5), (NaN → 1: left out), (4 → 3): d = −0.5, 0.5, −1."""
    from pipeline.flow_stats import paired_aee_change

    p = paired_aee_change([1.0, 2.0, math.nan, 4.0], [0.5, 2.5, 1.0, 3.0])
    assert (p.n, p.better, p.worse) == (3, 2, 1)
    assert p.before == pytest.approx(7 / 3) and p.after == pytest.approx(2.0)
    assert p.delta == pytest.approx(-1 / 3)
    assert p.se == pytest.approx(math.sqrt((1 / 36 + 25 / 36 + 16 / 36) / 2) / math.sqrt(3))


def test_colour_wheel_key_by_hand():
    """+x (right of centre) is red, +y (below, image coordinates) is hue 0.75 = (128, 0,
    255), outside the unit disc is black."""
    from pipeline.flow_report import colour_wheel

    w = colour_wheel(65)
    assert tuple(w[32, 64]) == (255, 0, 0)
    assert tuple(w[64, 32]) == (128, 0, 255)
    assert tuple(w[0, 0]) == (0, 0, 0) and tuple(w[32, 32]) == (0, 0, 0)


def test_flow_run_resumes_with_every_stage_skipped(flow_run):
    """``--resume`` on the finished run skips all five stages; ``--rerun-from cost`` names
    the flow task's stages (it has no cost stage)."""
    root, _ = flow_run
    args = ["pipeline", "--no-progress", "--task", "mvsec-standin", "--skip-lava",
            "--out", str(root / "run"), "--set", *TINY, f"train.data={root / 'data'}"]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main([*args, "--resume"]) == 0, err.getvalue()
        assert main([*args, "--rerun-from", "cost"]) != 0
    assert out.getvalue().count("finished earlier, skipped") == 5
    assert "stages: train, quantize, lava, adaptation, report" in err.getvalue()


class _Killed(BaseException):
    """Stands for SIGKILL (nothing in the toolkit catches a BaseException)."""


def test_flow_training_killed_then_resumed_equals_the_uninterrupted_run(flow_run, monkeypatch):
    """A run killed as it writes the training's 3rd checkpoint (after epoch 3 of 6), then
    resumed with ``--resume``, trains the same epochs as the uninterrupted run (the
    fixture's) to the same summed AEE, and deploys the same network."""
    import os

    root, _ = flow_run
    real, calls = os.replace, []

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("checkpoint.pt"):
            calls.append(dst)
            if len(calls) == 3:
                raise _Killed(dst)
        return real(src, dst, *a, **kw)

    data = f"train.data={root / 'data'}"
    args = ["pipeline", "--no-progress", "--task", "mvsec-standin", "--skip-lava",
            "--out", str(root / "killed"), "--set", *TINY, data]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(_Killed):
            main(args)
        monkeypatch.setattr(os, "replace", real)
        assert main([*args, "--resume"]) == 0
    assert "resuming after epoch 2" in out.getvalue()
    keep = ("epoch", "train_loss", "sum_aee")
    want = [{k: h[k] for k in keep} for h in _json(root / "run/train/trial_1/metrics.json")]
    got = [{k: h[k] for k in keep} for h in _json(root / "killed/train/trial_1/metrics.json")]
    assert got == want
    a, b = (_json(root / d / "quantize/quantization.json") for d in ("run", "killed"))
    assert a["sum_aee"] == b["sum_aee"]
