"""``stllr pipeline --task ntidigits-standin`` end to end on tiny networks of the neurons
beyond the LIF: a CuLIF network (a current-based layer deployed at 8 bits, run in Lava,
learning on device with the current traces of docs/fixed_point.md exactly as in the
emulator; the report's latency metric recomputed here with a naive batch-1 loop) and an
AdLIF network (the AdaptiveLayer kind in the emulator and Lava, it and its readout
learning on device, Lava's learned weights the emulator's)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from stllr.cli.main import main

TINY = [
    "train.epochs=1",
    "train.hidden=24",
    "train.standin_train=40",
    "train.standin_test=12",
    "train.n_time_bins=80",
    "train.window=80",
    "quantize.sweep_bits=8",
    "lava.samples=2",
    "adaptation.samples=3",
    "adaptation.window=30",
    "adaptation.eval_every=3",
    "adaptation.eval_samples=6",
    "adaptation.lava_eval_samples=2",
    "adaptation.lr=1e-3",
]


def _run(root: Path, *sets: str) -> tuple[Path, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--task", "ntidigits-standin",
                     "--out", str(root / "run"), "--set", *TINY,
                     f"train.data={root / 'data'}", *sets])  # fmt: skip
    assert code == 0, err.getvalue()
    return root / "run", out.getvalue()


@pytest.fixture(scope="module")
def culif_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("pipeline_culif"))


def test_adlif_network_deploys_and_learns_on_device(tmp_path):
    """``neuron = adlif``: the recurrent layer is an AdaptiveLayer, bit-exact in Lava; it
    and the readout learn on device, Lava's learned weights equal the emulator's."""
    from quantization.network import AdaptiveLayer, QNetwork

    run_dir, out = _run(tmp_path, "train.neuron=adlif", "train.hidden=12",
                        "train.standin_train=24")  # fmt: skip
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    assert isinstance(qnet.node("rec"), AdaptiveLayer)
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert res["settings"]["layers"] == ["rec", "readout"] and res["lava"]["weights_equal"]
    cost = _json(run_dir / "cost" / "cost.json")
    assert "rec" in cost["activation_sparsity"]
    assert _json(run_dir / "quantize" / "quantization.json")["latency"]["node"] == "rec"


def _json(path: Path):
    return json.loads(Path(path).read_text())


def test_culif_network_deploys_runs_in_lava_and_learns_on_device(culif_run):
    from quantization.network import QNetwork

    run_dir, out = culif_run
    for stage in ("train", "quantize", "cost", "lava", "adaptation", "report"):
        assert f"] {stage}: " in out
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    assert qnet.node("rec").du < 4095  # current-based
    # the paired gap (per-sample predictions) equals the two accuracies' difference
    # (run_epoch and the emulator's evaluate, computed separately)
    quant = _json(run_dir / "quantize" / "quantization.json")
    gap, n = quant["deployed_vs_float"], quant["test_samples"]
    assert math.isclose(gap["delta"], quant["ptq"]["accuracy"] - quant["float_accuracy"],
                        abs_tol=1e-9)  # fmt: skip
    assert math.isclose(gap["delta"], 100.0 * (gap["new_only"] - gap["ref_only"]) / n)
    assert "paired SE" in out
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert res["settings"]["layers"] == ["rec", "readout"]
    assert res["weights_changed"]["rec"] > 0
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]


def _naive_integer_latency(qnet, data) -> tuple[float, float]:
    """Batch-1 emulator steps per test sample: mean first-spike step of ``rec`` over the
    samples with a spike, and mean step from which the running argmax of the summed
    logits stays the final one."""
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import quantize_input

    emu = IntegerEmulator(qnet)
    firsts, decisions = [], []
    for i in range(len(data.test)):
        x, _ = data.test[i]
        emu.reset()
        total, preds, first = None, [], None
        for t in range(x.shape[0]):
            outs = emu.forward(quantize_input(x[t][None], qnet.input_format))
            if first is None and int(outs["rec"].sum()) > 0:
                first = t + 1
            o = outs["readout"][0].double()
            total = o if total is None else total + o
            preds.append(int(total.argmax()))
        firsts += [] if first is None else [first]
        changed = [t + 1 for t in range(len(preds)) if preds[t] != preds[-1]]
        decisions.append((max(changed) if changed else 0) + 1)
    return sum(firsts) / len(firsts), sum(decisions) / len(decisions)


def test_latency_equals_a_naive_recomputation(culif_run):
    from pipeline.config import from_tables
    from quantization.network import QNetwork
    from stllr.tasks import load_task

    run_dir, out = culif_run
    lat = _json(run_dir / "quantize" / "quantization.json")["latency"]
    assert lat["node"] == "rec" and "first spike of rec at step" in out
    cfg = from_tables(_json(run_dir / "pipeline.json")["config"], "pipeline.json")
    data = load_task(cfg.train)
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    first, decision = _naive_integer_latency(qnet, data)
    got = lat["integer"]
    assert got["samples"] == len(data.test)
    assert math.isclose(got["first_spike_latency"], first)
    assert math.isclose(got["decision_step"], decision)
    assert 1 <= lat["float"]["first_spike_latency"] <= 80
    report = (run_dir / "report" / "report.md").read_text()
    assert "first spike of 'rec' (step)" in report
    assert torch.isfinite(torch.tensor(lat["float"]["decision_step"]))


@pytest.mark.slow
def test_cuadlif_network_deploys_and_learns_on_device(tmp_path):
    """``neuron = cuadlif``: the recurrent layer is a current-based AdaptiveLayer, bit-exact
    in Lava; it (current traces) and the readout learn on device, Lava's learned weights
    equal the emulator's."""
    from quantization.network import AdaptiveLayer, QNetwork

    run_dir, _ = _run(tmp_path, "train.neuron=cuadlif", "train.hidden=12",
                      "train.standin_train=24")  # fmt: skip
    qnet = QNetwork.load(run_dir / "quantize" / "quantized.pt")
    rec = qnet.node("rec")
    assert isinstance(rec, AdaptiveLayer) and rec.current_based
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert res["settings"]["layers"] == ["rec", "readout"] and res["lava"]["weights_equal"]
