"""Experiment runner (checkpoints, resume, metrics) and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from stllr.cli.main import main
from stllr.config import ExperimentConfig, apply_overrides, load_config
from stllr.run import CHECKPOINT, run_experiment
from stllr.tasks import TaskData
from stllr.trainer import ListDataset


def _tiny_task(seed=0, shape=(40,), n=24, classes=4):
    g = torch.Generator().manual_seed(seed)
    samples = [(torch.rand(10 + i % 3, *shape, generator=g) < 0.3).float() for i in range(n)]
    labels = torch.randint(0, classes, (n,), generator=g)
    ds = ListDataset(samples, labels)
    return TaskData(ds, ds, shape, classes, "tiny random task")


def _cfg(tmp_path, **kw):
    base = dict(
        name="t",
        arch="shd_rsnn",
        hidden=16,
        epochs=3,
        batch_size=8,
        val_batch_size=8,
        window=4,
        lr=5e-3,
        out_dir=str(tmp_path),
        scheduler=3,
    )
    base.update(kw)
    return ExperimentConfig(**base)


def _state(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize(
    "kw,shape",
    [
        ({}, (40,)),
        ({"arch": "vgg9", "channels": (4, 4, 4, 4, 4, 4, 4, 4), "dropout": 0.2}, (2, 8, 8)),
    ],
)
def test_resume_continues_bit_identically(tmp_path, kw, shape):
    task = _tiny_task(shape=shape)
    full = _cfg(tmp_path / "a", **kw)
    run_experiment(full, progress=False, log=lambda s: None, data=task)
    part = _cfg(tmp_path / "b", **{**kw, "epochs": 1})
    run_experiment(part, progress=False, log=lambda s: None, data=task)
    resumed = _cfg(tmp_path / "b", **kw)
    run_experiment(resumed, resume=True, progress=False, log=lambda s: None, data=task)
    a = _state(tmp_path / "a" / "t" / "trial_1" / CHECKPOINT)
    b = _state(tmp_path / "b" / "t" / "trial_1" / CHECKPOINT)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist_a = json.loads((tmp_path / "a" / "t" / "trial_1" / "metrics.json").read_text())
    hist_b = json.loads((tmp_path / "b" / "t" / "trial_1" / "metrics.json").read_text())
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(hist_a) == drop(hist_b)


def test_run_writes_metrics_plots_and_summary(tmp_path):
    cfg = _cfg(tmp_path, epochs=2, trials=2)
    summary = run_experiment(cfg, progress=False, log=lambda s: None, data=_tiny_task())
    run_dir = tmp_path / "t"
    for trial in (1, 2):
        d = run_dir / f"trial_{trial}"
        assert (d / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
        assert len(json.loads((d / "metrics.json").read_text())) == 2
        assert (d / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (d / "best.pt").exists()
    best = [t["best_test_acc"] for t in summary["trials"]]
    mean = sum(best) / 2
    assert summary["best_test_acc_mean"] == pytest.approx(mean)
    assert summary["best_test_acc_std"] == pytest.approx(abs(best[0] - best[1]) / 2**0.5)
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_run_refuses_to_overwrite_and_to_resume_with_other_settings(tmp_path):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    with pytest.raises(ValueError, match=r"different settings for \['lr'\]"):
        run_experiment(_cfg(tmp_path, lr=1.0), resume=True, progress=False, data=task)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    task = _tiny_task()
    run_experiment(_cfg(tmp_path, epochs=1), progress=False, log=lambda s: None, data=task)
    ckpt = tmp_path / "t" / "trial_1" / CHECKPOINT
    before = ckpt.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("stllr.run.torch.save", boom)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            _cfg(tmp_path, epochs=2), resume=True, progress=False, log=lambda s: None, data=task
        )
    assert ckpt.read_bytes() == before
    assert not [p for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")]


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\nfactors = [0.2, 0.75, -1, 1]\nepochs = 3\n')
    cfg = load_config(path, ["lr=1e-3", "factors=0.5,1,1,1", "feedback=DFA"])
    assert (cfg.name, cfg.epochs, cfg.lr, cfg.feedback) == ("x", 3, 1e-3, "DFA")
    assert cfg.factors == (0.5, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"--set: unknown config key 'lrr'; valid keys: "):
        apply_overrides(cfg, ["lrr=1"])
    with pytest.raises(ValueError, match=r"--set: epochs must be int, got 'ten'"):
        apply_overrides(cfg, ["epochs=ten"])
    with pytest.raises(ValueError, match=r"--set expects key=value, got 'epochs'"):
        apply_overrides(cfg, ["epochs"])
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    with pytest.raises(ValueError, match=r"bad.toml: not valid TOML"):
        load_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("epoch = 3\n")
    with pytest.raises(ValueError, match=r"typo.toml: unknown config key 'epoch'"):
        load_config(typo)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stllr: error: config file {tmp_path / 'missing.toml'} does not exist"]
    assert main(["demo", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "stllr: error: --epochs must be ≥ 1, got 0"
    cfg = tmp_path / "c.toml"
    cfg.write_text('task = "gesturez"\n')
    assert main(["train", str(cfg), "--set", f"out_dir={tmp_path}"]) == 2
    assert "unknown task 'gesturez'" in capsys.readouterr().err


def test_cli_demo_runs_end_to_end(tmp_path, capsys):
    args = [
        "demo",
        "--epochs",
        "1",
        "--train-samples",
        "40",
        "--test-samples",
        "20",
        "--hidden",
        "16",
        "--window",
        "5",
        "--data-dir",
        str(tmp_path / "data"),
        "--out-dir",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "final test accuracy" in out
    trial = tmp_path / "runs" / "demo_stllr" / "trial_1"
    history = json.loads((trial / "metrics.json").read_text())
    best = max(h["test_acc"] for h in history)

    # stllr eval on the best checkpoint reproduces the best test accuracy
    result = tmp_path / "eval.json"
    assert main(["eval", str(trial / "best.pt"), "--out", str(result), "--no-progress"]) == 0
    assert json.loads(result.read_text())["test_acc"] == pytest.approx(best)
    assert main(["eval", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "task,classes,splits", [("shd", 20, ("train", "test")), ("ssc", 35, ("train", "valid"))]
)
def test_audio_tasks_read_real_layout(tmp_path, task, classes, splits):
    from stllr.data.shd_standin import generate_shd_standin
    from stllr.tasks import load_task

    folder = tmp_path / task.upper()
    train_path, test_path = generate_shd_standin(
        folder, n_train=6, n_test=4, seed=1, num_classes=classes
    )
    train_path.rename(folder / f"{task}_{splits[0]}.h5")
    test_path.rename(folder / f"{task}_{splits[1]}.h5")
    data = load_task(ExperimentConfig(task=task, data=str(tmp_path)))
    assert (len(data.train), len(data.test), data.num_classes) == (6, 4, classes)
    assert data.train[0][0].shape[1:] == (700,)
    with pytest.raises(FileNotFoundError, match=rf"Expected layout:\n  .*/{task.upper()}/"):
        load_task(ExperimentConfig(task=task, data=str(tmp_path / "empty")))


def test_cli_train_custom_events_file(tmp_path, capsys):
    """Bring-your-own events: stllr train --task custom --data FILE."""
    import numpy as np

    from stllr.data.custom_events import write_custom_events

    rng = np.random.default_rng(0)
    dtype = [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")]
    recs = []
    for _ in range(12):
        n = 200
        r = np.zeros(n, dtype=dtype)
        r["x"], r["y"] = rng.integers(0, 8, n), rng.integers(0, 8, n)
        r["t"], r["p"] = np.sort(rng.integers(0, 40_000, n)), rng.integers(0, 2, n)
        recs.append(r)
    path = write_custom_events(
        tmp_path / "events.h5",
        recs,
        [i % 3 for i in range(12)],
        ["train"] * 8 + ["test"] * 4,
        (8, 8, 2),
        3,
    )
    args = [
        "train",
        "--task",
        "custom",
        "--data",
        str(path),
        "--no-progress",
        "--set",
        "arch=vgg9",
        "channels=4,4,4,4,4,4,4,4",
        "n_time_bins=5",
        "epochs=1",
        "batch_size=4",
        "val_batch_size=4",
        "window=2",
        f"out_dir={tmp_path / 'runs'}",
        "name=byo",
    ]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "byo" / "summary.json").read_text())
    assert summary["task"] == "custom" and len(summary["trials"]) == 1
    assert main(["train", "--task", "custom", "--data", str(tmp_path / "none.h5")]) == 2
    assert "none.h5" in capsys.readouterr().err
