"""Data-parallel S-TLLR on CPU (gloo, 2 processes) equals single-process training.

Two ranks with half of every batch each, after gradient reduction (mean for the
batch-mean CE paths, sum for DFA-driven hidden layers), must reach the same
weights as one process with the whole batches (float64; 2 optimiser steps), for S-TLLR
with BP and DFA signals and for BPTT. The backend is gloo because the model is on the CPU
(:func:`stllr.devices.backend_for`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _env(tmp: Path) -> dict[str, str]:
    """The launch environment: one thread, no inherited rank, and ``TMPDIR`` inside the
    test's folder, so the ``torchelastic_*`` log folders torchrun makes are removed with it
    (they were left in /tmp on every run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env["TMPDIR"] = str(tmp)
    return env


def _run(out: Path, feedback: str, nproc: int) -> dict:
    env = _env(out.parent)
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(out), feedback]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(WORKER),
            str(out),
            feedback,
        ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("feedback", ["BP", "DFA", "BPTT"])
def test_two_gloo_ranks_equal_one_process(tmp_path, feedback):
    single = _run(tmp_path / "single.pt", feedback, 1)
    double = _run(tmp_path / "double.pt", feedback, 2)
    assert single["acc"] == double["acc"]
    assert single["loss"] == pytest.approx(double["loss"], rel=1e-12)
    for name, w in single["state"].items():
        assert torch.allclose(w, double["state"][name], atol=1e-12, rtol=0), name
    moved = (single["state"]["rec.weight"] - _initial_rec_weight(feedback)).abs().max()
    assert moved > 1e-4, "training must have changed the weights"


def _initial_rec_weight(feedback):
    from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR

    torch.manual_seed(1)
    with torch.no_grad():
        torch.set_default_dtype(torch.float64)
        try:
            cls = SHDNetBPTT if feedback == "BPTT" else SHDNetSTLLR
            return cls(num_inputs=30, hidden=20, num_classes=5).rec.weight.clone()
        finally:
            torch.set_default_dtype(torch.float32)


def _train(args: list[str], nproc: int, tmp: Path) -> None:
    env = _env(tmp)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += [f"--nproc_per_node={nproc}", "-m", "stllr.cli.main"]
    cmd = (launch if nproc > 1 else [sys.executable, "-m", "stllr.cli.main"]) + args
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_checkpoints_on_rank_0_and_resumes(tmp_path):
    """``torchrun … stllr train --device cpu`` (gloo): rank 0 writes the checkpoint; its
    first epoch equals one process on the whole batches (float32: up to reduction order),
    and a resumed 2-rank run equals an uninterrupted one bit for bit."""
    keys = ["--threads", "1", "--no-progress", "--device", "cpu", "--set", "hidden=16"]
    keys += ["window=4", "batch_size=8", "val_batch_size=8", "standin_train=16"]
    keys += ["standin_test=8", "lr=5e-2", "optimizer=sgd"]
    ckpt = "experiment/trial_1/checkpoint.pt"
    load = lambda run: torch.load(tmp_path / run / ckpt, weights_only=True)  # noqa: E731
    _train(["train", *keys, f"out_dir={tmp_path / 'one'}", "epochs=1"], 1, tmp_path)
    _train(["train", *keys, f"out_dir={tmp_path / 'two'}", "epochs=1"], 2, tmp_path)
    one, two = load("one"), load("two")
    for name, w in one["model"].items():
        assert torch.allclose(w, two["model"][name], rtol=0, atol=1e-5), name
    assert not list((tmp_path / "two").rglob("*.tmp*")), "only rank 0 writes"
    _train(["train", *keys, f"out_dir={tmp_path / 'two'}", "epochs=2", "--resume"], 2, tmp_path)
    _train(["train", *keys, f"out_dir={tmp_path / 'whole'}", "epochs=2"], 2, tmp_path)
    resumed, whole = load("two"), load("whole")
    assert resumed["epoch"] == whole["epoch"] == 2
    for name, w in whole["model"].items():
        assert torch.equal(w, resumed["model"][name]), name
