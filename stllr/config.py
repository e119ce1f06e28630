"""Experiment configuration: one frozen dataclass, loaded from TOML, overridable by key.

A config file (``experiments/*.toml``) is a flat table whose keys are the fields
of :class:`ExperimentConfig`; ``--set key=value`` on the command line overrides
any of them (values are parsed with the field's type, lists as
``factors=0.2,0.75,-1,1``). Unknown keys and badly typed values are errors that
name the key, the file and the expected type.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import tomli

from stllr.devices import check_device_spec
from stllr.errors import UserError

if TYPE_CHECKING:  # stllr.factors imports torch; a config (and `stllr --help`) does not need it
    from stllr.factors import STLLRFactors


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a training run (reference-code option names in brackets)."""

    name: str = "experiment"
    #: task/dataset: shd, ssc, gesture, cifar10dvs, ncaltech101, or a "-standin" variant
    task: str = "shd-standin"
    #: model family: shd_rsnn, vgg9, resnet18, auto (shd_rsnn for [T, C] samples, vgg9
    #: for [T, C, H, W]) or nir (the network of the NIR graph nir_file, docs/nir.md);
    #: more register in stllr.models.factory
    arch: str = "shd_rsnn"
    #: stllr, stllr_online, bptt or ottt [--training-mode]
    method: str = "stllr"
    #: BP, DFA or sDFA learning signal for hidden layers [--feedback-mode]
    feedback: str = "BP"
    #: [λ_post, λ_pre, α_post, α_pre] [--factors-stdp]
    factors: tuple[float, ...] = (0.5, 1.0, 1.0, 1.0)
    #: Ψ variant a–e; "" = the layer type's default (e for the fs_* archs) [--activation]
    psi: str = ""
    #: firing threshold θ (code 0.6; the paper text says 0.8)
    threshold: float = 0.6
    #: max or avg pooling (VGG) [--pooling]
    pooling: str = "max"
    dropout: float = 0.0
    #: hidden units (SHD network)
    hidden: int = 450
    #: neuron of the hidden layers (shd_rsnn, fs_*): lif (docs/rule.md §2), or culif, pculif,
    #: adlif, cuadlif (docs/neurons.md); the keys below apply to the latter four
    neuron: str = "lif"
    #: time constants in steps: voltage, current, adaptation (decay e^(−1/τ))
    tau_mem: float = 5.0
    tau_syn: float = 5.0
    tau_adapt: float = 100.0
    #: learnable decays: "layer" (one value) or "neuron" (one each); "" = the neuron's default
    decay_mode: str = ""
    #: reset of the neuron: soft (subtract θ) or hard (to 0); "" = the neuron's default
    #: (soft for lif, hard for the others, as their reference networks)
    reset: str = ""
    #: products with spiking inputs of the S-TLLR layers: dense, sparse (event-driven; conv
    #: layers: skip silent samples) or auto (where it pays), docs/event_driven.md
    event_inputs: str = "auto"
    #: VGG channel widths; empty = the paper's (64,128,256,256,512,512,512,512)
    channels: tuple[int, ...] = ()
    #: number of last time steps with a learning signal [--delay-ls]
    window: int = 90
    epochs: int = 200
    lr: float = 2e-4
    weight_decay: float = 0.0
    #: adam, amsgrad (Adam with AMSGrad) or sgd
    optimizer: str = "adam"
    batch_size: int = 128
    val_batch_size: int = 128
    #: CosineAnnealingLR T_max in epochs, 0 = none [--scheduler]
    scheduler: int = 0
    trials: int = 1
    seed: int = 1234
    #: dataset root for real data; empty = built-in stand-in
    data: str = ""
    #: stand-in size: samples per split (0 = the task's default)
    standin_train: int = 0
    standin_test: int = 0
    #: task "custom": frame length in µs, or a fixed number of frames (give one)
    frame_us: int = 0
    n_time_bins: int = 0
    #: optical flow (task mvsec / mvsec-standin, arch fsfn; docs/flow.md): frames between
    #: the two gray images (1 or 4), equal-count bins per frame interval, input encoding
    #: "2x10" (T = bins·dt, ON/OFF) or "4x5" (Spike-FlowNet), square crop, readout "sum"
    #: or "last", loss "photometric" (self-supervised) or "supervised" (known flow)
    flow_dt: int = 1
    flow_bins: int = 10
    flow_encoding: str = "2x10"
    flow_crop: int = 256
    flow_readout: str = "sum"
    flow_loss: str = "photometric"
    #: FSFN decoder widths (k3, k2, k1); empty = Spike-FlowNet's (128, 64, 4)
    flow_decoder: tuple[int, ...] = ()
    #: where runs are written
    out_dir: str = "runs"
    #: auto (CUDA when available, else CPU), cpu, cuda or cuda:N; overridden by --device
    device: str = "auto"
    #: data-loading worker processes (0: load in the training process)
    num_workers: int = 0
    #: arch nir: the NIR graph (HDF5) the network is imported from (in a pipeline, epochs
    #: may then be 0: import only, no fine-tuning)
    nir_file: str = ""
    #: arch nir: its time step in seconds (0 = the graph's metadata dt, else 1e-3;
    #: snnTorch's graphs state none and use 1e-4)
    nir_dt: float = 0.0
    #: output read-out (docs/first_spike.md): accumulate (the leaky non-spiking logits of
    #: shd_rsnn/vgg9/resnet18), or first_spike / rate on a spiking output layer (archs
    #: fs_fc, fs_gesture, fs_plane; method bptt)
    readout: str = "accumulate"
    #: neuron kind of the output layer of the fs_* archs (their hidden layers take
    #: ``neuron``, ``tau_mem``, ``tau_syn`` above; hidden θ is ``threshold``); output time
    #: constants in steps and output threshold
    out_neuron: str = "lif"
    out_tau_mem: float = 60.0
    out_tau_syn: float = 60.0
    out_threshold: float = 1.0
    #: hidden layer sizes of the fs_* archs; empty = the arch's default
    hidden_sizes: tuple[int, ...] = ()
    #: first-spike loss: softmax scale α, Gaussian σ = T // D, amplitude A
    fs_alpha: float = 0.2
    fs_d: int = 16
    fs_a: float = 200.0
    #: firing-rate loss: softmax scale α
    fr_alpha: float = 20.0
    #: late-label regulariser λ·mean(exp(β·t̃_y) − 1) of the first-spike loss (0: off)
    treg_lambda: float = 0.01
    treg_beta: float = 0.02
    #: gradient-norm clipping of the fs_* training (0: none)
    clip_norm: float = 0.0
    #: empty frames appended after each sample (T_empty of the first-spike tasks)
    empty_bins: int = 0
    #: frames ``[T, C, H, W]`` read as ``[T, C·H·W]`` (element ``c·H·W + y·W + x``), so the
    #: dense recurrent network (``arch = shd_rsnn``, any ``neuron``) takes a camera task
    flatten: bool = False
    #: with ``flatten``: frames first summed over ``flatten_pool`` × ``flatten_pool`` pixel
    #: blocks (pixel ``(y, x)`` into ``(y // k, x // k)``; event counts stay counts)
    flatten_pool: int = 1

    def stllr_factors(self) -> STLLRFactors:
        from stllr.factors import STLLRFactors

        return STLLRFactors.from_list(self.factors)

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Every key, except the keys of :data:`OMITTED_AT_DEFAULT` at their default (so
        the configs, checkpoints and pipeline fingerprints written before those keys
        existed still match)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in OMITTED_AT_DEFAULT or getattr(self, f.name) != f.default
        }


#: keys added after configs were first stored, left out of ``as_dict`` at their default
OMITTED_AT_DEFAULT = (
    "nir_file", "nir_dt",  # NIR import
    "neuron", "tau_mem", "tau_syn", "tau_adapt", "decay_mode", "reset",  # docs/neurons.md
    "readout", "out_neuron", "out_tau_mem", "out_tau_syn", "out_threshold", "hidden_sizes",
    "fs_alpha", "fs_d", "fs_a", "fr_alpha", "treg_lambda", "treg_beta", "clip_norm",
    "empty_bins",  # first-spike coding, docs/first_spike.md
    "flatten", "flatten_pool",  # camera frames into shd_rsnn (docs/neurons.md §4)
    "event_inputs",  # docs/event_driven.md
)  # fmt: skip


#: keys that say where a run executes, not what it computes: a resumed run may change them
#: and they are no part of a result's fingerprint
PLACEMENT_KEYS = ("device", "num_workers")


def check_training(
    cfg: ExperimentConfig, prefix: str = "config ", import_only: bool = False
) -> None:
    """One-line errors for values no training run can use; ``prefix`` leads each key's name
    (``"train."`` in a pipeline config); ``import_only``: ``epochs = 0`` is allowed with
    ``arch = "nir"`` (the pipeline deploys the imported network as it is)."""
    for key in ("epochs", "batch_size", "val_batch_size", "trials", "window"):
        if key == "epochs" and import_only and cfg.arch == "nir" and cfg.epochs == 0:
            continue
        if getattr(cfg, key) < 1:
            raise UserError(f"{prefix}{key} must be ≥ 1, got {getattr(cfg, key)}")
    if not 0 <= cfg.nir_dt < math.inf:
        raise UserError(f"{prefix}nir_dt must be ≥ 0 seconds (0 = the graph's), got {cfg.nir_dt}")
    if cfg.arch == "nir" and not cfg.nir_file:
        raise UserError(f"{prefix}nir_file must name a NIR graph when arch = 'nir'")
    if not 0 < cfg.lr < math.inf:
        raise UserError(f"{prefix}lr must be a finite number > 0, got {cfg.lr}")
    if not 0 <= cfg.weight_decay < math.inf:
        raise UserError(f"{prefix}weight_decay must be a finite number ≥ 0, got {cfg.weight_decay}")
    if cfg.scheduler < 0:
        raise UserError(f"{prefix}scheduler must be ≥ 0 (0 = none), got {cfg.scheduler}")
    if cfg.num_workers < 0:
        raise UserError(f"{prefix}num_workers must be ≥ 0 (0 = none), got {cfg.num_workers}")
    check_device_spec(cfg.device, f"{prefix}device")
    if cfg.event_inputs not in EVENT_INPUT_MODES:
        raise UserError(
            f"{prefix}event_inputs must be one of {EVENT_INPUT_MODES}, got {cfg.event_inputs!r}"
        )
    check_readout(cfg, prefix)
    if cfg.flatten_pool < 1 or (cfg.flatten_pool > 1 and not cfg.flatten):
        raise UserError(
            f"{prefix}flatten_pool must be ≥ 1 and needs flatten = true, got flatten_pool = "
            f"{cfg.flatten_pool} with flatten = {str(cfg.flatten).lower()}"
        )
    name = PurePath(cfg.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise UserError(
            f"{prefix}name must be a folder name inside out_dir (relative, no '..'), "
            f"got {cfg.name!r}"
        )


#: values of the ``event_inputs`` key (the layers' switch, stllr.spike_events, has the same)
EVENT_INPUT_MODES = ("dense", "sparse", "auto")

#: values of the ``readout`` key
READOUTS = ("accumulate", "first_spike", "rate")


def check_readout(cfg: ExperimentConfig, prefix: str = "config ") -> None:
    """One-line errors for read-out and neuron settings no run can use."""
    from stllr.models.neuron_kinds import check_neuron_kind

    if cfg.readout not in READOUTS:
        raise UserError(f"{prefix}readout must be one of {READOUTS}, got {cfg.readout!r}")
    check_neuron_kind(cfg.neuron, f"{prefix}neuron")
    check_neuron_kind(cfg.out_neuron, f"{prefix}out_neuron")
    for key in ("tau_mem", "tau_syn", "out_tau_mem", "out_tau_syn", "fs_a"):
        if not 0 < getattr(cfg, key) < math.inf:
            raise UserError(f"{prefix}{key} must be a finite number > 0, got {getattr(cfg, key)}")
    for key in ("fs_alpha", "fr_alpha", "treg_lambda", "treg_beta", "clip_norm", "out_threshold"):
        if not math.isfinite(getattr(cfg, key)):
            raise UserError(f"{prefix}{key} must be a finite number, got {getattr(cfg, key)}")
    if cfg.fs_d < 1:
        raise UserError(f"{prefix}fs_d must be ≥ 1 (σ = T // fs_d), got {cfg.fs_d}")
    if cfg.empty_bins < 0 or any(h < 1 for h in cfg.hidden_sizes):
        raise UserError(
            f"{prefix}empty_bins must be ≥ 0 and hidden_sizes ≥ 1 each, got "
            f"{cfg.empty_bins} and {list(cfg.hidden_sizes)}"
        )


def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(ExperimentConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(ExperimentConfig)}


def _coerce(key: str, value: object, typ, source: str):
    """Convert ``value`` (from TOML or a ``--set`` string) to the field's type."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        (elem,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{source}: {key} must be a list of {elem.__name__}, got {value!r}")
        return tuple(_coerce(key, v, elem, source) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type for {key}")
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: {key} must be {typ.__name__}, got {value!r}") from None
    raise TypeError(f"unsupported config type {typ} for {key}")


def coerce_value(key: str, value: object, typ, source: str):
    """``value`` (from TOML or a ``key=value`` string) as ``typ`` (int, float, str, bool or
    ``tuple[elem, ...]``); a ``UserError`` naming ``key`` and ``source`` otherwise.

    The rule every config of the toolkit uses (experiment configs here, the sections of a
    pipeline config in :mod:`pipeline.config`).
    """
    return _coerce(key, value, typ, source)


def _apply(base: ExperimentConfig, items: Iterable[tuple[str, object]], source: str):
    types_ = field_types()
    changes = {}
    for key, value in items:
        if key not in types_:
            raise UserError(
                f"{source}: unknown config key {key!r}; valid keys: {', '.join(sorted(types_))}"
            )
        changes[key] = _coerce(key, value, types_[key], source)
    return dataclasses.replace(base, **changes)


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a TOML config and apply ``key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        with path.open("rb") as f:
            table = tomli.load(f)
    except tomli.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    cfg = _apply(ExperimentConfig(), _flat(table, path), str(path))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """Apply ``key=value`` strings (from ``--set``)."""
    items = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        items.append((key.strip().replace("-", "_"), value.strip()))
    return _apply(cfg, items, "--set")


def _flat(table: Mapping, path: Path):
    for key, value in table.items():
        if isinstance(value, Mapping):
            raise UserError(f"{path}: nested table [{key}] is not supported; use flat keys")
        yield key, value
