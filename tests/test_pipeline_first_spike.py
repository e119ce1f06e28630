"""``stllr pipeline --task fs-ntidigits-standin --skip-lava`` end to end on a tiny
first-spike network (fs_fc, CuLIF, readout first_spike): the quantize stage and the report
give the FS accuracy and first-spike latency of the float and the 8-bit network, each
recomputed here from the networks themselves; the adaptation stage says it is skipped."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from stllr.cli.main import main

TINY = [
    "train.epochs=1",
    "train.hidden_sizes=24,24",
    "train.standin_train=40",
    "train.standin_test=12",
    "train.n_time_bins=80",
    "quantize.sweep_bits=8",
]


@pytest.fixture(scope="module")
def fs_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_fs")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--task", "fs-ntidigits-standin",
                     "--skip-lava", "--out", str(root / "run"), "--set", *TINY,
                     f"train.data={root / 'data'}"])  # fmt: skip
    assert code == 0, err.getvalue()
    return root / "run", out.getvalue()


def _json(path: Path):
    return json.loads(Path(path).read_text())


def _naive_integer_fs(qnet, data) -> tuple[float, float, int]:
    """Batch-1 emulator steps per test sample (each over its own steps): FS accuracy (%) by
    docs/first_spike.md's rule written as loops, mean first output spike step over the
    samples with one, and the number of silent samples."""
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import quantize_input

    emu = IntegerEmulator(qnet)
    correct, firsts, silent = 0, [], 0
    for i in range(len(data.test)):
        x, y = data.test[i]
        emu.reset()
        pred, peak = None, None
        for t in range(x.shape[0]):
            s = emu.forward(quantize_input(x[t][None], qnet.input_format))["out"][0]
            v = emu.state["out"].v[0].double()
            peak = v if peak is None else torch.maximum(peak, v)
            if pred is None and int(s.sum()) > 0:
                pred = int(s.nonzero()[0])
                firsts.append(t + 1)
        if pred is None:
            silent += 1
            pred = int(peak.argmax())
        correct += int(pred == int(y))
    return 100.0 * correct / len(data.test), sum(firsts) / len(firsts), silent


def test_quantize_stage_and_report_give_fs_accuracy_and_latency(fs_run):
    from pipeline.config import from_tables
    from quantization.network import QNetwork, SpikingLayer
    from stllr.tasks import load_task

    run_dir, out = fs_run
    q = _json(run_dir / "quantize" / "quantization.json")
    fs = q["first_spike"]
    assert fs["node"] == "out" and q["latency"] is None
    for key in ("float", "integer"):
        assert {"fs_acc", "latency", "silent", "spikes_per_sample"} <= set(fs[key])
        assert fs[key]["samples"] == 12
    # the stage's accuracies are the FS read-out's (two code paths: tally and emulator)
    assert fs["float"]["fs_acc"] == pytest.approx(q["float_accuracy"])
    assert fs["integer"]["fs_acc"] == pytest.approx(q["ptq"]["accuracy"])
    cfg = from_tables(_json(run_dir / "pipeline.json")["config"], "pipeline.json")
    data = load_task(cfg.train)
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    assert isinstance(qnet.nodes[-1], SpikingLayer) and qnet.nodes[-1].du < 4095
    acc, first, silent = _naive_integer_fs(qnet, data)
    assert fs["integer"]["fs_acc"] == pytest.approx(acc)
    assert fs["integer"]["latency"] == pytest.approx(first)
    assert fs["integer"]["silent"] == silent
    assert 1 <= fs["float"]["latency"] <= 80
    report = (run_dir / "report" / "report.md").read_text()
    assert "| FS accuracy |" in report and "first spike (step)" in report
    assert "\nFirst-spike read-out of the output layer 'out' on the test split" in report
    assert "adaptation | skipped: on-device learning of a first-spike" in report
    assert _json(run_dir / "adaptation" / "adaptation.json")["skipped"] is True
    assert "first-spike read-out: float FS" in out
