"""The command line behaves like the tools users know: --set, --threads, --version, a fast
--help, one-line user errors and tracebacks for bugs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stllr.cli.main import build_parser, main
from stllr.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = {  # subcommand → (its positional arguments, a --set item it understands)
    "demo": ([], None),
    "train": (["c.toml"], "epochs=2"),
    "eval": (["ckpt.pt"], "seed=1"),
    "quantize": (["ckpt.pt"], "seed=1"),
    "compare": (["ckpt.pt"], "seed=1"),
    "pipeline": ([], "train.epochs=2"),
    "export": (["ckpt.pt", "--out", "m.nir"], "seed=1"),
    "import": (["m.nir"], None),
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("command", ["train", "eval", "quantize", "pipeline"])
def test_set_is_repeatable_and_stops_at_the_positional(command):
    positional, item = SUBCOMMANDS[command]
    parser = build_parser()
    other = "name=x" if command != "pipeline" else "adaptation.samples=5"
    forms = [
        ["--set", item, other, *positional],  # the README's form, before the positional
        [*positional, "--set", item, other],  # … after it
        ["--set", item, "--set", other, *positional],  # repeated
        ["--set=" + item, other, *positional],
    ]
    for argv in forms:
        args = parser.parse_args([command, *argv])
        assert args.set == [item, other], argv
        if positional:
            key = "config" if command == "train" else "checkpoint"
            assert str(getattr(args, key)) == positional[0], argv
    # a value that is not KEY=VALUE still reaches the config parser, which names it
    assert parser.parse_args([command, "--set", "epochs", *positional]).set == ["epochs"]


def test_set_leaves_a_path_with_an_equals_sign_to_the_positional():
    args = build_parser().parse_args(["eval", "--set", "seed=1", "runs/lr=1e-3/best.pt"])
    assert args.set == ["seed=1"] and str(args.checkpoint) == "runs/lr=1e-3/best.pt"


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_threads_and_no_progress_on_every_subcommand(command):
    positional, _ = SUBCOMMANDS[command]
    args = build_parser().parse_args([command, *positional, "--threads", "3", "--no-progress"])
    assert args.threads == 3 and args.no_progress


def test_threads_sets_torch_and_the_blas_variables(tmp_path, monkeypatch, capsys):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        assert main(["eval", str(tmp_path / "missing.pt"), "--threads", "2"]) == 2
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)
    assert main(["eval", str(tmp_path / "missing.pt"), "--threads", "-1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("stllr: error: --threads must")


def test_makefile_passes_args_through():
    for target in ("pipeline", "demo"):
        res = subprocess.run(
            ["make", "-n", target, "ARGS=--task gesture-standin --threads 2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, res.stderr
        assert f"stllr {target} --task gesture-standin --threads 2" in res.stdout


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    declared = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert capsys.readouterr().out.strip() == f"stllr {declared.group(1)}"


def test_help_does_not_import_torch():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stllr.cli.main", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert res.returncode == 0 and "pipeline" in res.stdout
    modules = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()]
    assert "stllr.cli.train" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "numpy", "lava", "h5py")]
    # every subcommand's parser too (main builds them all)
    code = "import sys; from stllr.cli.main import build_parser; build_parser(); " + (
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=_env(), timeout=60).returncode == 0


def _fail_with(exc: BaseException, monkeypatch):
    def run(args):
        raise exc

    monkeypatch.setattr("stllr.cli.evaluate.run", run)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    monkeypatch.delenv("STLLR_DEBUG", raising=False)
    _fail_with(UserError("c.toml: epochs must be int, got 'x'"), monkeypatch)
    assert main(["eval", "x.pt"]) == 2
    assert capsys.readouterr().err == "stllr: error: c.toml: epochs must be int, got 'x'\n"

    # a bug (a plain ValueError/TypeError) is not turned into a vague one-line message
    for bug in (ValueError("too many values to unpack (expected 1)"), TypeError("bad operand")):
        _fail_with(bug, monkeypatch)
        with pytest.raises(type(bug), match=re.escape(str(bug))):
            main(["eval", "x.pt"])
        assert "internal error" in capsys.readouterr().err

    # --debug and STLLR_DEBUG=1 show the traceback of user errors too
    _fail_with(UserError("bad value"), monkeypatch)
    for argv in (["--debug", "eval", "x.pt"], ["eval", "x.pt", "--debug"]):
        with pytest.raises(UserError, match="bad value"):
            main(argv)
    monkeypatch.setenv("STLLR_DEBUG", "1")
    with pytest.raises(UserError, match="bad value"):
        main(["eval", "x.pt"])


@pytest.mark.parametrize(
    "exc", [FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError]
)
def test_path_errors_are_user_errors(exc, monkeypatch, capsys):
    monkeypatch.delenv("STLLR_DEBUG", raising=False)
    _fail_with(exc("runs/x: the problem"), monkeypatch)
    assert main(["eval", "x.pt"]) == 2
    assert capsys.readouterr().err == "stllr: error: runs/x: the problem\n"


@pytest.mark.parametrize(
    ("argv", "tty", "shown"),
    [([], True, True), (["--no-progress"], True, False), ([], False, False)],
)
def test_no_progress_and_a_non_terminal_silence_every_bar(
    argv, tty, shown, tmp_path, monkeypatch, capsys
):
    from stllr.data.shd_standin import generate_shd_standin

    def run(args):  # a data step that asks for its bar itself, as binning and caching do
        generate_shd_standin(tmp_path / str(len(argv)), n_train=3, n_test=2, progress=True)

    monkeypatch.setattr("stllr.cli.evaluate.run", run)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert main(["eval", "x.pt", *argv]) == 0
    assert ("SHD stand-in (train)" in capsys.readouterr().err) == shown


def test_every_progress_bar_comes_from_stllr_progress():
    """One switch silences them all only if no module makes its own tqdm bar."""
    own = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("stllr", "pipeline", "quantization", "lava_models")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "progress.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\btqdm\(|import tqdm|from tqdm", line)
    ]
    assert own == []


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield 0o644
    os.umask(before)


def test_written_files_follow_the_umask(umask_022, tmp_path):
    import numpy as np

    from stllr.data.frame_cache import FrameCache
    from stllr.run import atomic_json, atomic_save

    atomic_json({"a": 1}, tmp_path / "r.json")
    atomic_save({"w": torch.zeros(2)}, tmp_path / "c.pt")
    cache = FrameCache(tmp_path / "cache", {"k": 1})
    cache.write(0, [np.zeros((2, 3), np.float32)])
    written = [tmp_path / "r.json", tmp_path / "c.pt", cache.path(0), cache.folder / "meta.json"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: oct(umask_022) for p in written
    }
    os.umask(0o077)
    atomic_json({"a": 2}, tmp_path / "private.json")
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def _events_file(path: Path) -> Path:
    """A tiny bring-your-own events file: 8×8 sensor, 2 polarities, 3 classes."""
    import numpy as np

    from stllr.data.custom_events import write_custom_events

    rng = np.random.default_rng(0)
    dtype = [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")]
    recs = []
    for _ in range(6):
        r = np.zeros(50, dtype=dtype)
        r["x"], r["y"] = rng.integers(0, 8, 50), rng.integers(0, 8, 50)
        r["t"], r["p"] = np.sort(rng.integers(0, 40_000, 50)), rng.integers(0, 2, 50)
        recs.append(r)
    labels, splits = [i % 3 for i in range(6)], ["train"] * 4 + ["test"] * 2
    return write_custom_events(path, recs, labels, splits, (8, 8, 2), 3)


def _train(tmp_path, *sets: str) -> int:
    return main(["train", "--set", f"out_dir={tmp_path / 'runs'}", "name=r", *sets])


def test_a_model_that_does_not_fit_the_data_names_the_arch_and_leaves_no_run(tmp_path, capsys):
    data = _events_file(tmp_path / "events.h5")
    assert _train(tmp_path, "task=custom", f"data={data}", "n_time_bins=5") == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "stllr: error: arch 'shd_rsnn' takes frames [channels], but task 'custom' gives "
        "[channels, height, width] [2, 8, 8]: use arch=resnet18 or arch=vgg9 (--set arch=...)"
    ]
    assert not (tmp_path / "runs").exists()  # config.json was written before the model


def test_model_input_check_both_ways():
    from stllr.config import ExperimentConfig
    from stllr.models.factory import build_model

    with pytest.raises(
        UserError,
        match=r"'vgg9' takes frames \[channels, height, width\].*"
        r"gives \[channels\] \[700\]: use arch=shd_rsnn",
    ):
        build_model(ExperimentConfig(arch="vgg9", task="shd"), (700,), 20)
    model, _ = build_model(ExperimentConfig(arch="shd_rsnn", hidden=8), (700,), 20)
    assert model is not None


def test_train_that_fails_loading_data_leaves_no_run_folder(tmp_path, capsys):
    assert _train(tmp_path, "task=shd", f"data={tmp_path / 'nothing'}") == 2
    assert "SHD files not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    # a folder that existed before is left as it was
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "notes.txt").write_text("mine")
    assert _train(tmp_path, "task=shd", f"data={tmp_path / 'nothing'}") == 2
    assert (tmp_path / "runs" / "r" / "notes.txt").read_text() == "mine"


def test_a_run_with_a_checkpoint_is_kept_when_it_fails_later(tmp_path, monkeypatch):
    from stllr.config import ExperimentConfig
    from stllr.run import CHECKPOINT, run_experiment
    from stllr.tasks import TaskData
    from stllr.trainer import ListDataset

    frames = [(torch.rand(6, 10) < 0.3).float() for _ in range(8)]
    task = TaskData(
        ListDataset(frames, torch.arange(8) % 2),
        ListDataset(frames, torch.arange(8) % 2),
        (10,),
        2,
        "t",
    )
    cfg = ExperimentConfig(
        name="k", hidden=4, epochs=2, batch_size=4, window=2, out_dir=str(tmp_path)
    )

    def interrupted(history, trial_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr("stllr.run.write_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, progress=False, log=lambda s: None, data=task)
    assert (tmp_path / "k" / "trial_1" / CHECKPOINT).is_file()  # resumable, so kept


@pytest.mark.parametrize("name", ["../escaped", "/tmp/stllr-absolute-name-h4", "a/../../b", ".."])
def test_a_run_name_cannot_leave_the_output_folder(name, tmp_path, capsys):
    # (a task whose data is missing: without the check, the run would fail fast, after
    # writing its config.json outside the output folder)
    assert _train(tmp_path / "o", "task=shd", f"data={tmp_path / 'none'}", f"name={name}") == 2
    err = capsys.readouterr().err
    assert err.startswith("stllr: error: config name must be a folder name inside out_dir")
    assert not list(tmp_path.rglob("config.json"))
    assert not Path(name).is_absolute() or not Path(name).exists()


def test_resume_of_a_run_that_does_not_exist_says_so(tmp_path, capsys):
    sets = [f"out_dir={tmp_path}", "name=none", "task=shd", f"data={tmp_path / 'none'}"]
    assert main(["train", "--resume", "--set", *sets]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"stllr: error: --resume: {tmp_path / 'none'} holds no run to resume (no config.json); "
        "leave out --resume to start it"
    ]
    assert not (tmp_path / "none").exists()


def test_pipeline_that_fails_at_the_start_leaves_no_run_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "runs" / "p"
    argv = ["pipeline", "--task", "shd", "--data", str(tmp_path / "empty"), "--out", str(out)]
    assert main(argv) == 2
    assert "SHD files not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # pipeline.json was written before the data


def test_cleanup_removes_only_what_the_failed_run_created(tmp_path):
    from stllr.files import removed_on_failure

    run = tmp_path / "runs" / "group" / "mine"
    with pytest.raises(RuntimeError):
        with removed_on_failure(run, keep=lambda p: False):
            (run / "trial_1").mkdir(parents=True)
            (tmp_path / "runs" / "other").mkdir()  # another run started meanwhile
            raise RuntimeError("failed start")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other"]
    with pytest.raises(RuntimeError):
        with removed_on_failure(run, keep=lambda p: True):  # resumable: kept
            run.mkdir(parents=True)
            raise RuntimeError("failed later")
    assert run.is_dir()
