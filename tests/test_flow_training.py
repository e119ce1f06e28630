"""FSFN and its training on the MVSEC-format stand-in (docs/flow.md §5–§7)."""

from __future__ import annotations

import json

import pytest
import torch

from stllr.cli.main import main
from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.factors import STLLRFactors
from stllr.flow.dataset import FlowSample, collate
from stllr.flow.metrics import sequence_score, window_errors
from stllr.flow.mvsec_files import write_sequence
from stllr.flow.standin import STANDIN_SEQUENCES, StandinSpec, make_recording
from stllr.flow.training import flow_loss
from stllr.models.fsfn import FSFN
from stllr.run import run_experiment
from stllr.tasks import load_task

NARROW = dict(encoder=(6, 8, 8, 8), decoder=(4, 4, 4))


def test_fsfn_one_step_stllr_gradient_equals_bptt():
    """At T = 1 (zero state, α_pre = 1) S-TLLR's gradient is the surrogate gradient, so
    the S-TLLR FSFN and its BPTT twin with the same weights get the same gradients under
    the self-supervised loss: the whole network's wiring, heads and WS included."""
    torch.manual_seed(0)
    f = STLLRFactors(0.5, 0.8, -0.2, 1.0)
    a = FSFN(2, family="stllr", factors=f, input_size=(32, 32), **NARROW).double()
    b = FSFN(2, family="bptt", input_size=(32, 32), **NARROW).double()
    named_a = dict(a.named_parameters())
    with torch.no_grad():
        for name, p in a.named_parameters():
            if name.startswith("heads") or name.endswith("bias"):
                p.normal_(0, 0.3)  # heads and biases that matter
        for name, p in b.named_parameters():
            p.copy_(named_a[name.replace(".synapse", "")])
    x = (torch.rand(2, 2, 32, 32, dtype=torch.float64) < 0.3).double() * 2
    g0, g1 = torch.rand(2, 2, 1, 32, 32, dtype=torch.float64)
    sample = FlowSample(x, g0, g1, None, None)
    loss_fn = flow_loss("photometric", 1)
    for model in (a, b):
        model.reset_state()
        loss_fn(model(x), sample).backward()
    reached = [n for n, p in named_a.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(reached) == len(named_a), set(named_a) - set(reached)
    for name, p in b.named_parameters():
        pa = named_a[name.replace(".synapse", "")]
        assert torch.allclose(pa.grad, p.grad, rtol=1e-7, atol=1e-12), name


def _write_x_standin(root):
    """The stand-in's five sequences at 40 × 40 with ±x translation at 80 px/s (≈ 2.6 px
    per image): a direction the network must read from the events."""
    for name, (_spec, offset) in STANDIN_SEQUENCES.items():
        frames = 160 if name == "outdoor_day2" else 24
        small = StandinSpec(height=40, width=40, frames=frames, x_speed=80.0)
        write_sequence(root / "seed0", name, *make_recording(small, offset))


def test_short_stllr_training_beats_the_zero_flow_baseline(tmp_path, monkeypatch):
    """12 epochs of S-TLLR (α_post = −0.2, signal in the last step, T = 2) on a 32² crop
    lower the summed AEE well below that of predicting zero flow; then `stllr flow-eval`
    prints the same sum for the best checkpoint."""
    monkeypatch.setattr("stllr.tasks.CACHE_DIR", tmp_path / "cache")
    _write_x_standin(tmp_path / "standin")
    cfg = ExperimentConfig(
        name="flow_ci",
        task="mvsec-standin",
        arch="fsfn",
        method="stllr",
        factors=(0.5, 0.8, -0.2, 1.0),
        psi="d",
        window=1,
        lr=6e-3,
        batch_size=4,
        val_batch_size=8,
        epochs=12,
        channels=(8, 16, 32, 32),
        flow_decoder=(8, 8, 4),
        flow_crop=32,
        flow_bins=2,
        flow_loss="supervised",
        data=str(tmp_path / "standin"),
        out_dir=str(tmp_path / "runs"),
        device="cpu",
    )
    data = load_task(cfg)
    zero = 0.0
    for name, seq in data.test.items():
        batch = collate([seq[i] for i in range(len(seq))])
        errs = window_errors(torch.zeros_like(batch.flow), batch.flow, batch.events)
        zero += sequence_score(name, errs).aee
    run_experiment(cfg, progress=False, log=lambda s: None, data=data)
    history = json.loads((tmp_path / "runs/flow_ci/trial_1/metrics.json").read_text())
    last = history[-1]["sum_aee"]
    print(f"summed AEE: zero flow {zero:.3f}, after {len(history)} epochs {last:.3f}")
    assert last < 0.75 * zero, (last, zero, [h["sum_aee"] for h in history])
    best = min(h["sum_aee"] for h in history)
    out = tmp_path / "eval.json"
    ckpt = tmp_path / "runs/flow_ci/trial_1/best.pt"
    assert main(["flow-eval", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["sum_aee"] == pytest.approx(best, rel=1e-6)


def test_flow_settings_are_checked(tmp_path):
    with pytest.raises(UserError, match="flow_encoding"):
        load_task(ExperimentConfig(task="mvsec-standin", flow_encoding="3x3", data=str(tmp_path)))
    with pytest.raises(UserError, match=r"outdoor_day2_data\.hdf5"):
        load_task(ExperimentConfig(task="mvsec"))
    with pytest.raises(UserError, match=r"not found under .*expected"):
        load_task(ExperimentConfig(task="mvsec", data=str(tmp_path)))
