"""What the parity table is made of: its rows, the task models and modes, the signal
sources of the fixed check, and the data, models and helpers the check groups share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from hw_tests.parity_references import ROOT, Reference, emulate, integer_signals
from lava_models.runner import run_lava
from quantization.convert import FloatSpiking
from quantization.float_nodes import FloatAdaptive
from quantization.network import AdaptiveLayer, QNetwork, Readout, SpikingLayer

# =======================================================================================
# The table
# =======================================================================================


@dataclass
class Row:
    task: str
    model: str
    check: str
    source: str  # the learning signal's source ("host", …), "-" without learning
    metric: str
    value: float | int | None  # None: the check raised (see detail)
    bound: float | int
    passed: bool
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_row(key, check, source, metric, value, bound, seconds, detail="", vacuous=""):
    """A row; it passes when ``value ≤ bound`` and the check was not vacuous."""
    ok = value is not None and value <= bound and not vacuous
    if vacuous:
        detail = f"VACUOUS: {vacuous}; {detail}" if detail else f"VACUOUS: {vacuous}"
    task, model = key
    return Row(task, model, check, source, metric, value, bound, bool(ok), round(seconds, 2),
               detail)  # fmt: skip


@dataclass(frozen=True)
class TaskModel:
    """A task's model and how the parity checks shrink it."""

    task: str
    arch: str
    experiment: str  # experiments/<name>.toml: factors, Ψ, pooling of the task model
    small: tuple[str, ...]  # config overrides: the narrow model of the float/fixed checks
    gain: float  # multiplies the standardised-weight gains (activity in deep layers)
    plastic: tuple[str, ...]  # nodes that learn in the float and fixed checks
    seed: int = 0
    #: multiplies LR in the fixed check (quantization.learning.attach_learning's units)
    fixed_lr_scale: float = 1.0
    #: the task column where one task and arch have several rows (another neuron kind)
    label: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.label or self.task, self.arch)


VGG_SMALL = ("channels=4,4,8,8,8,8,8,8",)
TASK_MODELS = (
    TaskModel("shd-standin", "shd_rsnn", "shd_standin_stllr", ("hidden=32",), 1.0,
              ("rec", "readout")),
    TaskModel("gesture-standin", "vgg9", "gesture_stllr", VGG_SMALL, 2.0,
              ("conv1", "conv2", "head")),
    TaskModel("cifar10dvs-standin", "vgg9", "cifar10dvs_stllr", VGG_SMALL, 2.0,
              ("conv1", "conv2", "head")),
    TaskModel("ncaltech101-standin", "vgg9", "ncaltech101_stllr", VGG_SMALL, 2.0,
              ("conv1", "conv2", "head")),
    TaskModel("gesture-standin", "resnet18", "gesture_resnet18_stllr", ("channels=4,4,8,8",), 3.0,
              ("b0.conv1", "b4.short", "head")),
    # current-based neurons (CuLIF, docs/neurons.md): the N-TIDIGITS stand-in's network
    TaskModel("ntidigits-standin", "shd_rsnn", "ntidigits_standin_culif", ("hidden=32",), 4.0,
              ("rec", "readout")),
    # adaptive neurons (AdLIF, docs/neurons.md §2): the SHD stand-in's network, its AdLIF
    # layer plastic (docs/fixed_point.md, "Adaptive layers")
    TaskModel("shd-standin", "shd_rsnn", "shd_standin_adlif_stllr", ("hidden=32",), 6.0,
              ("rec", "readout"), label="shd-standin-adlif"),
    # optical flow (hw_tests.parity_flow): the finest flow head learns. Its step sums
    # L·P over the 16 × 16 head pixels, P counting spikes × 32, so at LR the 8-bit weights
    # saturate within a few steps (and a corrupted weight could not show); at LR·2^−18,
    # 100 steps of random signals move them by tens of LSBs, none at ±127/128
    TaskModel("mvsec-standin", "fsfn", "mvsec_standin_stllr",
              ("channels=2,4,4,4", "flow_decoder=2,2,2"), 1.0,
              ("flow1",), fixed_lr_scale=2.0**-18),
)  # fmt: skip

#: check group → its checks (the builtin group has its own pseudo task "builtin")
GROUP_CHECKS = {
    "float": ("float_spikes", "float_membrane", "float_weights"),
    "fixed": ("fixed_outputs", "fixed_states", "fixed_weights"),
    "predictions": ("fixed_inference", "predictions"),
    "builtin": ("builtin_dense", "builtin_conv"),
}
GROUPS = tuple(GROUP_CHECKS)
BUILTIN_KEYS = {
    "builtin_dense": ("builtin", "dense chain"),
    "builtin_conv": ("builtin", "conv chain"),
}


@dataclass(frozen=True)
class Mode:
    name: str
    crop: int | None  # image frames of the small models cropped to crop × crop (centre)
    float_samples: int
    float_steps: int
    learn_sample_steps: int  # steps per sample of the 100 learning steps (≤ the task's T)
    pred_samples: int
    pred_steps: int | None  # prediction samples cut to this many steps (None: full length)
    timeout_s: float  # deadline of every Lava run


FULL = Mode("full", None, 2, 20, 50, 8, None, 300.0)
QUICK = Mode("quick", 16, 2, 10, 50, 2, 16, 120.0)


# --- signal sources of the fixed check -----------------------------------------------------


@dataclass
class FixedCase:
    """What a signal source receives: the plastic network and its input."""

    qnet: QNetwork  # with LearningSpecs on ``plastic``
    plastic: tuple[str, ...]
    frames: np.ndarray  # integer [N, T, *input_shape]
    labels: list[int]  # the samples' classes (on-device errors need them)
    seed: int
    timeout_s: float
    reference_qnet: QNetwork  # what the emulator runs (equal to qnet unless corrupted)


@dataclass
class FixedRun:
    """A Lava run and its emulator reference, in the layout the fixed rows compare."""

    outputs: dict[str, np.ndarray]  # Lava: node → [N·T, ...] (plus "error"/"L:<node>" …)
    state: dict[str, dict[str, np.ndarray]]  # Lava: weighted node → final Vars
    reference: Reference  # emulator: the same keys in ``outputs``, and the emulator


@dataclass(frozen=True)
class SignalSource:
    """Where the third factor comes from: ``run(case)`` makes the Lava run and the
    emulator's run with the same signals; ``applies(tm, mode)`` whether the table of
    ``mode`` ("quick" or "full") has this source's rows for task model ``tm``."""

    name: str
    run: Callable[[FixedCase], FixedRun]
    applies: Callable[[TaskModel, str], bool] = lambda tm, mode: True


def _host_run(case: FixedCase) -> FixedRun:
    """Signals computed off device (uniform 8-bit integers), injected into ``ls_in``."""
    n, t = case.frames.shape[:2]
    signals = integer_signals(case.qnet, case.plastic, t, seed=case.seed, shape_prefix=(n,))
    res = run_lava(case.qnet, case.frames, signals, timeout_s=case.timeout_s)
    return FixedRun(res.outputs, res.state, emulate(case.reference_qnet, case.frames, signals))


def _online_run(source: str) -> Callable[[FixedCase], FixedRun]:
    """Signals made on device (``lava_models.online``): the error process reads the
    readout's membrane and the streamed label, feedback processes project it to every
    plastic hidden layer; the reference is ``emulate_online`` with the same plan. The
    errors and every projected ``L`` are compared at every step with the outputs."""

    def run(case: FixedCase) -> FixedRun:
        from lava_models.online import run_lava_online
        from quantization.signals import emulate_online, make_signal_plan

        plan = make_signal_plan(case.qnet, source, seed=case.seed)
        res = run_lava_online(case.qnet, case.frames, case.labels, source, plan=plan,
                              timeout_s=case.timeout_s)  # fmt: skip
        ref = emulate_online(case.reference_qnet, case.frames, case.labels, source, plan=plan)
        outs, want = dict(res.outputs), dict(ref.outputs)
        outs["error"], want["error"] = res.errors, ref.errors
        for k in set(res.signals) | set(ref.signals):
            outs[f"L:{k}"], want[f"L:{k}"] = res.signals.get(k), ref.signals.get(k)
        return FixedRun(outs, res.state, Reference(want, ref.state["emulator"]))

    return run


def _is_shd(tm: TaskModel) -> bool:
    """The SHD RSNN: the cheapest Lava run, and the one model whose readout reads a plastic
    spiking layer (BP through the readout's weights reaches only that layer)."""
    return tm.arch == "shd_rsnn"


def _online_sources() -> list[SignalSource]:
    """Extension point: signal sources computed on device (``lava_models.online``).

    Empty when that module (or its ``run_lava_online``/``emulate_online``) is missing; a
    source listed here gets its own ``fixed_*`` rows (source column = its name) for every
    task model it applies to, and :func:`expected_keys` lists them.
    """
    try:
        import lava_models.online as online
        import quantization.signals as signals
    except ImportError:
        return []
    if not all(hasattr(m, f) for m, f in ((online, "run_lava_online"),
                                           (signals, "emulate_online"))):  # fmt: skip
        return []
    return [
        # quick: on SHD only (one cheap run keeps the source in CI); full: every classifier
        # (the flow model's error is a flow error, host-computed: no class label to use)
        SignalSource(
            "dfa",
            _online_run("dfa"),
            lambda tm, mode: (mode == "full" and tm.arch != "fsfn") or _is_shd(tm),
        ),
        SignalSource(
            "sdfa", _online_run("sdfa"), lambda tm, mode: mode == "full" and tm.arch != "fsfn"
        ),
        SignalSource("bp", _online_run("bp"), lambda tm, mode: mode == "full" and _is_shd(tm)),
    ]


def signal_sources(mode: str = "full") -> list[SignalSource]:
    """The signal sources of the fixed check that table ``mode`` uses for some model."""
    every = [SignalSource("host", _host_run), *_online_sources()]
    return [s for s in every if any(s.applies(tm, mode) for tm in TASK_MODELS)]


# --- data and models ---------------------------------------------------------------------


class TaskCache:
    """``load_task`` once per distinct data config."""

    def __init__(self):
        self._data = {}

    def get(self, cfg):
        from stllr.tasks import load_task

        key = (cfg.task, cfg.data, cfg.standin_train, cfg.standin_test, cfg.seed, cfg.frame_us,
               cfg.n_time_bins, cfg.flow_crop, cfg.flow_bins)  # fmt: skip
        if key not in self._data:
            self._data[key] = load_task(cfg)
            if cfg.arch == "fsfn":  # windows seen as samples (hw_tests.parity_flow)
                from hw_tests.parity_flow_view import flow_view

                self._data[key] = flow_view(self._data[key])
        return self._data[key]


def task_config(tm: TaskModel, overrides: Iterable[str] = ()):
    from stllr.config import load_config

    cfg = load_config(ROOT / "experiments" / f"{tm.experiment}.toml",
                      [f"task={tm.task}", *overrides])  # fmt: skip
    if cfg.arch != tm.arch:
        raise ValueError(f"{tm.experiment}.toml is arch {cfg.arch!r}, not {tm.arch!r}")
    return cfg


def small_model(tm: TaskModel, input_shape, num_classes: int):
    """The narrow task model (seeded), gains scaled by ``tm.gain``, float64, eval."""
    from stllr.models.factory import build_model

    torch.manual_seed(tm.seed)
    model, _ = build_model(task_config(tm, tm.small), tuple(input_shape), num_classes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gain"):
                p.mul_(tm.gain)
    return model.double().eval()


def task_frames(data, start: int, n: int, steps: int | None, crop: int | None) -> torch.Tensor:
    """Test samples ``start … start+n−1`` as float64 ``[N, T, ...]``: zero-padded to the
    longest (``pad_time``), cut or zero-padded to ``steps``, image frames centre-cropped."""
    from stllr.trainer import pad_time

    x = pad_time([data.test[i][0] for i in range(start, start + n)]).transpose(0, 1).double()
    if steps is not None:
        if x.shape[1] >= steps:
            x = x[:, :steps]
        else:
            x = torch.cat([x, x.new_zeros((x.shape[0], steps - x.shape[1], *x.shape[2:]))], 1)
    if crop is not None and x.dim() == 5:
        h, w = x.shape[-2:]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        x = x[..., top : top + crop, left : left + crop]
    return x.contiguous()


def flip_one_weight(qnet: QNetwork, name: str, lsb: int = 1) -> QNetwork:
    """``qnet`` with one weight of ``name`` moved by ``lsb`` LSBs (a deliberate corruption;
    down when up would leave the weight range)."""
    n = qnet.node(name)
    w = n.weight.clone()
    flat = w.view(-1)
    top = (1 << (n.weight_bits - 1)) - 1
    flat[0] = flat[0] - lsb if flat[0] + lsb > top else flat[0] + lsb
    return qnet.replace_node(dataclasses.replace(n, weight=w))


def diff_count(a, b) -> int:
    """Elements that differ (everything, if the shapes differ or one side is missing)."""
    if a is None or b is None:
        return max(np.size(a) if a is not None else 0, np.size(b) if b is not None else 0, 1)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return max(a.size, b.size, 1)
    return int((a != b).sum())


def weighted_nodes(qnet) -> list:
    return [n for n in qnet.nodes if isinstance(n, (SpikingLayer, AdaptiveLayer, Readout))]


def activity(qnet_or_specs, outputs: dict) -> tuple[int, int, int]:
    """(spiking layers that fired, spiking layers, total spikes)."""
    spiking = (SpikingLayer, AdaptiveLayer, FloatSpiking, FloatAdaptive)
    names = [n.name for n in qnet_or_specs if isinstance(n, spiking)]
    fired = sum(1 for k in names if np.asarray(outputs[k]).any())
    return fired, len(names), int(sum(np.asarray(outputs[k]).sum() for k in names))
