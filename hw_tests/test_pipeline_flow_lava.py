"""The flow pipeline's Lava stages (``stllr pipeline --task mvsec-standin`` with Lava) on the
tiny stand-in of tests/test_pipeline_flow.py.

Lava ``fixed_pt`` runs the first windows of each test sequence: its finest flows equal
the emulator's bit for bit, and its summed AEE equals the one
:func:`quantization.flow_eval.evaluate_integer_flow` computes on the same windows of an
independently written copy of the data; ``floating_pt`` matches torch within 1e-5 px;
the flow head's on-device learning replayed in Lava leaves the emulator's weights; the
report has the Lava row and the Lava flow picture (equal to the 8-bit one).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from stllr.cli.main import main
from tests.test_pipeline_flow import TINY, _independent_data

N = 2  # Lava windows per test sequence


@pytest.fixture(scope="module")
def lava_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_flow_lava")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--threads", "1", "--task", "mvsec-standin",
                     "--out", str(root / "run"), "--set", *TINY, f"lava.samples={N}",
                     "adaptation.lava_eval_samples=3", f"train.data={root / 'data'}",
                     # whole-LSB steps: at the config's 3e-10 whether 3 windows move a
                     # weight depends on the stochastic-rounding draws (their random streams)
                     "adaptation.lr=1e-8"])  # fmt: skip
    assert code == 0, err.getvalue()
    return root


def _json(path):
    return json.loads(path.read_text())


def test_lava_flows_equal_the_emulator_and_its_aee(lava_run):
    from quantization.flow_eval import evaluate_integer_flow
    from quantization.network import QNetwork

    run = lava_run / "run"
    lava = _json(run / "lava" / "lava.json")
    assert lava["enabled"] and lava["fixed_differing_flows"] == 0
    assert lava["windows"] == 4 * N
    assert lava["float_max_abs_dflow"] <= 1e-5
    cfg, data = _independent_data(lava_run)
    first = {name: [d[i] for i in range(N)] for name, d in data.test.items()}
    qnet = QNetwork.load(run / "quantize" / "quantized.pt")
    scores = evaluate_integer_flow(qnet, first, cfg.val_batch_size)
    assert lava["sum_aee"]["lava"] == pytest.approx(sum(s.aee for s in scores), rel=1e-9)
    assert lava["sum_aee"]["int"] == lava["sum_aee"]["lava"]
    flows = np.load(run / "lava" / "flows.npz")
    for name in data.test:
        assert np.array_equal(flows[f"{name}__lava"], flows[f"{name}__int"])


def test_lava_replays_the_flow_heads_learning(lava_run):
    rep = _json(lava_run / "run" / "adaptation" / "adaptation.json")["lava_replay"]
    assert rep["windows"] == 3 and rep["differing_weights"] == 0 and rep["weights_moved"] > 0


def test_report_has_the_lava_rows(lava_run):
    md = (lava_run / "run" / "report" / "report.md").read_text()
    assert "| Lava fixed_pt, Lava's windows | 8 |" in md
    assert "0 of" in md and "learned weights differ from the emulator's" in md
