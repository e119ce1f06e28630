"""``stllr pipeline --from-nir``: a network written by snnTorch runs train(import) → 8-bit →
Lava → on-device adaptation → report, as a trained one does.

The independent reference is snnTorch itself: the accuracy the train stage reports for the
imported network must equal the accuracy of snnTorch's own forward pass of the same
network (its ``Sequential``, each test sample over its own length, spikes summed). The
report must name the file and its sha256 (recomputed here). A graph whose sizes do not
fit the task is a one-line error. Skipped when snnTorch (extra ``nir-interop``) is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")
pytest.importorskip("nirtorch")

from snntorch import utils as snn_utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402

from stllr.cli.main import main  # noqa: E402

TINY = [
    "train.nir_dt=1e-4",  # snnTorch's graphs state no dt; its β = 1 − dt/τ uses 1e-4 s
    "train.standin_train=200",
    "train.standin_test=40",
    "quantize.sweep_bits=4,8",
    "lava.samples=4",
    "adaptation.samples=6",
    "adaptation.passes=1",  # the default streams 4 passes (docs/adaptation.md §5)
    "adaptation.eval_every=3",
    "adaptation.eval_samples=20",
    "adaptation.lava_eval_samples=4",
]


def _leaky(n: int) -> dict:
    return {
        "beta": torch.full((n,), 0.9), "threshold": torch.full((n,), 0.7),
        "reset_mechanism": "zero", "reset_delay": False, "init_hidden": True,
    }  # fmt: skip


def snntorch_net(n_in: int, hidden: int, n_out: int, seed: int = 0) -> torch.nn.Sequential:
    """Linear → RLeaky → Linear → Leaky, weights scaled up so that every layer spikes."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(n_in, hidden),
        snn.RLeaky(linear_features=hidden, **_leaky(hidden)),
        torch.nn.Linear(hidden, n_out),
        snn.Leaky(**_leaky(n_out)),
    )
    with torch.no_grad():
        net[0].weight.mul_(8.0)
        net[2].weight.mul_(3.0)
    return net


def write_snntorch(net, n_in: int, path: Path) -> Path:
    nir.write(str(path), export_to_nir(net, torch.zeros(1, n_in), ignore_dims=[0]))
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", "--threads", "1", *args])
    return code, out.getvalue(), err.getvalue()


def summed_outputs(step, reset, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(output summed over each sample's own steps ``[N, K]``, labels ``[N]``)."""
    totals, labels = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            x, y = dataset[i]
            reset()
            totals.append(sum(step(x[t][None]) for t in range(x.shape[0]))[0])
            labels.append(int(y))
    return torch.stack(totals), torch.tensor(labels)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nir_pipeline_data")


def test_pipeline_from_a_snntorch_graph_runs_to_the_report(tmp_path, data_dir):
    net = snntorch_net(700, 16, 20)
    path = write_snntorch(net, 700, tmp_path / "snntorch.nir")
    run = tmp_path / "run"
    code, out, err = run_cli(
        "--from-nir", str(path), "--out", str(run), "--set", *TINY, f"train.data={data_dir}"
    )
    assert code == 0, err
    for stage in ("train", "quantize", "cost", "lava", "adaptation", "report"):
        assert (run / stage / "stage.json").is_file(), stage
    summary = json.loads((run / "train" / "summary.json").read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["nir"]["sha256"] == digest and summary["nir"]["model"] == "SpikingChain"
    assert (
        summary["epochs"] == 0 and (run / "train" / "model.nir").read_bytes() == path.read_bytes()
    )

    from pipeline.artefacts import load_float_model
    from pipeline.config import from_tables
    from stllr.tasks import load_task

    cfg = from_tables(json.loads((run / "pipeline.json").read_text())["config"], "pipeline.json")
    data = load_task(cfg.train)
    theirs, y = summed_outputs(net, lambda: snn_utils.reset(net), data.test)
    deployed, _ = load_float_model(run, cfg.train, data)  # best.pt + the run's model.nir
    ours, _ = summed_outputs(deployed, deployed.reset_state, data.test)
    assert theirs.sum() > 0 and torch.equal(ours, theirs)  # the same spikes, every sample
    acc = 100.0 * float((theirs.argmax(dim=1) == y).float().mean())
    assert summary["final_test_acc"] == pytest.approx(acc, abs=1e-9)

    report = (run / "report" / "report.md").read_text()
    assert "Network imported from NIR" in report and digest in report and str(path) in report
    assert "not stated in the graph's metadata" in report  # snnTorch writes no producer
    lava = json.loads((run / "lava" / "summary.json").read_text())
    assert not lava["skipped"] and lava["bit_exact"]  # Lava fixed_pt = the 8-bit emulator
    assert "imported as SpikingChain" in out


def test_graph_that_does_not_fit_the_task_is_one_line(tmp_path, data_dir):
    path = write_snntorch(snntorch_net(12, 8, 20), 12, tmp_path / "small.nir")
    code, _, err = run_cli(
        "--from-nir", str(path), "--out", str(tmp_path / "run"), "--set", *TINY,
        f"train.data={data_dir}",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "small.nir: the graph takes input [12] and gives 20 outputs" in err
    assert "task 'shd-standin' has samples [700] and 20 classes" in err
    assert not (tmp_path / "run").exists()


def test_missing_file_and_wrong_dt_are_one_line(tmp_path, data_dir):
    code, _, err = run_cli("--from-nir", str(tmp_path / "none.nir"))
    assert code == 2 and "--from-nir" in err and "none.nir" in err
    path = write_snntorch(snntorch_net(700, 8, 20), 700, tmp_path / "snn.nir")
    sets = [s for s in TINY if not s.startswith("train.nir_dt")]
    code, _, err = run_cli(
        "--from-nir", str(path), "--out", str(tmp_path / "r"), "--set", *sets,
        f"train.data={data_dir}",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "snn.nir: NIR node '1.lif' (LIF): field 'tau' must be > dt = 0.001" in err


@pytest.mark.slow
def test_full_size_snntorch_rsnn_fine_tuned_in_the_pipeline(tmp_path, data_dir):
    """The SHD RSNN's size (700 → 256 recurrent → 20), two epochs of S-TLLR fine-tuning."""
    net = snntorch_net(700, 256, 20)
    path = write_snntorch(net, 700, tmp_path / "rsnn.nir")
    run = tmp_path / "run"
    sets = [*TINY, "train.epochs=2", "train.standin_train=0", "train.standin_test=0"]
    code, _, err = run_cli("--from-nir", str(path), "--out", str(run), "--set", *sets)
    assert code == 0, err
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["epochs"] == 2 and len(summary["history"]) == 2
    assert "S-TLLR fine-tuning" in (run / "report" / "report.md").read_text()
