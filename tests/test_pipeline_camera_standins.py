"""``stllr pipeline --task gesture32-standin`` / ``dvsplane-standin``: the first-spike
paper's camera stand-ins, flattened (and pooled) into the CuLIF recurrent network. The
configs resolve by task name; a tiny gesture32 run deploys end to end, its Lava run and
on-device learning bit-exact with the emulator, and its network's input is the naive
block sum of the frames."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from pipeline.resolve import resolve_run
from stllr.cli.main import main


@pytest.mark.parametrize(
    ("task", "pool", "inputs"),
    [("gesture32-standin", 2, 2 * 16 * 16), ("dvsplane-standin", 4, 2 * 15 * 19)],
)
def test_camera_standin_configs_resolve_by_task(task, pool, inputs):
    from stllr.models.factory import build_model

    cfg, out = resolve_run(task=task)
    t = cfg.train
    assert (t.task, t.arch, t.neuron, t.flatten, t.flatten_pool) == (
        task, "shd_rsnn", "culif", True, pool)  # fmt: skip
    assert cfg.adaptation.layers == ("rec", "readout")
    # the host's mechanisms are the config file's [adaptation] keys (read here with tomli),
    # off where the file names none (gesture32: three passes with the error gate; DVSPlane:
    # consolidation)
    import tomli

    from pipeline.adapt_mechanisms import Mechanisms
    from pipeline.config import config_path_for_task

    with open(config_path_for_task(task), "rb") as f:
        raw = tomli.load(f)["adaptation"]
    mech = Mechanisms.from_section(cfg.adaptation)
    for key in ("passes", "error_gate", "replay_buffer", "replay_every", "consolidate_shift"):
        assert getattr(mech, key) == raw.get(key, getattr(Mechanisms(), key)), key
    assert (cfg.adaptation.samples, cfg.adaptation.lr) == (raw["samples"], raw["lr"])
    assert out.name == f"pipeline_{task.replace('-', '_')}"
    model, _ = build_model(t, (inputs,), 10)
    assert model.rec.weight.shape == (t.hidden, inputs)


@pytest.mark.slow
def test_gesture32_standin_pipeline_deploys_runs_in_lava_and_learns(tmp_path):
    from pipeline.config import from_tables
    from quantization.network import QNetwork
    from stllr.tasks import load_task

    out, err = io.StringIO(), io.StringIO()
    sets = ["train.epochs=1", "train.hidden=16", f"train.data={tmp_path / 'data'}",
            "quantize.sweep_bits=8", "lava.samples=2", "adaptation.samples=3",
            "adaptation.eval_every=3", "adaptation.eval_samples=4",
            "adaptation.lava_eval_samples=2", "adaptation.lr=1e-3"]  # fmt: skip
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--task", "gesture32-standin",
                     "--out", str(tmp_path / "run"), "--set", *sets])  # fmt: skip
    assert code == 0, err.getvalue()
    run = tmp_path / "run"

    def js(rel):
        return json.loads((run / rel).read_text())

    qnet = QNetwork.load(run / "quantize" / "quantized.pt")
    assert tuple(qnet.input_shape) == (512,) and qnet.node("rec").du < 4095
    lava = js("lava/lava.json")
    assert lava["bit_exact"] and lava["lava_vs_emulator_agreement"] == 1.0
    res = js("adaptation/adaptation.json")
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]
    assert js("quantize/quantization.json")["latency"]["node"] == "rec"
    # the deployed network reads the frames summed over 2×2 pixels (a naive loop)
    cfg = from_tables(js("pipeline.json")["config"], "pipeline.json")
    data = load_task(cfg.train)
    raw = load_task(cfg.train.replace(flatten=False, flatten_pool=1))
    x, _ = raw.test[0]
    want = torch.zeros(x.shape[0], 2, 16, 16)
    for y in range(32):
        for xx in range(32):
            want[:, :, y // 2, xx // 2] += x[:, :, y, xx]
    assert torch.equal(data.test[0][0], want.reshape(x.shape[0], -1))
