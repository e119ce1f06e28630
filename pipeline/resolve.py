"""Which config and run folder a ``stllr pipeline`` invocation means, and which it refuses.

The rules of the pipeline's command line, apart from parsing it (:mod:`stllr.cli.pipeline`
parses the options and calls :func:`resolve_run`): the default task (the SHD-like stand-in,
or real SHD with ``--data``), the task's config (:func:`pipeline.config.config_path_for_task`),
the options that become ``--set`` overrides, the combinations that contradict each other,
and the default run folder ``runs/pipeline_<task>``. Every refusal is a one-line error
that names the option.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.config import (
    VARIANT_TASKS,
    PipelineConfig,
    config_path_for_task,
    load_pipeline_config,
    pipeline_tasks,
)
from stllr.errors import UserError
from stllr.tasks import task_names


def resolve_run(
    *,
    task: str | None = None,
    data: Path | None = None,
    config: Path | None = None,
    out: Path | None = None,
    resume: bool = False,
    rerun_from: str | None = None,
    skip_lava: bool = False,
    qat_epochs: int | None = None,
    from_nir: Path | None = None,
    overrides: Iterable[str] = (),
) -> tuple[PipelineConfig, Path]:
    """(config, run folder) of a pipeline run from the command line's choices.

    ``task``/``config``: the task whose config to read, or a config file (then ``task``,
    if given, must be the one it configures); ``data``: the real data set (or events
    file); ``overrides``: ``section.key=value`` strings (``--set``), applied before the
    options' own overrides (``qat_epochs``, ``skip_lava``, ``data``). ``from_nir``: a NIR
    graph that replaces the training (:func:`nir_overrides`, applied before ``overrides``
    so that ``--set train.epochs=N`` fine-tunes).
    """
    if data is not None and not data.exists():
        raise FileNotFoundError(f"--data {data}: no such file or directory")
    if qat_epochs is not None and qat_epochs < 0:
        raise UserError(f"--qat-epochs must be ≥ 0, got {qat_epochs}")
    if config is not None:
        path = config
    else:
        if task is None:
            task = "shd" if data is not None else "shd-standin"
        variant = task in VARIANT_TASKS
        if task not in task_names() and not variant:
            names = ", ".join([*pipeline_tasks(), *VARIANT_TASKS])
            raise UserError(f"unknown task {task!r}; tasks with a pipeline: {names}")
        path = config_path_for_task(task)
    overrides = list(overrides)
    if from_nir is not None:
        overrides = [*nir_overrides(from_nir), *overrides]
    if qat_epochs is not None:
        overrides.append(f"quantize.qat_epochs={qat_epochs}")
    if skip_lava:
        overrides.append("lava.enabled=false")
    if data is not None:
        overrides.append(f"train.data={data}")
    cfg = load_pipeline_config(path, overrides)
    if task in VARIANT_TASKS:  # a second network of its data set's task (its run folder)
        run_name = task
    else:
        run_name = cfg.train.task
    if task is not None and task not in VARIANT_TASKS and cfg.train.task != task:
        raise UserError(f"--task {task} but {path} configures task {cfg.train.task!r}")
    task = cfg.train.task
    if data is not None and task.endswith("-standin"):
        raise UserError(
            f"--data reads real files but task {task!r} is the built-in stand-in; use "
            f"--task {task.removesuffix('-standin')} (or leave out --data)"
        )
    if data is None and not task.endswith("-standin") and not cfg.train.data:
        if f"{task}-standin" in task_names():
            hint = f"(or --task {task}-standin)"
        else:
            hint = "(an events .h5 file in the format of docs/data.md)"
        raise UserError(f"task {task!r} reads real files: give --data PATH {hint}")
    if skip_lava and rerun_from == "lava":
        raise UserError("--rerun-from lava and --skip-lava contradict each other")
    if out is None:
        tail = "_from_nir" if from_nir is not None else ""
        out = Path("runs") / f"pipeline_{run_name.replace('-', '_')}{tail}"
    if (resume or rerun_from) and not (out / "pipeline.json").is_file():
        raise UserError(f"--resume: {out} holds no pipeline run (no {out / 'pipeline.json'})")
    return load_pipeline_config(path, overrides, run_dir=out), out


def nir_overrides(path: Path) -> list[str]:
    """The config changes of ``--from-nir PATH``: the network is imported from ``PATH``
    (``train.arch = nir``), fine-tuned for no epochs unless ``--set train.epochs=N`` says
    otherwise, and adapts on device at its output node (``adaptation.layers`` empty: the
    task config's layer names belong to the network it trains)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--from-nir {path}: no such NIR file")
    return [
        "train.arch=nir",
        f"train.nir_file={Path(path).resolve()}",
        "train.epochs=0",
        "adaptation.layers=",
    ]
