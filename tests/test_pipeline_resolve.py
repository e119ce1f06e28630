"""pipeline.resolve.resolve_run: the rules of ``stllr pipeline``'s command line, without it.

The reference for each case is the config file itself (read here with tomli) and the
documented defaults: the SHD-like stand-in without --data, real SHD with it, the run
folder ``runs/pipeline_<task>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli

from pipeline.config import config_path_for_task
from pipeline.resolve import resolve_run
from stllr.errors import UserError


def _table(task: str) -> dict:
    with config_path_for_task(task).open("rb") as f:
        return tomli.load(f)


def test_defaults_are_the_standin_and_its_run_folder():
    cfg, out = resolve_run()
    table = _table("shd-standin")
    assert cfg.train.task == table["train"]["task"] == "shd-standin"
    assert cfg.train.epochs == table["train"]["epochs"]
    assert cfg.adaptation.lr == table["adaptation"]["lr"]
    assert out == Path("runs") / "pipeline_shd_standin"
    assert cfg.train.out_dir == str(out)


def test_data_alone_means_real_shd_and_options_become_overrides(tmp_path):
    cfg, out = resolve_run(
        data=tmp_path, qat_epochs=2, skip_lava=True, overrides=["train.epochs=3"]
    )
    assert cfg.train.task == "shd" and cfg.train.data == str(tmp_path)
    assert (cfg.quantize.qat_epochs, cfg.lava.enabled, cfg.train.epochs) == (2, False, 3)
    assert out == Path("runs") / "pipeline_shd"


def test_an_explicit_config_and_run_folder(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[train]\ntask = "gesture-standin"\nepochs = 1\n')
    cfg, out = resolve_run(config=path, out=tmp_path / "run")
    assert (cfg.train.task, cfg.train.epochs, out) == ("gesture-standin", 1, tmp_path / "run")
    with pytest.raises(UserError, match="--task shd but .*mine.toml configures task"):
        resolve_run(config=path, task="shd")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "nope"}, "unknown task 'nope'; tasks with a pipeline: .*shd-standin"),
        ({"qat_epochs": -1}, "--qat-epochs must be ≥ 0, got -1"),
        ({"task": "shd"}, "task 'shd' reads real files: give --data PATH .or --task shd-standin"),
        ({"task": "custom"}, "task 'custom' reads real files: .*docs/data.md"),
        ({"skip_lava": True, "rerun_from": "lava"}, "--rerun-from lava and --skip-lava"),
        ({"resume": True, "out": Path("no/such/run")}, "--resume: no/such/run holds no pipeline"),
        (
            {"overrides": ["train.neuron=pculif", "train.decay_mode=neuron"]},
            "train.decay_mode = 'neuron' with neuron pculif cannot be deployed",
        ),
        (
            {
                "task": "ntidigits-standin",
                "overrides": ["train.arch=fs_fc", "train.method=bptt", "train.readout=rate"],
            },
            "train.readout = 'rate' .*cannot be deployed yet",
        ),
        (
            {"task": "fs-gesture32-standin", "overrides": ["train.readout=rate"]},
            "fs_gesture32_standin.toml: train.readout = 'rate' .*cannot be deployed yet",
        ),
        (
            {"task": "fs-ntidigits-standin", "qat_epochs": 1},
            "quantize.qat_epochs = 1 with readout first_spike: QAT of a first-spike network",
        ),
        (
            {"task": "fs-ntidigits-standin", "overrides": ["train.out_neuron=adlif"]},
            "train.out_neuron = 'adlif' in a first-spike network cannot be deployed yet",
        ),
    ],
)
def test_refusals_are_one_line_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message) as err:
        resolve_run(**kwargs)
    assert "\n" not in str(err.value)


def test_data_with_a_standin_and_missing_data_are_refused(tmp_path):
    with pytest.raises(UserError, match="task 'gesture-standin' is the built-in stand-in; use "):
        resolve_run(task="gesture-standin", data=tmp_path)
    with pytest.raises(FileNotFoundError, match="--data .*missing: no such file"):
        resolve_run(data=tmp_path / "missing")


def test_the_ntidigits_standin_and_culif_configs():
    """``--task ntidigits-standin`` reads its own config (CuLIF hidden neurons, the CuLIF
    layer plastic); the SHD stand-in's second config (CuLIF) does not list its task twice;
    its AdLIF config makes the AdLIF layer plastic and is deployable."""
    from pipeline.config import CONFIG_DIR, load_pipeline_config, pipeline_tasks
    from pipeline.deployable import check_deployable

    cfg, out = resolve_run(task="ntidigits-standin")
    assert (cfg.train.neuron, cfg.train.n_time_bins, out.name) == (
        "culif", 250, "pipeline_ntidigits_standin")  # fmt: skip
    assert cfg.adaptation.layers == ("rec", "readout")
    shd = load_pipeline_config(CONFIG_DIR / "shd_standin_culif.toml", [])
    assert (shd.train.task, shd.train.neuron) == ("shd-standin", "culif")
    adlif = load_pipeline_config(CONFIG_DIR / "shd_standin_adlif.toml", [])
    assert (adlif.train.task, adlif.train.neuron) == ("shd-standin", "adlif")
    assert adlif.adaptation.layers == ("rec", "readout")  # the AdLIF layer learns on device
    check_deployable(adlif.train, "shd_standin_adlif.toml", adlif.adaptation.layers)
    # the CuAdLIF has an integer kind and learns on device too (tests/test_cuadlif_*.py)
    cu, _ = resolve_run(config=CONFIG_DIR / "shd_standin_adlif.toml",
                        overrides=["train.neuron=cuadlif"])  # fmt: skip
    assert cu.train.neuron == "cuadlif" and cu.adaptation.layers == ("rec", "readout")
    tasks = pipeline_tasks()
    assert len(tasks) == len(set(tasks)) and "ntidigits-standin" in tasks
