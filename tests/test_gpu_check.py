"""benchmarks/gpu_check.py: a CPU smoke run (``--device cpu --quick``) and the clean exit
without a GPU. The real check needs a CUDA host (README, "Devices")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.test_benchmarks_smoke import BENCH, ROOT, run_quick


def test_cpu_smoke_run_checks_every_task_model():
    d = run_quick("gpu_check.py", "--device", "cpu")
    assert d["status"] == "run" and d["device"] == "cpu" and d["ok"] is True
    expected = {f"{m}/{k}" for m in ("shd_rsnn", "vgg9", "resnet18") for k in ("stllr", "bptt")}
    assert set(d["gradients"]) == expected
    # the same device on both sides: the gradients must agree exactly
    assert all(r["float64_rel_diff"] == 0.0 for r in d["gradients"].values())
    assert all(r["bit_identical"] and r["spikes"] > 0 for r in d["emulator"].values())
    assert set(d["amp_bfloat16"]) == {"shd_rsnn", "vgg9", "resnet18"}
    for model in ("shd_rsnn", "vgg9"):
        points = d["timing"][model]
        assert [p["T"] for p in points] == [4, 8]
        for p in points:
            assert p["stllr_over_bptt_time"] > 0
        # BPTT keeps every step's graph, S-TLLR only the window's: memory grows with T
        assert points[1]["bptt"]["peak_saved_bytes"] > points[0]["bptt"]["peak_saved_bytes"]
        assert points[1]["stllr"]["peak_saved_bytes"] == points[0]["stllr"]["peak_saved_bytes"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: the check runs")
def test_without_a_gpu_it_says_so_and_exits_cleanly():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["status"] == "skipped"
    assert "no CUDA GPU" in proc.stderr
