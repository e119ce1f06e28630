"""``stllr pipeline`` end to end on a tiny SHD stand-in, checked against recomputation.

One tiny run (module fixture, ~40 s) is checked by recomputing its numbers independently:
the deployed network re-scored from ``quantized.pt``, the float model from ``best.pt``, the
emulator predictions of the Lava subset, the adapted accuracy from the stored weights and
a freshly re-generated shifted test set, and the cost metrics with a batch-1 loop over
each sample's real length. Resume tests work on copies of the run folder. The report is
rendered by headless Chromium (tests/chromium.py) and its figures must load and show.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from stllr.cli.main import main

TINY = [
    "train.epochs=2",
    "train.hidden=32",
    "train.standin_train=200",
    "train.standin_test=40",
    "quantize.sweep_bits=4,8",
    "lava.samples=4",
    "adaptation.layers=rec,readout",
    "adaptation.samples=6",
    "adaptation.passes=1",  # the default streams 4 passes (docs/adaptation.md §5)
    "adaptation.eval_every=3",
    "adaptation.eval_samples=20",
    "adaptation.lava_eval_samples=4",
]
STAGES = ("train", "quantize", "cost", "lava", "adaptation", "report")


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["pipeline", "--no-progress", *args])
    return code, out.getvalue(), err.getvalue()


def resume_cli(run_dir, data_dir, *flags: str, sets: tuple[str, ...] = ()):
    """``stllr pipeline --out RUN --resume FLAGS --set TINY train.data=DATA SETS``."""
    return run_cli(
        "--out", str(run_dir), "--resume", *flags, "--set", *TINY, f"train.data={data_dir}", *sets
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shd_standin_pipeline")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    code, out, err = run_cli("--out", str(run_dir), "--set", *TINY, f"train.data={data_dir}")
    assert code == 0, err
    return run_dir, out


def _json(path: Path):
    return json.loads(Path(path).read_text())


def _cfg(run_dir: Path):
    from pipeline.config import from_tables

    stored = _json(run_dir / "pipeline.json")["config"]
    return from_tables(stored, "pipeline.json")


def test_runs_end_to_end_with_a_line_per_stage(tiny_run):
    run_dir, out = tiny_run
    for k, name in enumerate(STAGES, 1):
        lines = [ln for ln in out.splitlines() if ln.startswith(f"[{k}/6] {name}: ")]
        assert len(lines) == 2, out  # the title, then the one-line summary
        marker = _json(run_dir / name / "stage.json")
        assert marker["stage"] == name and marker["line"] in lines[1]
        for rel in marker["artefacts"]:
            assert (run_dir / rel).is_file(), rel
    for rel in (
        "train/trial_1/best.pt",
        "quantize/quantized.pt",
        "cost/cost.json",
        "lava/lava.json",
        "adaptation/adaptation.json",
        "report/report.html",
        "report/report.md",
    ):
        assert (run_dir / rel).is_file(), rel
    assert f"report: {run_dir / 'report' / 'report.html'}" in out


def test_quantize_numbers_recompute(tiny_run):
    from pipeline.artefacts import load_float_model
    from quantization.network import QNetwork
    from quantization.report import emulator_accuracy, float_accuracy
    from stllr.tasks import load_task

    run_dir, _ = tiny_run
    cfg = _cfg(run_dir)
    data = load_task(cfg.train)
    q = _json(run_dir / "quantize" / "quantization.json")
    acc, _ = emulator_accuracy(
        QNetwork.load(run_dir / "quantize" / "quantized.pt"), data.test, cfg.train.val_batch_size
    )
    assert acc == q["ptq"]["accuracy"] == _json(run_dir / "quantize/summary.json")["ptq_accuracy"]
    model, _ = load_float_model(run_dir, cfg.train, data)
    f_acc = float_accuracy(model, data.test, cfg.train.val_batch_size)
    assert f_acc == q["float_accuracy"] == _json(run_dir / "train/summary.json")["best_test_acc"]
    sweep = _json(run_dir / "quantize" / "sweep.json")
    assert [r["bits"] for r in sweep["entries"][0]["ptq"]] == [4, 8]
    assert sweep["entries"][0]["ptq"][1]["accuracy"] == acc


def test_lava_agrees_with_emulator_and_recomputes(tiny_run):
    from pipeline.artefacts import load_qnet
    from pipeline.lava_inference import emulate, padded_subset
    from quantization.ptq import quantize_input
    from stllr.padding import sum_over_lengths
    from stllr.tasks import load_task

    run_dir, _ = tiny_run
    lava = _json(run_dir / "lava" / "lava.json")
    assert lava["lava_vs_emulator_agreement"] == 1.0
    assert lava["bit_exact"] and not any(lava["mismatched_values"].values())
    data = load_task(_cfg(run_dir).train)
    x, y, lengths = padded_subset(data.test, range(lava["samples"]))
    qnet = load_qnet(run_dir)
    out = emulate(qnet, quantize_input(x, qnet.input_format))["readout"]
    pred = sum_over_lengths(out, lengths).argmax(1)  # each sample over its own steps
    assert pred.tolist() == lava["predictions"]["emulator"] == lava["predictions"]["lava"]
    assert y.tolist() == lava["labels"]
    assert lava["accuracy"]["lava"] == 100.0 * float((pred == y).double().mean())


def test_lava_floating_pt_equals_a_float64_torch_recomputation(tiny_run):
    """The float model in Lava floating_pt: its stored logits equal the trained model
    re-evaluated here in float64 (the exact reference) within the documented tolerance,
    and every stored prediction, accuracy and agreement recomputes."""
    import copy

    import numpy as np

    from pipeline.artefacts import load_float_model
    from pipeline.lava_inference import FLOAT_LOGIT_TOL, padded_subset
    from stllr.tasks import load_task
    from stllr.training import evaluate_batch

    run_dir, _ = tiny_run
    lava = _json(run_dir / "lava" / "lava.json")
    lf = lava["lava_float"]
    cfg = _cfg(run_dir)
    data = load_task(cfg.train)
    x, y, lengths = padded_subset(data.test, range(lava["samples"]))
    model, _ = load_float_model(run_dir, cfg.train, data)
    ref32 = evaluate_batch(model, x, lengths=lengths).logits.double().numpy()
    model64 = copy.deepcopy(model).double()
    ref64 = evaluate_batch(model64, x.double(), lengths=lengths).logits.numpy()
    got = np.asarray(lf["logits"], dtype=np.float64)
    assert got.shape == ref64.shape == (lava["samples"], data.num_classes)
    diff = float(np.abs(got - ref64).max())
    assert FLOAT_LOGIT_TOL == lf["tolerance"] == 1e-5
    assert diff <= FLOAT_LOGIT_TOL and lf["within_tolerance"]
    assert lf["max_abs_logit_diff"] == pytest.approx(diff, abs=1e-12)
    assert np.abs(ref64).max() > 1e3 * FLOAT_LOGIT_TOL  # logits far from 0: not vacuous
    pred = ref64.argmax(1)
    assert lava["predictions"]["lava_float"] == got.argmax(1).tolist() == pred.tolist()
    assert lf["float64_predictions"] == pred.tolist() and lf["vs_float64_agreement"] == 1.0
    assert lava["predictions"]["float"] == ref32.argmax(1).tolist()
    assert lf["vs_float_agreement"] == float((pred == ref32.argmax(1)).mean())
    acc = 100.0 * float((torch.as_tensor(pred) == y).double().mean())
    summary = _json(run_dir / "lava" / "summary.json")
    assert lava["accuracy"]["lava_float"] == acc == summary["accuracy"]["lava_float"]
    assert lf["max_abs_logit_diff_vs_float32"] == pytest.approx(np.abs(got - ref32).max())
    n = lava["samples"]
    line = _json(run_dir / "lava" / "stage.json")["line"]
    assert f"Lava floating_pt {acc:.1f}% (= torch float64 predictions {n}/{n}" in line


def test_adaptation_parity_and_recomputed_accuracy(tiny_run):
    import dataclasses

    from pipeline.adapt_device import emulator_predictions
    from pipeline.artefacts import load_qnet
    from pipeline.lava_inference import padded_subset
    from pipeline.shift import make_shift
    from stllr.tasks import load_task

    run_dir, _ = tiny_run
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]
    assert res["lava"]["agreement"] == {"before": 1.0, "after": 1.0}
    assert res["weights_changed"]["readout"] > 0 and res["weights_changed"]["rec"] > 0
    assert res["curves"]["samples"] == [0, 3, 6]
    acc = res["accuracy"]
    assert res["curves"]["emulator"][0] == acc["emulator"]["before"]
    assert res["curves"]["emulator"][-1] == acc["emulator"]["after"]
    assert res["curves"]["float"][-1] == acc["float"]["after"]
    # the adapted network rebuilt from the stored weights, on a re-generated shifted test set
    cfg = _cfg(run_dir)
    data = load_task(cfg.train)
    qnet = load_qnet(run_dir)
    learned = torch.load(run_dir / "adaptation" / "weights.pt", weights_only=True)
    for name, w in learned["device_after"].items():
        n = qnet.node(name)
        kw = {
            k2: torch.round(v / 2.0**n.weight_exp).to(torch.int64)
            for k2, v in (("weight", w["w"]), ("weight_rec", w.get("w_rec")))
            if v is not None
        }
        assert (kw["weight"] != n.weight).any()
        qnet = qnet.replace_node(dataclasses.replace(n, **kw))
    x, y, lengths = padded_subset(data.test, range(20), make_shift(cfg.adaptation), "test")
    steps = res["settings"]["steps"]
    x = torch.cat([x, x.new_zeros(steps - x.shape[0], *x.shape[1:])])
    pred = emulator_predictions(qnet, x, lengths)
    assert 100.0 * float((pred == y).double().mean()) == acc["emulator"]["after"]


def test_cost_metrics_recompute_per_sample(tiny_run):
    from pipeline.artefacts import load_qnet
    from quantization.emulator import IntegerEmulator
    from quantization.ptq import quantize_input
    from stllr.tasks import load_task

    run_dir, _ = tiny_run
    cost = _json(run_dir / "cost" / "cost.json")
    qnet = load_qnet(run_dir)
    data = load_task(_cfg(run_dir).train)
    w_ro = qnet.node("readout").weight
    fan = (w_ro != 0).sum(0).double()  # nonzero fan-out of each hidden neuron
    spikes = steps = ops = 0.0
    for i in range(len(data.test)):
        x, _ = data.test[i]
        emu = IntegerEmulator(qnet)
        xi = quantize_input(x[:, None], qnet.input_format)
        for t in range(xi.shape[0]):  # the sample's own length, batch 1, no padding
            s = emu.step(xi[t])["rec"][0].double()
            spikes += float(s.sum())
            steps += s.numel()
            ops += float(s @ fan)
    assert cost["activation_sparsity"]["rec"] == pytest.approx(1 - spikes / steps, rel=1e-12)
    row = next(r for r in cost["connections"] if r["layer"] == "readout")
    assert row["kind"] == "ACs"
    assert row["effective_per_sample"] == pytest.approx(ops / len(data.test), rel=1e-12)
    fp = next(r for r in cost["footprint"] if r["layer"] == "rec")
    assert fp["param_bytes"] == ((700 * 32 + 32 * 32) * 8 + 32 * 13 + 12 + 17) / 8
    first = next(r for r in cost["connections"] if r["source"] == "input")
    assert first["kind"] == "MACs"  # event counts per bin are graded


def _markers(run_dir: Path) -> dict[str, str]:
    return {s: (run_dir / s / "stage.json").read_text() for s in STAGES}


def test_resume_skips_finished_stages(tiny_run, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = _markers(run_dir)
    best = (run_dir / "train/trial_1/best.pt").stat().st_mtime_ns
    code, out, err = resume_cli(run_dir, data_dir)
    assert code == 0, err
    assert out.count("finished earlier, skipped") == len(STAGES), out
    assert _markers(run_dir) == before
    assert (run_dir / "train/trial_1/best.pt").stat().st_mtime_ns == best


def test_deleted_artefact_and_changed_setting_rerun_only_their_stages(tiny_run, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = _markers(run_dir)
    (run_dir / "lava" / "sample.npz").unlink()
    code, out, err = resume_cli(run_dir, data_dir)
    assert code == 0, err
    title = "lava: Lava inference: fixed_pt vs the integer emulator, floating_pt vs torch"
    assert f"{title} (an artefact is missing" in out
    after = _markers(run_dir)
    rerun = {s for s in STAGES if after[s] != before[s]}
    assert "lava" in rerun and rerun <= {"lava", "report"}, rerun
    assert (run_dir / "lava" / "sample.npz").is_file()
    # a changed adaptation setting re-runs the adaptation (and the report), nothing before it
    code, out, err = resume_cli(run_dir, data_dir, sets=("adaptation.samples=3",))
    assert code == 0, err
    again = _markers(run_dir)
    assert {s for s in STAGES if again[s] != after[s]} == {"adaptation", "report"}
    assert _json(run_dir / "adaptation/adaptation.json")["curves"]["samples"] == [0, 3]
    # a changed training setting is refused, not silently retrained
    code, out, err = resume_cli(run_dir, data_dir, sets=("train.epochs=3",))
    assert code == 2 and err.count("\n") == 1
    assert "the finished training used other settings (epochs: 2 → 3)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "custom"], "task 'custom' reads real files: give --data PATH (an events"),
        (["--task", "shd"], "task 'shd' reads real files: give --data PATH"),
        (["--data", "/no/such/folder"], "--data /no/such/folder: no such file or directory"),
        (["--task", "shd-standin", "--data", "."], "is the built-in stand-in"),
        (["--config", "/no/such.toml"], "pipeline config /no/such.toml does not exist"),
        (["--set", "epochs=2"], "--set expects section.key=value"),
        (["--set", "adaptation.nokey=1"], "unknown key adaptation.nokey"),
        (["--set", "train.nokey=1"], "unknown config key 'nokey'"),
        (["--set", "adaptation.scenario=flood"], "unknown adaptation scenario 'flood'"),
        (["--qat-epochs", "-1"], "--qat-epochs must be ≥ 0"),
        (["--resume", "--out", "/no/such/run"], "holds no pipeline run"),
        (["--skip-lava", "--rerun-from", "lava"], "contradict"),
    ],
)
def test_bad_input_is_one_line(args, message, tmp_path):
    out_dir = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    code, out, err = run_cli(*args, *out_dir)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("stllr: error: "), err
    assert message in err


def test_existing_run_needs_resume_and_stage_names_are_checked(tiny_run):
    run_dir = str(tiny_run[0])
    code, _, err = run_cli("--out", run_dir, "--set", *TINY)
    assert code == 2 and "already holds a pipeline run; pass --resume" in err
    code, _, err = run_cli("--out", run_dir, "--resume", "--rerun-from", "nope", "--set", *TINY)
    assert code == 2 and "--rerun-from 'nope': unknown stage" in err and err.count("\n") == 1


def test_help_says_what_it_does_with_examples(capsys):
    for argv in (["--help"], ["pipeline", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "pipeline" in text and "Example" in text


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    from tests.chromium import render_images

    run_dir, _ = tiny_run
    figures = _json(run_dir / "report/summary.json")["figures"]
    assert {
        "accuracy_overview.png",
        "accuracy_vs_bits.png",
        "memory_vs_T.png",
        "spike_raster.png",
        "weight_histograms.png",
        "adaptation_curves.png",
        "synaptic_operations.png",
    } <= set(figures)
    images = render_images(run_dir / "report" / "report.html", tmp_path)
    assert [im["file"] for im in images] == figures
    for im in images:
        assert im["complete"] and im["naturalWidth"] > 0 and im["naturalHeight"] > 0, im
        assert im["width"] > 100 and im["height"] > 50, im
        assert im["display"] != "none" and im["visibility"] == "visible", im
        assert float(im["opacity"]) > 0 and im["left"] >= 0, im
    md = (run_dir / "report" / "report.md").read_text()
    for f in figures:
        assert f"](figures/{f})" in md and (run_dir / "report" / "figures" / f).is_file()


def _md_row(md: str, first_cell: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell}"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_report_has_a_lava_floating_pt_column_and_renders_older_runs(tiny_run, tmp_path):
    from pipeline.report import run as report_run
    from pipeline.runner import Context

    run_dir, _ = tiny_run
    lava = _json(run_dir / "lava" / "lava.json")
    n = lava["samples"]
    header = (
        "| condition | float (torch) | fixed point (emulator) | Lava fixed_pt | Lava floating_pt |"
    )
    md = (run_dir / "report" / "report.md").read_text()
    assert header in md
    row = _md_row(md, f"first {n} test samples (Lava run)")
    a = lava["accuracy"]
    assert row[1:] == [f"{a[k]:.1f} %" for k in ("float", "emulator", "lava", "lava_float")]
    assert _md_row(md, "shifted condition, after adaptation")[4] == "—"
    parity = _md_row(md, "Lava floating_pt vs torch float64")
    assert parity[2].startswith(f"{n}/{n} predictions equal") and "within 1e-05" in parity[3]
    html = (run_dir / "report" / "report.html").read_text()
    assert "<th>Lava floating_pt</th>" in html
    # a run folder written before the float Lava run existed still renders, with "—"
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    lava.pop("lava_float")
    lava["accuracy"].pop("lava_float")
    lava["predictions"].pop("lava_float")
    (old / "lava" / "lava.json").write_text(json.dumps(lava))
    report_run(Context(old, _cfg(run_dir), False, lambda _: None))
    md = (old / "report" / "report.md").read_text()
    assert header in md
    assert _md_row(md, f"first {n} test samples (Lava run)")[4] == "—"
    assert _md_row(md, "Lava floating_pt vs torch float64")[2:] == [
        "—",
        "not run (run folder made before this comparison)",
    ]


def test_chromium_probe_sees_broken_and_hidden_images(tmp_path):
    """The probe is not vacuous: a broken image has no natural size, a hidden one no box."""
    from tests.chromium import render_images

    page = tmp_path / "page.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img data-file="broken" src="data:image/png;base64,AAAA">'
        '<img data-file="hidden" style="display:none" src="data:image/gif;base64,R0lGODlhAQAB'
        'AIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"></body></html>'
    )
    broken, hidden = render_images(page, tmp_path)
    assert broken["file"] == "broken" and broken["naturalWidth"] == 0
    assert hidden["display"] == "none" and hidden["width"] == 0 and hidden["naturalWidth"] == 1


def test_skip_lava_reruns_lava_dependent_stages_without_lava(tiny_run, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = _markers(run_dir)
    code, out, err = resume_cli(run_dir, data_dir, "--skip-lava")
    assert code == 0, err
    after = _markers(run_dir)
    assert {s for s in STAGES if after[s] != before[s]} == {"lava", "adaptation", "report"}
    assert _json(run_dir / "lava/lava.json") == {"skipped": True}
    res = _json(run_dir / "adaptation/adaptation.json")
    assert res["lava"] is None and res["accuracy"]["lava"] is None
    md = (run_dir / "report/report.md").read_text()
    assert "skipped (--skip-lava)" in md and "spike_raster.png" not in md


def test_interrupted_training_continues_from_its_checkpoint(tmp_path, data_dir):
    """A training stage without a done-marker but with a checkpoint resumes after its last
    epoch (bit-identical continuation is stllr.run's job, tested in test_run_and_cli)."""
    from pipeline import STAGES as ALL
    from pipeline.config import apply_pipeline_overrides, config_path_for_task, load_pipeline_config
    from pipeline.runner import run_stages

    run_dir = tmp_path / "run"
    sets = [*TINY, f"train.data={data_dir}"]
    cfg = load_pipeline_config(config_path_for_task("shd-standin"), sets, run_dir=run_dir)
    logs: list[str] = []
    run_stages(ALL[:1], cfg, run_dir, progress=False, log=logs.append)
    (run_dir / "train" / "stage.json").unlink()  # as if stopped before the marker was written
    cfg3 = apply_pipeline_overrides(cfg, ["train.epochs=3"])
    logs.clear()
    run_stages(ALL[:1], cfg3, run_dir, resume=True, progress=False, log=logs.append)
    assert any("resuming after epoch 2" in line for line in logs), logs
    assert [m["epoch"] for m in _json(run_dir / "train/trial_1/metrics.json")] == [1, 2, 3]


def test_float_twin_computes_the_same_function_and_learns_only_plastic_weights():
    from pipeline.float_learner import FloatLearner, float_twin
    from stllr.models.shd import SHDNetSTLLR
    from stllr.training import evaluate_batch

    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=16, num_classes=5).eval()
    x = (torch.rand(30, 3, 40) < 0.2).float()
    twin = float_twin(model, ["rec", "readout"])
    assert not twin.rec.weight_std and model.rec.weight_std
    torch.testing.assert_close(evaluate_batch(twin, x).logits, evaluate_batch(model, x).logits)
    learner = FloatLearner(model, ["readout"], lr=1e-2, window=10)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.learn_sample(x[:, :1], 2)
    after = learner.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"readout.weight"}


def test_memory_points_fall_back_to_a_small_measurement(tmp_path):
    from pipeline.memory import memory_points

    points, source = memory_points(tmp_path / "missing.json")
    assert source == "measured now, small network"
    by = {(p["mode"], p["T"]): p["mib"] for p in points}
    assert by[("stllr", 10)] == by[("stllr", 80)] > 0  # flat in T
    assert by[("bptt", 80)] > 6 * by[("bptt", 10)]  # grows with T
    bench, source = memory_points(Path(__file__).parents[1] / "benchmarks" / "results.json")
    assert source.startswith("results.json") and {p["mode"] for p in bench} == {"stllr", "bptt"}


#: the config's stabilising mechanisms off (the reference below streams the plain samples;
#: DFA makes its own error, so the host's gate and rate scale do not apply)
NO_MECHANISMS = (
    "adaptation.error_gate=0",
    "adaptation.rate_decay=0",
    "adaptation.replay_buffer=0",
    "adaptation.replay_every=0",
    "adaptation.consolidate_shift=0",
    "adaptation.precondition=0",
)


def test_on_device_dfa_signals_in_lava_equal_the_emulator(tiny_run, tmp_path, data_dir):
    """adaptation.signal=dfa: Lava's own error and DFA feedback processes (no host between
    steps) learn the same weights as the emulator, and the float learner's DFA uses the
    device's B; only the adaptation and the report re-run."""
    from pipeline.learners import make_plan, make_plastic
    from quantization.signals import emulate_online

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = _markers(run_dir)
    code, out, err = resume_cli(
        run_dir, data_dir, sets=("adaptation.signal=dfa", "adaptation.lr=1e-4", *NO_MECHANISMS)
    )
    assert code == 0, err
    assert "third factor only (on-device error + DFA)" in out
    after = _markers(run_dir)
    assert {s for s in STAGES if after[s] != before[s]} == {"adaptation", "report"}
    res = _json(run_dir / "adaptation" / "adaptation.json")
    assert res["settings"]["signal"] == "dfa"
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]
    assert res["weights_changed"]["rec"] > 0 and res["weights_changed"]["readout"] > 0
    # the emulator's learned weights, recomputed with emulate_online on the same stream
    from pipeline.artefacts import load_qnet
    from pipeline.shift import make_shift
    from quantization.ptq import quantize_input
    from stllr.tasks import load_task
    from stllr.trainer import pad_time

    cfg = _cfg(run_dir)
    a = cfg.adaptation
    data = load_task(cfg.train)
    qnet = load_qnet(run_dir)
    sc = make_shift(a).build(data, a)
    xs = pad_time([x for x, _ in sc.stream])
    ys = [y for _, y in sc.stream]
    plastic = make_plastic(qnet, a.layers, [xs[:, :32]], a.lr, a.seed, "dfa")
    plan = make_plan(plastic, a.layers, "dfa", a.seed)
    xs_int = quantize_input(xs, qnet.input_format)
    ref = emulate_online(plastic, xs_int.transpose(0, 1), ys, learn_window=a.window, plan=plan)
    stored = torch.load(run_dir / "adaptation" / "weights.pt", weights_only=True)
    for name in a.layers:
        n = qnet.node(name)
        got = torch.round(stored["device_after"][name]["w"] / 2.0**n.weight_exp)
        assert torch.equal(got.to(torch.int64), torch.as_tensor(ref.weights[name]["w"]))


def test_qat_reports_its_float_control(tiny_run, tmp_path, data_dir):
    """With --qat-epochs the quantize stage also fine-tunes a float control as long as QAT;
    its accuracy is recomputed here from the trained checkpoint."""
    from pipeline.artefacts import load_float_model
    from quantization.qat import float_finetune
    from quantization.report import float_accuracy
    from stllr.tasks import load_task

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    code, out, err = resume_cli(
        run_dir, data_dir, "--rerun-from", "quantize", "--skip-lava", "--qat-epochs", "1"
    )
    assert code == 0, err
    cfg = _cfg(run_dir)
    data = load_task(cfg.train)
    model, mode = load_float_model(run_dir, cfg.train, data)
    float_finetune(model, mode, data.train, cfg.train, 1, log=lambda _: None)
    expected = float_accuracy(model, data.test, cfg.train.val_batch_size)
    q = _json(run_dir / "quantize" / "quantization.json")
    assert q["deployed"] == "qat" and q["float_control"]["epochs"] == 1
    assert q["float_control"]["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert q["qat"]["delta_vs_control"] == pytest.approx(q["qat"]["accuracy"] - expected)
    assert f"float control {expected:.1f}%" in out
    md = (run_dir / "report/report.md").read_text()
    assert _md_row(md, "test split, float fine-tuned")[1].startswith(f"{expected:.1f}")
    assert f"dash-dotted: float fine-tuned as long ({expected:.1f} %)" in md


def test_damaged_training_is_not_retrained_unless_asked(tiny_run, tmp_path, data_dir, monkeypatch):
    """A modified best.pt stops the run with the reason; the checkpoint stays. Asked with
    --rerun-from train, it retrains, and a retraining that fails keeps the old train/."""
    import stllr.run

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    ckpt = (run_dir / "train/trial_1/checkpoint.pt").read_bytes()
    with (run_dir / "train/trial_1/best.pt").open("ab") as f:
        f.write(b"\0")
    code, out, err = resume_cli(run_dir, data_dir)
    assert code == 2 and err.count("\n") == 1, err
    assert "train/trial_1/best.pt is missing or was modified" in err
    assert "--rerun-from train" in err
    assert (run_dir / "train/trial_1/checkpoint.pt").read_bytes() == ckpt

    def fails_mid_training(cfg, **kw):
        (Path(cfg.out_dir) / cfg.name / "trial_1").mkdir(parents=True, exist_ok=True)
        (Path(cfg.out_dir) / cfg.name / "trial_1" / "checkpoint.pt").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(stllr.run, "run_experiment", fails_mid_training)
    try:  # the CLI prints the error or lets it through with its traceback: either is a failure
        code, out, err = resume_cli(run_dir, data_dir, "--rerun-from", "train")
        assert code != 0 and "disk full" in err, err
    except OSError as exc:
        assert "disk full" in str(exc)
    assert (run_dir / "train/trial_1/checkpoint.pt").read_bytes() == ckpt
    assert (run_dir / "train/stage.json").is_file()


def test_killed_after_the_last_checkpoint_resumes_to_every_file(tiny_run, tmp_path, data_dir):
    """Killed after the last epoch's checkpoint.pt but before its metrics, the plot and the
    marker: --resume finishes the training without repeating an epoch."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    expected = _json(run_dir / "train/trial_1/metrics.json")
    train = run_dir / "train"
    for rel in ("stage.json", "summary.json", "trial_1/metrics.json", "trial_1/metrics.csv",
                "trial_1/learning_curves.png"):  # fmt: skip
        (train / rel).unlink()
    (run_dir / ".staging").mkdir()
    train.rename(run_dir / ".staging" / "train")  # a training that never finished is in staging
    code, out, err = resume_cli(run_dir, data_dir)
    assert code == 0, err
    assert "resuming after epoch 2" in out, out
    got = _json(run_dir / "train/trial_1/metrics.json")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in got] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in expected
    ]
    assert (run_dir / "train/trial_1/learning_curves.png").is_file()
    assert (run_dir / "report/report.html").is_file()
    assert not (run_dir / ".staging").exists()
    assert _json(run_dir / "train/config.json")["name"] == "train"


def test_adaptation_mechanisms_keep_lava_parity_and_report_both_conditions(
    tiny_run, tmp_path, data_dir
):
    """Replay, a decaying rate and an error gate (host-side choices) stream through Lava with
    the emulator's signals, and consolidation runs in both (the node kinds' step after each
    sample): Lava's learned weights equal the emulator's; the paired counts
    recomputed from scratch match the stored ones; the report shows both conditions."""
    from pipeline.adapt_device import emulator_predictions
    from pipeline.shift import make_shift
    from stllr.padding import stack_samples
    from stllr.tasks import load_task

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    sets = (
        "adaptation.replay_buffer=2",
        "adaptation.replay_every=2",
        "adaptation.rate_decay=3",
        "adaptation.error_gate=0.05",
        "adaptation.consolidate_shift=2",
        "adaptation.passes=2",
        "adaptation.lava_eval_samples=0",
    )
    code, out, err = resume_cli(run_dir, data_dir, "--rerun-from", "adaptation", sets=sets)
    assert code == 0, err
    res = _json(run_dir / "adaptation/adaptation.json")
    # two passes over the shifted samples, a replay after every 2nd of the 2·n items
    n_stream = res["settings"]["stream_samples"]
    assert n_stream in (6, 7) and res["settings"]["replay_samples"] == n_stream
    assert res["lava"]["weights_equal"] and res["lava"]["outputs_bit_exact"]
    assert res["lava"]["eval_samples"] == 20  # 0 = the whole evaluation set
    assert res["lava"]["predictions_differing"] == {"before": 0, "after": 0}
    emu = res["accuracy"]["emulator"]
    # the stored paired statistics against predictions recomputed here
    cfg = _cfg(run_dir)
    data = load_task(cfg.train)
    sc = make_shift(cfg.adaptation).build(data, cfg.adaptation)
    xc, yc, lc = stack_samples(sc.clean)
    from pipeline import artefacts as A

    before = emulator_predictions(A.load_qnet(run_dir), xc, lc)
    learned = torch.load(run_dir / "adaptation" / "weights.pt", weights_only=True)
    assert "device_after" in learned
    assert emu["original"]["before"] == pytest.approx(100 * float((before == yc).double().mean()))
    n = emu["original"]["n"]
    assert n == len(yc)
    assert emu["original"]["delta"] == pytest.approx(
        100 * (emu["original"]["gained"] - emu["original"]["lost"]) / n
    )
    assert len(res["curves"]["emulator_original"]) == len(res["curves"]["samples"])
    md = (run_dir / "report/report.md").read_text()
    assert "Δ original (points ± paired SE; gained/lost)" in md
    assert "original condition" in md and "replay of 2 original-condition samples" in md
    assert "2 passes over the labelled stream" in md
    assert "consolidation" in md


def test_adaptation_repeats_report_each_seed_as_its_own_run(tiny_run, tmp_path, data_dir):
    """adaptation.repeats = 2 adapts with seeds s and s + 1; the second seed's changes and
    curves equal those of a separate run with adaptation.seed = s + 1 (the reference), the
    mean ± std over the two is recomputed here, and the report states the spread."""
    import statistics

    runs = {}
    for name, sets in (("both", ("adaptation.repeats=2",)), ("second", ("adaptation.seed=8",))):
        run_dir = tmp_path / name
        shutil.copytree(tiny_run[0], run_dir)
        code, out, err = resume_cli(
            run_dir, data_dir, "--skip-lava", "--rerun-from", "adaptation",
            sets=(*sets, "adaptation.compare_float=false"),
        )  # fmt: skip
        assert code == 0, err
        runs[name] = run_dir
    both = _json(runs["both"] / "adaptation/adaptation.json")
    alone = _json(runs["second"] / "adaptation/adaptation.json")
    seeds = both["seeds"]
    assert seeds["seeds"] == [7, 8]
    first = both["accuracy"]["emulator"]
    for cond in ("shifted", "original"):
        assert seeds[cond][0] == first[cond]  # seed 7 is the stage's own run
        assert seeds[cond][1] == alone["accuracy"]["emulator"][cond]
        deltas = [seeds[cond][0]["delta"], seeds[cond][1]["delta"]]
        assert seeds[f"{cond}_delta_mean"] == pytest.approx(statistics.mean(deltas))
        assert seeds[f"{cond}_delta_std"] == pytest.approx(statistics.stdev(deltas))
    assert seeds["curves_shifted"][1] == alone["curves"]["emulator"]
    assert seeds["curves_original"][1] == alone["curves"]["emulator_original"]
    md = (runs["both"] / "report" / "report.md").read_text()
    assert "Over 2 seeds of the adaptation (emulator; seeds 7, 8)" in md
