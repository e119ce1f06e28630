"""Checkpoint files are read as plain data, and a file that does not fit is a one-line error.

A ``.pt`` file is a pickle: loaded with ``weights_only=False`` it can run any code. Every
load site goes through :func:`stllr.checkpoints.load_pt` (``weights_only=True``), so a
crafted file is refused before anything in it runs; the marker file its pickle would
create is the independent witness. A checkpoint that does not fit the model (``--set
hidden=64``, another model's weights, a truncated or foreign ``checkpoint.pt`` on
``--resume``) is a :class:`~stllr.errors.UserError` naming the file and what differs.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stllr.cli.main import main
from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.models.factory import build_model
from stllr.run import CHECKPOINT, run_experiment
from tests.test_run_and_cli import _cfg, _tiny_task

ROOT = Path(__file__).resolve().parents[1]
UNREADABLE = "is not a readable stllr checkpoint: truncated, or not written by torch.save"


class _WritesMarker:
    """Unpickling this object calls ``open(marker, "w")``: code run by loading a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted(path: Path, marker: Path) -> Path:
    """A checkpoint with the expected keys whose pickle creates ``marker`` when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "config": {}, "epoch": 1, "payload": _WritesMarker(marker)}, path)
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_eval_refuses_a_checkpoint_whose_pickle_runs_code(tmp_path, capsys):
    marker = tmp_path / "marker"
    ckpt = _crafted(tmp_path / "best.pt", marker)
    assert main(["eval", str(ckpt), "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(ckpt) in line and "refused" in line and "(io.open)" in line
    assert not marker.exists()


def test_resume_and_pipeline_refuse_a_checkpoint_whose_pickle_runs_code(tmp_path):
    from pipeline.artefacts import BEST, load_float_model

    marker = tmp_path / "marker"
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    ckpt = _crafted(tmp_path / "t" / "trial_1" / CHECKPOINT, marker)
    with pytest.raises(UserError, match=re.escape(str(ckpt))):
        run_experiment(_cfg(tmp_path, epochs=2), resume=True, progress=False, data=task)
    best = _crafted(tmp_path / "run" / BEST, marker)
    data = SimpleNamespace(input_shape=(40,), num_classes=4)
    with pytest.raises(UserError, match=re.escape(str(best))):
        load_float_model(tmp_path / "run", _cfg(tmp_path), data)
    assert not marker.exists()


def test_no_load_site_unpickles_arbitrary_code():
    """Every torch.load call in the repository reads plain data only (weights_only=True)."""
    call = "torch." + "load("  # spelled so that this line is no call itself
    folders = (
        "stllr",
        "pipeline",
        "quantization",
        "lava_models",
        "hw_tests",
        "tests",
        "benchmarks",
    )
    sites = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if call in line and "weights_only=True" not in line.replace(" ", ""):
                    sites.append(f"{path.relative_to(ROOT)}:{n}")
    assert sites == []


@pytest.fixture(scope="module")
def shd_checkpoint(tmp_path_factory):
    """A best.pt of a 700 → 16 → 20 network on an 8 + 8 sample SHD stand-in (untrained)."""
    from stllr.tasks import load_task

    root = tmp_path_factory.mktemp("ckpt")
    cfg = ExperimentConfig(
        task="shd-standin",
        data=str(root / "data"),
        standin_train=8,
        standin_test=8,
        hidden=16,
        window=5,
        val_batch_size=8,
    )
    data = load_task(cfg)
    torch.manual_seed(0)
    model, _ = build_model(cfg, data.input_shape, data.num_classes)
    path = root / "best.pt"
    torch.save({"model": model.state_dict(), "config": cfg.as_dict(), "epoch": 1}, path)
    return path, cfg, data, model


def test_eval_with_another_hidden_size_names_file_key_and_shapes(shd_checkpoint, capsys):
    path, *_ = shd_checkpoint
    assert main(["eval", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(path), "--no-progress", "--set", "hidden=64"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(
        f"stllr: error: {path} does not fit the model built from its config with hidden=64: "
    )
    assert "is [16, 700] in the file, [64, 700] in the model" in line


def test_checkpoint_of_another_model_names_the_parameters(shd_checkpoint, tmp_path, capsys):
    path, cfg, data, _ = shd_checkpoint
    other, _ = build_model(cfg.replace(hidden=24), data.input_shape, data.num_classes)
    state = dict(other.state_dict())
    extra = next(iter(state))
    state["head.extra"] = state[extra]
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": state, "config": cfg.as_dict(), "epoch": 3}, foreign)
    assert main(["eval", str(foreign), "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{foreign} does not fit the model built from its config: " in line
    assert "[24, 700] in the file, [16, 700] in the model" in line
    assert "more)" in line or "head.extra is in the file but not in the model" in line


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), UNREADABLE),
        (lambda p: p.write_bytes(b""), UNREADABLE),
        (lambda p: torch.save([1, 2, 3], p), "holds a list, expected a dict"),
        (lambda p: torch.save({"model": {}}, p), "has no 'optimizer', 'scheduler', 'epoch'"),
    ],
    ids=["truncated", "empty", "not-a-dict", "best-not-checkpoint"],
)
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, damage, message):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    ckpt = tmp_path / "t" / "trial_1" / CHECKPOINT
    damage(ckpt)
    with pytest.raises(UserError) as exc:
        run_experiment(_cfg(tmp_path, epochs=2), resume=True, progress=False, data=task)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(ckpt)) and message in text


def test_resume_from_a_checkpoint_of_another_run_names_the_differing_keys(tmp_path):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    elsewhere = tmp_path / "other"
    run_experiment(
        _cfg(elsewhere, epochs=1, hidden=8), progress=False, log=lambda s: None, data=task
    )
    ckpt = tmp_path / "t" / "trial_1" / CHECKPOINT
    ckpt.write_bytes((elsewhere / "t" / "trial_1" / CHECKPOINT).read_bytes())
    with pytest.raises(UserError, match=r"different settings for \['hidden', 'out_dir'\]") as e:
        run_experiment(_cfg(tmp_path, epochs=2), resume=True, progress=False, data=task)
    assert str(ckpt) in str(e.value)


def test_resume_with_foreign_weights_names_the_shapes(tmp_path):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    ckpt = tmp_path / "t" / "trial_1" / CHECKPOINT
    stored = torch.load(ckpt, weights_only=True)
    (name, w), *_ = stored["model"].items()
    stored["model"][name] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
    torch.save(stored, ckpt)
    shape = [w.shape[0] + 1, *w.shape[1:]]
    with pytest.raises(UserError, match=re.escape(f"{name} is {shape} in the file, ")):
        run_experiment(_cfg(tmp_path, epochs=2), resume=True, progress=False, data=task)


def test_every_stored_file_loads_as_plain_data(tmp_path):
    """checkpoint.pt and best.pt (configs, optimiser, scheduler, history) need no code."""
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=2), progress=False, log=lambda s: None, data=task)
    trial = tmp_path / "t" / "trial_1"
    ckpt = torch.load(trial / CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["scheduler"] is not None
    assert ckpt["config"] == _cfg(tmp_path, epochs=2).as_dict()
    assert set(torch.load(trial / "best.pt", weights_only=True)) >= {"model", "config"}
