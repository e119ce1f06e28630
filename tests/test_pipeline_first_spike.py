"""``stllr pipeline --task fs-ntidigits-standin --skip-lava`` end to end on a tiny
first-spike network (fs_fc, CuLIF, readout first_spike): the quantize stage and the report
give the FS accuracy and first-spike latency of the float and the 8-bit network, each
recomputed here from the networks themselves; the adaptation stage learns fc1 and out from
the first-spike teaching signal, in the emulator and in float."""

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
    "adaptation.samples=4",
    "adaptation.eval_every=2",
    "adaptation.lr=3e-3",
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
    assert "first-spike read-out: float FS" in out


def test_adaptation_stage_learns_from_the_teaching_signal(fs_run):
    """The stage runs (not skipped): both learners move out and fc1, the emulator's final
    accuracy is its FS accuracy recomputed from the stored learned weights, and the report
    gives both conditions with the teaching signal named."""
    import dataclasses

    from pipeline.adapt_device import emulator_predictions
    from pipeline.config import from_tables
    from pipeline.lava_inference import padded_subset
    from pipeline.shift import make_shift
    from quantization.network import QNetwork
    from stllr.tasks import load_task

    run_dir, out = fs_run
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert "skipped" not in res
    s = res["settings"]
    assert s["layers"] == ["fc1", "out"] and s["learned_steps"] == 4 * 80
    assert s["first_spike_teacher"] == {"alpha": 0.1, "sigma": 5.0, "stop_correct": False}
    assert res["weights_changed"]["out"] > 0 and res["weights_changed"]["fc1"] > 0
    acc = res["accuracy"]
    for impl in ("emulator", "float"):
        assert set(acc[impl]["shifted"]) >= {"before", "after", "delta", "se"}
        assert set(acc[impl]["original"]) >= {"before", "after", "delta", "se"}
    w = torch.load(run_dir / "adaptation" / "weights.pt", weights_only=True)
    assert not torch.equal(w["float_after"]["out"]["w"], w["float_before"]["out"]["w"])
    cfg = from_tables(_json(run_dir / "pipeline.json")["config"], "pipeline.json")
    data = load_task(cfg.train)
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    for name, ws in w["device_after"].items():
        n = qnet.node(name)
        learned = torch.round(ws["w"] / 2.0**n.weight_exp).to(torch.int64)
        qnet = qnet.replace_node(dataclasses.replace(n, weight=learned))
    x, y, lengths = padded_subset(data.test, range(12), make_shift(cfg.adaptation), "test")
    x = torch.cat([x, x.new_zeros(s["steps"] - x.shape[0], *x.shape[1:])])
    pred = emulator_predictions(qnet, x, lengths)
    assert 100.0 * float((pred == y).double().mean()) == acc["emulator"]["after"]
    report = (run_dir / "report" / "report.md").read_text()
    assert "first-spike teaching signal" in report
    assert "| shifted condition, after adaptation (n=12) |" in report
    assert "| original condition, after adaptation (n=12) |" in report
    assert "host-computed first-spike teaching signal" in out


def test_adaptation_refuses_on_device_signals_for_first_spike(fs_run):
    """adaptation.signal = dfa (an error unit comparing a readout's membrane) has no
    first-spike form: a one-line UserError naming the key, before any data is loaded."""
    import dataclasses

    from pipeline.adaptation import run as adaptation_stage
    from pipeline.config import from_tables
    from pipeline.runner import Context
    from stllr.errors import UserError

    run_dir, _ = fs_run
    cfg = from_tables(_json(run_dir / "pipeline.json")["config"], "pipeline.json")
    cfg = dataclasses.replace(cfg, adaptation=dataclasses.replace(cfg.adaptation, signal="dfa"))
    ctx = Context(run_dir, cfg, progress=False, log=lambda *_: None)
    with pytest.raises(UserError, match=r"adaptation.signal = 'dfa' with readout first_spike"):
        adaptation_stage(ctx)
