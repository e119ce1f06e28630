"""A diverging run stops with a one-line error and never saves a NaN model as best.pt.

SGD with lr = 1e36 overflows the weights of the tiny S-TLLR network in its first step, so
the loss of the second batch is NaN (the first is computed with the initial weights); the
old loop trained on, and its ``best.pt`` held NaN weights. A learning rate that is not a
finite positive number is refused before anything is trained or written.
"""

from __future__ import annotations

import math

import pytest
import torch

from stllr.cli.main import main
from stllr.errors import UserError
from stllr.run import BEST, CHECKPOINT, run_experiment
from tests.test_run_and_cli import _cfg, _tiny_task


def _finite(path) -> bool:
    state = torch.load(path, weights_only=True)["model"]
    return all(torch.isfinite(v).all() for v in state.values())


def test_diverging_training_stops_at_its_batch_and_saves_nothing(tmp_path):
    cfg = _cfg(tmp_path, optimizer="sgd", lr=1e36, scheduler=0)
    with pytest.raises(UserError) as exc:
        run_experiment(cfg, progress=False, log=lambda s: None, data=_tiny_task())
    assert str(exc.value).startswith(
        "training diverged in trial 1 epoch 1: the loss is nan at batch 2 of 3 (lr 1e+36"
    )
    trial = tmp_path / "t" / "trial_1"
    assert not (trial / BEST).exists() and not (trial / CHECKPOINT).exists()


def test_a_nan_model_never_replaces_the_best_checkpoint(tmp_path):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    trial = tmp_path / "t" / "trial_1"
    best = (trial / BEST).read_bytes()
    ckpt = torch.load(trial / CHECKPOINT, weights_only=True)
    for v in ckpt["model"].values():
        if v.is_floating_point():
            v.fill_(math.nan)
    torch.save(ckpt, trial / CHECKPOINT)
    with pytest.raises(UserError, match=r"in trial 1 epoch 2: the loss is nan at batch 1 of 3"):
        run_experiment(_cfg(tmp_path, epochs=3), resume=True, progress=False, data=task)
    assert (trial / BEST).read_bytes() == best and _finite(trial / BEST)


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf", "0"])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(tmp_path, capsys, lr):
    path = tmp_path / "c.toml"
    small = "epochs = 1\nhidden = 4\nwindow = 2\nstandin_train = 8\nstandin_test = 8\n"
    path.write_text(f'out_dir = "{tmp_path}"\nname = "x"\ndata = "{tmp_path / "d"}"\n{small}')
    assert main(["train", str(path), "--set", f"lr={lr}", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stllr: error: config lr must be a finite number > 0, got {float(lr)}"]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("key", ["train.lr", "adaptation.lr"])
def test_pipeline_config_refuses_a_non_finite_learning_rate(key):
    from pipeline.config import CONFIG_DIR, load_pipeline_config

    for value in ("inf", "nan"):
        with pytest.raises(UserError, match=rf"^{key} must be a finite number > 0, got {value}$"):
            load_pipeline_config(CONFIG_DIR / "shd_standin.toml", [f"{key}={value}"])
