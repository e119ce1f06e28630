"""Pipeline configuration: one TOML file per task, one table per stage, overridable by key.

A pipeline config (``pipeline/configs/<task>.toml``) holds the tables ``[train]``
(the keys of :class:`stllr.config.ExperimentConfig`), ``[quantize]``, ``[cost]``,
``[lava]``, ``[adaptation]`` and ``[report]`` (the fields of the section dataclasses
below). ``--set section.key=value`` overrides any of them, parsed with the field's type
(:func:`stllr.config.coerce_value`); unknown tables, keys and badly typed values are
errors that name the key and the file.

The pipeline owns two training keys: ``name`` is always ``"train"`` and ``out_dir`` the
run folder, so a run folder holds its training run at ``<run>/train/``; ``trials`` must
be 1 (the later stages deploy one network).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import tomli

from pipeline.flow_config import FlowSection, check_flow
from stllr.config import (
    PLACEMENT_KEYS,
    ExperimentConfig,
    apply_overrides,
    check_training,
    coerce_value,
)
from stllr.errors import UserError

#: where the per-task pipeline configs live (``<task with - as _>.toml``): package data of
#: ``pipeline`` (pyproject.toml), so an installed wheel carries them and an editable install
#: reads the source tree's
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class QuantizeSection:
    """Post-training quantization of the trained network (and the bit sweep of the report)."""

    #: signed weight bits of the deployed network (Loihi: ≤ 8)
    bits: int = 8
    #: weight widths of the accuracy-vs-bits sweep (PTQ, integer emulator)
    sweep_bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    #: weight range per layer: 100 = max |W|
    percentile: float = 100.0
    #: shuffled training batches that calibrate the input format
    calib_batches: int = 4
    #: epochs of quantization-aware fine-tuning before the deployed PTQ (0 = PTQ only)
    qat_epochs: int = 0


@dataclass(frozen=True)
class CostSection:
    """NeuroBench-style cost metrics of the deployed network on the test split."""

    #: test samples measured (0 = the whole test split)
    samples: int = 0


@dataclass(frozen=True)
class LavaSection:
    """Inference of the deployed network in Lava (``fixed_pt``) against the emulator."""

    #: False skips every Lava run (``--skip-lava``); the emulator results stay
    enabled: bool = True
    #: test samples run in Lava (the first ones of the test split)
    samples: int = 16
    #: deadline of one Lava run in seconds
    timeout_s: float = 900.0


@dataclass(frozen=True)
class AdaptationSection:
    """The on-device learning scenario (:mod:`pipeline.shift`, :mod:`pipeline.adaptation`)."""

    #: the shifted condition the deployed network meets (:data:`pipeline.shift.SCENARIOS`)
    scenario: str = "noisy_sensor"
    #: noisy_sensor: fraction of the sensor's events that are lost (binomial thinning)
    event_loss: float = 0.5
    #: noisy_sensor: probability of a spurious event per channel and time step
    background: float = 0.02
    #: noisy_sensor: channels by which the whole input is shifted (a detuned sensor)
    channel_shift: int = 0
    #: sensor_noise: std of the Gaussian noise added to every value of the frames
    noise_std: float = 0.5
    #: held_out_user: frames at the start of each recording the new user calibrates with
    calib_frames: int = 20
    #: held_out_user: the held-out users (empty = every user of the test split)
    users: tuple[int, ...] = ()
    #: gain_change: factor on the sensor's response (event counts: Poisson(gain · x))
    gain: float = 0.5
    #: frame shifts: the condition drifts in slowly (stream sample k of n at severity
    #: (k + 1)/n; the evaluation at full strength)
    drift: bool = False
    #: seed of the shift (events drawn per sample from (seed, split, index))
    seed: int = 7
    #: plastic nodes; the last one must be the readout. Hidden nodes get the readout's
    #: error fed back through the current readout weights (host-computed). Empty: the
    #: network's output node alone, whatever the architecture calls it (arch = auto)
    layers: tuple[str, ...] = ("rec", "readout")
    #: source of the third factor: "host" (the host sends softmax − onehot and, to the
    #: readout's input layer, that error through the readout weights), "dfa" or "sdfa"
    #: (made on the device: integer output error and fixed random feedback matrices,
    #: pipeline.learners); with DFA any spiking layer can learn
    signal: str = "host"
    #: learning rate η of the on-device rule (ΔW_eff = −η·e·L), also used in float
    lr: float = 2e-6
    #: the third factor is sent at the last ``window`` steps of every sample
    window: int = 50
    #: labelled shifted training samples streamed through the network, one at a time
    samples: int = 100
    #: evaluate the learning curve every this many adaptation samples
    eval_every: int = 25
    #: shifted test samples of the learning curves (0 = the whole test split)
    eval_samples: int = 0
    #: shifted test samples run in Lava before and after adaptation (0 = all of them), each
    #: compared with the emulator's prediction
    lava_eval_samples: int = 16
    #: stream samples Lava learns (0 = the whole stream); K > 0: the first K (arrival order),
    #: checked against the emulator's weights after them; Lava then scores the emulator's
    #: final weights (docs/adaptation.md §1)
    lava_stream_samples: int = 0
    #: emulator adaptations with seeds seed, seed+1, … (another stream, shift noise and
    #: rounding bits each): the report's mean ± std and the spread of its curves
    repeats: int = 1
    #: also run the same adaptation in float (the emulator's float reference)
    compare_float: bool = True
    # --- stabilising mechanisms (pipeline.adapt_mechanisms; 0 = off) --------------------
    #: τ in samples: the host scales the error of the k-th streamed sample by 1/(1 + k/τ)
    rate_decay: float = 0.0
    #: the host sends a step's error only while 1 − p(label) ≥ this (learn on large errors)
    error_gate: float = 0.0
    #: original-condition training samples the host keeps for replay
    replay_buffer: int = 0
    #: one replay sample after every this many shifted samples
    replay_every: int = 0
    #: the labelled shifted samples are streamed this many times, in the same order
    passes: int = 1
    #: after every learned sample, weights pulled 2^-k of the way back to the deployed ones
    consolidate_shift: int = 0
    #: per-input step sizes of the readout's update, 2^−s_i with s_i = round(log2 of input
    #: i's pre-trace energy over the mean), clipped to ±this (quantization.preconditioning;
    #: 0 = off)
    precondition: int = 0
    #: label-scarce stream: only the first this many shifted samples carry a label (0 = all)
    labelled: int = 0
    #: unlabelled samples learn at steps whose answer has p ≥ this, from that answer (0 = off)
    pseudo_label: float = 0.0


@dataclass(frozen=True)
class ReportSection:
    """The HTML and markdown report."""

    #: benchmark results with training memory vs T (relative to the repository root);
    #: when the file is missing, a small measurement is made instead
    memory_results: str = "benchmarks/results.json"
    #: test sample shown as a spike raster
    raster_sample: int = 0


SECTIONS: dict[str, type] = {
    "quantize": QuantizeSection,
    "cost": CostSection,
    "lava": LavaSection,
    "adaptation": AdaptationSection,
    "report": ReportSection,
    "flow": FlowSection,
}


@dataclass(frozen=True)
class PipelineConfig:
    train: ExperimentConfig = field(default_factory=ExperimentConfig)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    cost: CostSection = field(default_factory=CostSection)
    lava: LavaSection = field(default_factory=LavaSection)
    adaptation: AdaptationSection = field(default_factory=AdaptationSection)
    report: ReportSection = field(default_factory=ReportSection)
    #: the flow tasks' stand-in and shift (pipeline.flow_config)
    flow: FlowSection = field(default_factory=FlowSection)
    #: the file it was read from ("" when built in code)
    source: str = ""

    def as_dict(self) -> dict:
        d = {"train": self.train.as_dict()}
        for name in SECTIONS:
            d[name] = dataclasses.asdict(getattr(self, name))
        return d

    def settings(self) -> dict:
        """:meth:`as_dict` without where the run lives (``train.out_dir``) and where it
        executes (``train.device``, ``train.num_workers``): what results depend on, so a
        moved run folder, or one resumed on another device, stays resumable."""
        d = self.as_dict()
        where = ("out_dir", *PLACEMENT_KEYS)
        d["train"] = {k: v for k, v in d["train"].items() if k not in where}
        return d

    def replace(self, **changes) -> PipelineConfig:
        return dataclasses.replace(self, **changes)


def _section_types(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _apply_section(section, items: Iterable[tuple[str, object]], name: str, source: str):
    types_ = _section_types(type(section))
    changes = {}
    for key, value in items:
        if key not in types_:
            raise UserError(
                f"{source}: unknown key {name}.{key}; valid keys of [{name}]: "
                f"{', '.join(sorted(types_))}"
            )
        changes[key] = coerce_value(f"{name}.{key}", value, types_[key], source)
    return dataclasses.replace(section, **changes)


def _finish(cfg: PipelineConfig, run_dir: Path | None) -> PipelineConfig:
    """Pin the pipeline-owned training keys and check the sections."""
    train = cfg.train
    if train.trials != 1:
        raise UserError(
            f"train.trials must be 1 in a pipeline (one deployed network), got {train.trials}"
        )
    train = train.replace(name="train", out_dir=str(run_dir) if run_dir is not None else "")
    cfg = cfg.replace(train=train)
    check(cfg)
    return cfg


def check(cfg: PipelineConfig) -> None:
    """One-line errors for values no stage can run with."""
    q, a, lava = cfg.quantize, cfg.adaptation, cfg.lava
    check_training(cfg.train, prefix="train.", import_only=True)
    from stllr.tasks import is_flow_task

    if is_flow_task(cfg.train.task):  # its own stages and checks (pipeline.flow_config)
        return check_flow(cfg, cfg.source or "--set")
    from pipeline.deployable import check_deployable

    check_deployable(cfg.train, cfg.source, tuple(cfg.adaptation.layers), q.qat_epochs)
    for b in (q.bits, *q.sweep_bits):
        if not 2 <= b <= 16:
            raise UserError(f"quantize bits must be in 2..16, got {b}")
    if not q.sweep_bits:
        raise UserError("quantize.sweep_bits must name at least one width")
    if not 0.0 < q.percentile <= 100.0:
        raise UserError(f"quantize.percentile must be in (0, 100], got {q.percentile:g}")
    if q.calib_batches < 1:
        raise UserError(f"quantize.calib_batches must be ≥ 1, got {q.calib_batches}")
    if q.qat_epochs < 0:
        raise UserError(f"quantize.qat_epochs (--qat-epochs) must be ≥ 0, got {q.qat_epochs}")
    if cfg.cost.samples < 0:
        raise UserError(f"cost.samples must be ≥ 0 (0 = all), got {cfg.cost.samples}")
    if lava.samples < 1 or lava.timeout_s <= 0:
        raise UserError("lava.samples must be ≥ 1 and lava.timeout_s > 0")
    for key in ("samples", "window", "eval_every", "repeats"):
        if getattr(a, key) < 1:
            raise UserError(f"adaptation.{key} must be ≥ 1, got {getattr(a, key)}")
    if a.lava_eval_samples < 0:
        raise UserError(
            f"adaptation.lava_eval_samples must be ≥ 0 (0 = the whole evaluation set), got "
            f"{a.lava_eval_samples}"
        )
    if a.lava_stream_samples < 0:
        raise UserError(
            f"{cfg.source or '--set'}: adaptation.lava_stream_samples must be ≥ 0 (0 = the "
            f"whole stream, K = its first K samples), got {a.lava_stream_samples}"
        )
    if a.eval_samples < 0:
        raise UserError(f"adaptation.eval_samples must be ≥ 0 (0 = all), got {a.eval_samples}")
    if a.noise_std < 0 or a.calib_frames < 1:
        raise UserError(
            f"adaptation.noise_std must be ≥ 0 and adaptation.calib_frames ≥ 1, got "
            f"{a.noise_std:g} and {a.calib_frames}"
        )
    if not 0.0 <= a.event_loss < 1.0 or not 0.0 <= a.background < 1.0:
        raise UserError("adaptation.event_loss and adaptation.background must be in [0, 1)")
    if not 0.0 < a.gain < math.inf:
        raise UserError(f"adaptation.gain must be a finite number > 0, got {a.gain}")
    if not 0 < a.lr < math.inf:
        raise UserError(f"adaptation.lr must be a finite number > 0, got {a.lr}")
    from pipeline.learners import SIGNALS

    if a.signal not in SIGNALS:
        raise UserError(f"adaptation.signal must be one of {', '.join(SIGNALS)}, got {a.signal!r}")
    from pipeline.adapt_mechanisms import Mechanisms

    mech = Mechanisms.from_section(a, cfg.source or "[adaptation]")
    if a.signal != "host" and (mech.rate_decay or mech.error_gate or a.labelled):
        raise UserError(
            "adaptation.rate_decay, adaptation.error_gate and adaptation.labelled shape the "
            f"host's error; with adaptation.signal={a.signal!r} the device makes its own "
            "(set them to 0)"
        )
    if a.labelled < 0:
        raise UserError(f"adaptation.labelled must be ≥ 0 (0 = all), got {a.labelled}")
    from pipeline.shift import SCENARIOS

    if a.scenario not in SCENARIOS:
        raise UserError(
            f"unknown adaptation scenario {a.scenario!r}; expected one of {sorted(SCENARIOS)}"
        )


def load_pipeline_config(
    path: str | os.PathLike,
    overrides: Iterable[str] = (),
    run_dir: Path | None = None,
) -> PipelineConfig:
    """Read a pipeline TOML, apply ``section.key=value`` overrides, pin the run folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pipeline config {path} does not exist")
    try:
        with path.open("rb") as f:
            table = tomli.load(f)
    except tomli.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    cfg = from_tables(table, str(path))
    return _finish(apply_pipeline_overrides(cfg, overrides), run_dir)


def from_tables(table: Mapping, source: str) -> PipelineConfig:
    """A :class:`PipelineConfig` from parsed TOML tables (unknown tables are errors)."""
    cfg = PipelineConfig(source=source)
    for name, value in table.items():
        if not isinstance(value, Mapping):
            raise UserError(
                f"{source}: top-level key {name!r}; put every key in a table "
                f"([train], {', '.join(f'[{s}]' for s in SECTIONS)})"
            )
        if name == "train":
            items = [f"{k}={_as_text(v)}" for k, v in value.items()]
            try:
                train = apply_overrides(cfg.train, items)
            except ValueError as exc:
                raise UserError(f"{source}: [train] {str(exc).removeprefix('--set: ')}") from None
            cfg = cfg.replace(train=train)
        elif name in SECTIONS:
            cfg = cfg.replace(
                **{name: _apply_section(getattr(cfg, name), value.items(), name, source)}
            )
        else:
            raise UserError(
                f"{source}: unknown table [{name}]; expected [train], "
                f"{', '.join(f'[{s}]' for s in SECTIONS)}"
            )
    return cfg


def _as_text(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def apply_pipeline_overrides(cfg: PipelineConfig, overrides: Iterable[str]) -> PipelineConfig:
    """Apply ``section.key=value`` strings (``--set``); ``train.key`` reaches the experiment."""
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, sub = key.strip().partition(".")
        if not sep or not dot or not sub:
            raise UserError(
                f"--set expects section.key=value (e.g. train.epochs=2, adaptation.lr=1e-6), "
                f"got {item!r}"
            )
        sub = sub.replace("-", "_")
        if section == "train":
            cfg = cfg.replace(train=apply_overrides(cfg.train, [f"{sub}={value}"]))
        elif section in SECTIONS:
            new = _apply_section(getattr(cfg, section), [(sub, value.strip())], section, "--set")
            cfg = cfg.replace(**{section: new})
        else:
            raise UserError(
                f"--set {item!r}: unknown section {section!r}; expected train, "
                f"{', '.join(SECTIONS)}"
            )
    return cfg


#: ``--task`` names of a second network on a data set's task, each read from
#: ``pipeline/configs/<name>.toml`` whose ``[train] task`` is that data set's task
VARIANT_TASKS = (
    "fs-ntidigits-standin",
    "fs-ntidigits-standin-adlif",
    "fs-shd-standin-adlif",
    "fs-gesture32-standin",
    "fs-dvsplane-standin",
)


def config_path_for_task(task: str) -> Path:
    """``pipeline/configs/<task>.toml``, or a one-line error listing the tasks that have one."""
    path = CONFIG_DIR / f"{task.replace('-', '_')}.toml"
    if not path.is_file():
        raise UserError(
            f"no pipeline config for task {task!r} ({path} is missing); tasks with one: "
            f"{', '.join(pipeline_tasks()) or 'none'}"
        )
    return path


def pipeline_tasks() -> list[str]:
    """Tasks that have a pipeline config (the ``task`` of each file's ``[train]`` table;
    a task with several configs, e.g. ``shd_standin_culif.toml``, once)."""
    tasks = []
    for p in sorted(CONFIG_DIR.glob("*.toml")):
        with p.open("rb") as f:
            tasks.append(str(tomli.load(f).get("train", {}).get("task", p.stem)))
    return list(dict.fromkeys(tasks))


def resolve_repo_path(value: str) -> Path:
    """A path from a config: absolute as is, relative to the repository root otherwise."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
