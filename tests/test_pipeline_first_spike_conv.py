"""``stllr pipeline --task fs-dvsplane-standin --skip-lava`` end to end on a tiny fs_plane
(CuLIF, readout first_spike): the quantize stage's 8-bit FS accuracy and latency equal
those recomputed here from the saved integer network, one sample and one step at a time,
and the adaptation stage runs on ``fc`` (W and W_rec) and ``out`` (not skipped). Slow (a
minute or more on a loaded CPU)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from stllr.cli.main import main

TINY = [
    "train.epochs=1",
    "train.channels=4,4,4",
    "train.hidden_sizes=8",
    "train.n_time_bins=24",
    "quantize.sweep_bits=8",
    "cost.samples=4",
    "adaptation.samples=4",
    "adaptation.eval_every=4",
]


def naive_integer_fs(qnet, data) -> tuple[float, list[int], int]:
    """Batch-1 emulator steps per test sample: FS accuracy (%) by docs/first_spike.md's rule
    written as loops (first output spike, lowest index; else the highest membrane), the
    first-spike steps of the samples with one, and the number of silent samples."""
    import torch

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
    return 100.0 * correct / len(data.test), firsts, silent


@pytest.mark.slow
def test_conv_first_spike_pipeline_end_to_end(tmp_path):
    import torch

    from pipeline.config import from_tables
    from quantization.network import Flatten, QNetwork
    from stllr.tasks import load_task

    run = tmp_path / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--task", "fs-dvsplane-standin", "--skip-lava",
                     "--out", str(run), "--set", *TINY])  # fmt: skip
    assert code == 0, err.getvalue()
    q = json.loads((run / "quantize" / "quantization.json").read_text())
    fs = q["first_spike"]
    assert fs["node"] == "out" and fs["integer"]["fs_acc"] == pytest.approx(q["ptq"]["accuracy"])
    cfg = from_tables(json.loads((run / "pipeline.json").read_text())["config"], "pipeline.json")
    qnet = QNetwork.load(run / "quantize" / "quantized.pt")
    assert any(isinstance(n, Flatten) for n in qnet.nodes)
    acc, firsts, silent = naive_integer_fs(qnet, load_task(cfg.train))
    assert fs["integer"]["fs_acc"] == pytest.approx(acc)
    assert fs["integer"]["silent"] == silent
    if firsts:
        assert fs["integer"]["latency"] == pytest.approx(sum(firsts) / len(firsts))
    res = json.loads((run / "adaptation" / "adaptation.json").read_text())
    assert "skipped" not in res and res["settings"]["layers"] == ["fc", "out"]
    assert res["settings"]["learned_steps"] == 4 * res["settings"]["steps"]
    # the one-epoch tiny net's pooled and fc layers barely fire, so its updates are zero
    # here: learning itself is tested on firing nets (tests/test_first_spike_adaptation.py)
    assert set(res["weights_changed"]) == {"fc", "out"}
    w = torch.load(run / "adaptation" / "weights.pt", weights_only=True)
    for kind in ("float_before", "fixed_before", "device_after", "float_after"):
        assert set(w[kind]["fc"]) == {"w", "w_rec"}, kind  # the recurrent FC layer's W_rec
    assert (run / "report" / "report.md").exists()
