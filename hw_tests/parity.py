"""The parity table: every task model, every Lava path, each against its reference.

``python -m hw_tests.parity [--quick] [--out DIR]`` runs the checks below for every
task model (:data:`TASK_MODELS`: the SHD RSNN on ``shd-standin``, a narrow VGG-9 on each
event-camera stand-in, a narrow ResNet-18 on ``gesture-standin``), writes
``parity.json`` and ``parity.md`` (one row per task × model × check × signal source:
metric value, bound, pass/fail, seconds) to ``--out`` (default ``runs/parity``), prints
the table and exits with status 1 if any row fails.

Check groups (one Lava run each; its rows share the run's seconds):

* ``float`` — Lava ``floating_pt`` vs the float64 torch model, online S-TLLR learning
  with a host-injected float third factor L ~ N(0, 1) on the plastic nodes: spikes
  identical at every step (``float_spikes``), max |Δ membrane ũ / logit| ≤ 1e-5
  (``float_membrane``), max |Δ W| after the run ≤ 1e-5 (``float_weights``). The torch
  reference is the task model with weight standardisation off and δ = L injected at each
  plastic output, an SGD step after every step (docs/decisions.md, float models).
* ``fixed`` — Lava ``fixed_pt`` vs ``IntegerEmulator(delay=0)`` stepped with batch 1,
  100 on-device learning steps (several samples, state reset between them) with 8-bit
  integer signals from each signal source (:func:`signal_sources`): ``host`` (computed
  off device and injected) and, from :mod:`lava_models.online`, ``dfa`` (quick: SHD
  only), ``sdfa`` and ``bp`` (full only; ``bp`` on SHD) made on device, whose errors and
  projected L are compared too: every node's output at every step (``fixed_outputs``),
  the final traces, Ψ and membranes (``fixed_states``) and the learned weights
  (``fixed_weights``), all bit-exact.
* ``predictions`` — the task's model (the best trained checkpoint for the task and
  architecture under ``runs/``, else the freshly initialised small model; the row says
  which), 8-bit PTQ, on the first 8 (``--quick``: 2) test samples of the stand-in,
  zero-padded to a common length as the toolkit's evaluation batches are. Lava
  ``fixed_pt`` vs the batched emulator (``IntegerEmulator.run``): every node's output at
  every step, final states and weights bit-exact (``fixed_inference``) and the predicted
  classes (argmax of the summed readout) equal (``predictions``).
* ``builtin`` — Lava's own ``Dense``/``Conv`` + ``LIF`` vs ``IntegerEmulator(delay=1)``
  on a hard-reset dense chain and a conv → dense chain: s, u, v of every layer at every
  step (``builtin_dense``, ``builtin_conv``).

A row also fails when its check is vacuous (no weight moved, no spike anywhere): its
detail says so. Every Lava run has a deadline (the runner's), so the table never hangs;
an exception inside a group turns its rows into failures that carry the message.

The small models are built from the task's ``experiments/*.toml`` (factors, Ψ, pooling)
with narrow widths and their standardised-weight gains multiplied (×2 VGG, ×3 ResNet)
so that every layer spikes on the stand-in frames; ``--quick`` crops image frames to
16×16 (centre) for them and shortens the prediction samples.

The helpers that build the references (torch float S-TLLR, the batch-1 emulator, the
delay-1 emulator and the dense/conv chain models) live here and are imported by the
parity tests in ``hw_tests/``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lava_models.exporter import float_network, float_output_shapes, output_shapes
from lava_models.runner import run_lava
from quantization.convert import FloatSpiking, register_converter, stllr_layer_spec
from quantization.emulator import IntegerEmulator
from quantization.learning import attach_learning
from quantization.network import QNetwork, Readout, SpikingLayer
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.checkpoints import load_pt
from stllr.errors import UserError
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.chain import SpikingChain
from stllr.models.shd import SHDNetSTLLR
from stllr.models.vgg import VGGSTLLR
from stllr.neuron import LIFParams

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # float paths: membranes, logits and weights
LEARN_STEPS = 100  # on-device learning steps of the fixed check
LR = 0.05
STLLR_LAYERS = (Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR)


# =======================================================================================
# References shared with the parity tests
# =======================================================================================

# --- torch float S-TLLR (hw_tests/test_lava_float_vs_torch.py) --------------------------


def weighted_modules(model) -> dict[str, nn.Module]:
    """The float graph's weighted node names → the torch modules that compute them."""
    if isinstance(model, SHDNetSTLLR):
        return {"rec": model.rec, "readout": model.readout}
    if isinstance(model, VGGSTLLR):
        out = {f"conv{i}": c for i, c in enumerate(model.convs)}
    else:
        out = {"stem": model.stem}
        for b, block in enumerate(model.blocks):
            out[f"b{b}.conv1"], out[f"b{b}.conv2"] = block.conv1, block.conv2
            if not isinstance(block.shortcut, nn.Identity):
                out[f"b{b}.short"] = block.shortcut
    out["head"] = model.head
    return out


class Recorder:
    """Forward hooks on the weighted modules: their output (and, for S-TLLR layers, the
    membrane ũ) at every step. With ``detach`` the layers above read a detached copy, so
    a gradient injected at a layer's output reaches that layer's weights only."""

    def __init__(self, modules: dict[str, nn.Module], detach: bool = False):
        self.out = {k: [] for k in modules}
        self.mem = {k: [] for k, m in modules.items() if isinstance(m, STLLR_LAYERS)}
        self.live: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(k, detach)) for k, m in modules.items()]

    def _hook(self, name, detach):
        def hook(module, args, output):
            self.live[name] = output
            self.out[name].append(output[0].detach().numpy().copy())
            if name in self.mem:
                self.mem[name].append(module.state.u[0].detach().numpy().copy())
            return output.detach() if detach else None

        return hook

    def stacked(self):
        return ({k: np.stack(v) for k, v in self.out.items()},
                {k: np.stack(v) for k, v in self.mem.items()})  # fmt: skip

    def remove(self):
        for h in self.handles:
            h.remove()


def torch_inference(model, frames):
    """Outputs and membranes of every weighted module at every step, ``[N·T, ...]``."""
    rec = Recorder(weighted_modules(model))
    try:
        with torch.no_grad():
            for sample in frames:
                model.reset_state()
                for x in sample:
                    model(x[None])
    finally:
        rec.remove()
    return rec.stacked()


def effective_weight_model(model):
    """A copy whose S-TLLR layers multiply by leaf copies of Ŵ (weight standardisation
    off: ``weight`` ← Ŵ, ``weight_rec`` ← Ŵ_rec), every parameter frozen."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RecurrentLinearSTLLR) and m.weight_std:
                w, w_rec = (t.clone() for t in m.standardized_weights())
                m.weight.copy_(w)
                m.weight_rec.copy_(w_rec)
                m.weight_std = False
            elif isinstance(m, STLLR_LAYERS) and m.weight_std:
                m.weight.copy_(m.standardized_weight().clone())
                m.weight_std = False
    for p in model.parameters():
        p.requires_grad_(False)
    model.reset_state()
    return model


def torch_learning(model, frames, signals, plastic, lr):
    """Online S-TLLR on Ŵ with δ = L injected at each plastic layer (module docstring).

    Returns outputs/membranes like :func:`torch_inference` and the learned weights
    ``{name: {"w": ..., ["w_rec": ...]}}``."""
    model = effective_weight_model(model)
    mods = weighted_modules(model)
    leaves = {}
    for name in plastic:
        m = mods[name]
        leaves[name] = [m.weight] + ([m.weight_rec] if isinstance(m, RecurrentLinearSTLLR) else [])
        for w in leaves[name]:
            w.requires_grad_(True)
    rec = Recorder(mods, detach=True)
    flat = [w for ws in leaves.values() for w in ws]
    try:
        for i, sample in enumerate(frames):
            model.reset_state()
            for t, x in enumerate(sample):
                model(x[None])
                loss = sum((torch.as_tensor(signals[k][i, t])[None] * rec.live[k]).sum()
                           for k in plastic)  # fmt: skip
                grads = torch.autograd.grad(loss, flat)
                with torch.no_grad():
                    for w, g in zip(flat, grads, strict=True):
                        w -= lr * g
    finally:
        rec.remove()
    out, mem = rec.stacked()
    weights = {k: dict(zip(("w", "w_rec")[: len(ws)], (w.detach().numpy().copy() for w in ws),
                           strict=True)) for k, ws in leaves.items()}  # fmt: skip
    return out, mem, weights


# --- the batch-1 integer emulator (hw_tests/test_lava_fixed_vs_emulator.py) -------------


@dataclass
class Reference:
    outputs: dict[str, np.ndarray]  # node → [steps, ...]
    emu: IntegerEmulator


def emulate(qnet, frames, signals=None, step_offset: int = 0) -> Reference:
    """The emulator, batch 1: ``reset()`` before every sample, one ``step`` per frame."""
    emu = IntegerEmulator(qnet, delay=0)
    emu.step_count = step_offset
    outs = {n.name: [] for n in qnet.nodes}
    frames = np.asarray(frames)
    signals = signals or {}
    for i in range(frames.shape[0]):
        emu.reset()
        for t in range(frames.shape[1]):
            sig = {k: torch.as_tensor(v[i, t])[None] for k, v in signals.items()}
            o = emu.step(torch.as_tensor(frames[i, t])[None], signals=sig or None)
            for n in qnet.nodes:
                outs[n.name].append(o[n.name][0].numpy())
    return Reference({k: np.stack(v) for k, v in outs.items()}, emu)


def integer_signals(qnet, names, steps: int, seed: int, shape_prefix=()) -> dict[str, np.ndarray]:
    """Uniform integer learning signals in [−60, 60], one per output neuron per step."""
    rng = np.random.default_rng(seed)
    shapes = output_shapes(qnet)
    return {n: rng.integers(-60, 61, (*shape_prefix, steps, *shapes[n])) for n in names}


# --- Lava's built-in Dense/Conv + LIF (hw_tests/test_emulator_vs_lava_builtin*.py) -----


def emulate_delay1(qnet: QNetwork, x: np.ndarray) -> dict:
    """``IntegerEmulator(qnet, delay=1)`` on ``[T, ...]``: s, u, v of every node and step."""
    emu = IntegerEmulator(qnet, delay=1)
    rec = {n.name: {"s": [], "u": [], "v": []} for n in qnet.nodes}
    for t in range(x.shape[0]):
        outs = emu.step(torch.as_tensor(x[t])[None])
        for n in qnet.nodes:
            st = emu.state[n.name]
            for key, val in (("s", outs[n.name]), ("u", st.u), ("v", st.v)):
                rec[n.name][key].append(val[0].numpy().astype(np.int64))
    return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}


# (sizes, [(leak, threshold)] per layer, input rate)
DENSE_ARCHS = {
    "2layer": ((30, 20, 10), [(2.0, 0.6), (0.5, 0.8)], 0.3),
    "3layer": ((30, 24, 16, 8), [(3.0, 0.5), (0.0, 0.7), (1.0, 0.55)], 0.35),
}


def dense_chain_qnet(arch: str, seed: int, bits: int, steps: int = 30):
    """PTQ of a hard-reset dense chain with non-zero biases; binary input ``[T, in]``."""
    sizes, lif_cfg, rate = DENSE_ARCHS[arch]
    torch.manual_seed(seed)
    lifs = [LIFParams(leak=lk, threshold=th, reset="hard") for lk, th in lif_cfg]
    model = SpikingChain.dense(sizes, lifs)
    with torch.no_grad():
        for layer in model.layers:  # non-zero biases, and a gain that drives the next layer
            layer.bias.uniform_(-0.7, 0.4)
            layer.gain.fill_(2.0)
    g = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(steps, 1, sizes[0], generator=g) < rate).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, x[:, 0].numpy().astype(np.int64)


class ConvChain(SpikingModel):
    """Conv2dSTLLR layers, then optional LinearSTLLR layers on the flattened output."""

    def __init__(self, input_shape, convs, denses):
        super().__init__(tuple(input_shape), denses[-1][0] if denses else convs[-1][1])
        self.convs = torch.nn.ModuleList(Conv2dSTLLR(**kw) for kw in convs_kwargs(convs))
        shape = tuple(input_shape)
        for layer in self.convs:
            shape = (layer.out_channels, *layer.output_shape(*shape[1:]))
        n_in, fcs = int(np.prod(shape)), []
        for n_out, lif in denses:
            fcs.append(LinearSTLLR(n_in, n_out, lif=lif))
            n_in = n_out
        self.fcs = torch.nn.ModuleList(fcs)

    def forward(self, x, target=None):
        for layer in self.convs:
            x = layer(x)
        if len(self.fcs):
            x = x.flatten(1)  # [C, H, W] row-major: the order of the dense weight's columns
        for layer in self.fcs:
            x = layer(x)
        return x


def convs_kwargs(convs):
    for c_in, c_out, k, extra, lif in convs:
        yield {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, "lif": lif, **extra}


def _convert_conv_chain(model, factors):
    specs, prev = [], "input"
    layers = [(f"conv{i}", m) for i, m in enumerate(model.convs)]
    layers += [(f"fc{i}", m) for i, m in enumerate(model.fcs)]
    for name, layer in layers:
        specs.append(stllr_layer_spec(layer, name, (prev,), factors))
        prev = name
    return specs


register_converter(ConvChain, _convert_conv_chain)


def hard_lif(leak, threshold) -> LIFParams:
    return LIFParams(leak=leak, threshold=threshold, reset="hard")


# name: (input [C, H, W], convs (c_in, c_out, kernel, kwargs, lif), denses (out, lif), rate)
CONV_ARCHS = {
    # padding 1, then stride 2 / padding 0, then a dense layer on the flattened 3×3 map
    "pad1-stride2-fc": (
        (2, 8, 8),
        [
            (2, 4, 3, {"padding": 1}, hard_lif(1.0, 0.6)),
            (4, 3, 3, {"stride": 2}, hard_lif(0.5, 0.5)),
        ],
        [(6, hard_lif(2.0, 0.6))],
        0.3,
    ),
    # non-square everything (catches H/W swaps), groups and dilation, no dense layer
    "asym-groups-dilation": (
        (2, 9, 7),
        [
            (2, 4, (3, 2), {"stride": (2, 1), "padding": (1, 0)}, hard_lif(2.0, 0.5)),
            (4, 4, 3, {"groups": 2, "dilation": (1, 2), "padding": (1, 2)}, hard_lif(0.0, 0.6)),
        ],
        [],
        0.35,
    ),
}


def conv_chain_qnet(arch: str, seed: int, bits: int, steps: int = 20):
    """PTQ of a hard-reset conv (→ dense) chain; binary input ``[T, C, H, W]``."""
    in_shape, convs, denses, rate = CONV_ARCHS[arch]
    torch.manual_seed(seed)
    model = ConvChain(in_shape, convs, denses)
    with torch.no_grad():  # non-zero biases, and a gain that drives the next layer
        for layer in (*model.convs, *model.fcs):
            layer.bias.uniform_(-0.8, 0.7)
            layer.gain.fill_(2.0)
    g = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(steps, 1, *in_shape, generator=g) < rate).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, x[:, 0].numpy().astype(np.int64)


def run_builtin_with_deadline(qnet: QNetwork, x: np.ndarray, timeout_s: float) -> dict:
    """:func:`lava_models.builtin.run_builtin` with the table's deadline."""
    from lava_models.builtin import run_builtin

    return run_builtin(qnet, x, timeout_s=timeout_s)


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.arch)


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
        # quick: on SHD only (one cheap run keeps the source in CI); full: every model
        SignalSource("dfa", _online_run("dfa"), lambda tm, mode: mode == "full" or _is_shd(tm)),
        SignalSource("sdfa", _online_run("sdfa"), lambda tm, mode: mode == "full"),
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
               cfg.n_time_bins)  # fmt: skip
        if key not in self._data:
            self._data[key] = load_task(cfg)
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


def _flip_one_weight(qnet: QNetwork, name: str) -> QNetwork:
    """``qnet`` with one weight of ``name`` moved by one LSB (a deliberate corruption)."""
    n = qnet.node(name)
    w = n.weight.clone()
    flat = w.view(-1)
    top = (1 << (n.weight_bits - 1)) - 1
    flat[0] = flat[0] - 1 if flat[0] >= top else flat[0] + 1
    return qnet.replace_node(dataclasses.replace(n, weight=w))


def _diff_count(a, b) -> int:
    """Elements that differ (everything, if the shapes differ or one side is missing)."""
    if a is None or b is None:
        return max(np.size(a) if a is not None else 0, np.size(b) if b is not None else 0, 1)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return max(a.size, b.size, 1)
    return int((a != b).sum())


def _weighted(qnet) -> list:
    return [n for n in qnet.nodes if isinstance(n, (SpikingLayer, Readout))]


def _activity(qnet_or_specs, outputs: dict) -> tuple[int, int, int]:
    """(spiking layers that fired, spiking layers, total spikes)."""
    names = [n.name for n in qnet_or_specs if isinstance(n, (SpikingLayer, FloatSpiking))]
    fired = sum(1 for k in names if np.asarray(outputs[k]).any())
    return fired, len(names), int(sum(np.asarray(outputs[k]).sum() for k in names))


# --- check groups ----------------------------------------------------------------------


def _float_group(tm: TaskModel, mode: Mode, tasks: TaskCache, corrupt: bool) -> list[Row]:
    t0 = time.monotonic()
    data = tasks.get(task_config(tm))
    frames = task_frames(data, 0, mode.float_samples, mode.float_steps, mode.crop)
    model = small_model(tm, frames.shape[2:], data.num_classes)
    n, steps = frames.shape[:2]
    net = float_network(model, lr=LR, plastic=tm.plastic)
    shapes = float_output_shapes(net)
    rng = np.random.default_rng(7)
    signals = {k: rng.normal(0.0, 1.0, (n, steps, *shapes[k])) for k in tm.plastic}
    reference = model
    if corrupt:  # one weight of the torch reference moved by 1e-2 before Ŵ is taken
        reference = copy.deepcopy(model)
        with torch.no_grad():
            weighted_modules(reference)[tm.plastic[0]].weight.view(-1)[0] += 1e-2
    out, mem, weights = torch_learning(reference, frames, signals, tm.plastic, LR)
    res = run_lava(net, frames.numpy(), signals, timeout_s=mode.timeout_s)
    secs = time.monotonic() - t0
    specs = {s.name: s for s in net.nodes}
    spikes, dv = 0, 0.0
    for name, ref in out.items():
        got = res.outputs[name]
        if isinstance(specs[name], FloatSpiking):
            spikes += _diff_count(got, ref)
            dv = max(dv, float(np.abs(res.per_step[name]["v"] - mem[name]).max()))
        else:
            dv = max(dv, float(np.abs(got - ref).max()))
    fired, total, count = _activity(net.nodes, res.outputs)
    dw, moved, frac = 0.0, 0.0, []
    for name in tm.plastic:
        for key, ref in weights[name].items():
            got = res.weights(name)[key]
            w0 = net.node(name).weight if key == "w" else net.node(name).weight_rec
            dw = max(dw, float(np.abs(got - ref).max()))
            m = np.abs(ref - w0.numpy())
            moved = max(moved, float(m.max()))
            frac.append(float((m > TOL).mean()))
    shape = "×".join(map(str, frames.shape[2:]))
    act = f"{fired}/{total} spiking layers fire ({count} spikes), {n}×{steps} steps, in {shape}"
    learn = (f"plastic {','.join(tm.plastic)}: max |W moved| {moved:.3g}, "
             f"{100 * min(frac):.0f}–{100 * max(frac):.0f} % of weights > 1e-5")  # fmt: skip
    quiet = "" if count else "no spike in any layer"
    still = "" if moved > 1e3 * TOL else "the weights hardly moved"
    row = functools.partial(make_row, tm.key, source="host", seconds=secs)
    return [
        row("float_spikes", metric="differing spikes", value=spikes, bound=0, detail=act,
            vacuous=quiet),
        row("float_membrane", metric="max |Δ membrane/logit|", value=dv, bound=TOL, detail=act,
            vacuous=quiet),
        row("float_weights", metric="max |Δ W|", value=dw, bound=TOL, detail=learn, vacuous=still),
    ]  # fmt: skip


def _fixed_case(tm: TaskModel, mode: Mode, tasks: TaskCache, corrupt: bool) -> FixedCase:
    """The plastic network and frames of the fixed check (the same for every source)."""
    data = tasks.get(task_config(tm))
    per = min(mode.learn_sample_steps, data.test[0][0].shape[0])
    n = math.ceil(LEARN_STEPS / per)
    x = task_frames(data, 0, n, per, mode.crop).float()  # [N, T, ...], N·T = 100 (or more)
    labels = [int(data.test[i][1]) for i in range(n)]
    model = small_model(tm, x.shape[2:], data.num_classes).float()
    cal = x.transpose(0, 1)  # [T, N, ...]
    qnet, _ = quantize_model(model, [cal], PTQConfig(weight_bits=8))
    qnet = attach_learning(qnet, list(tm.plastic), [cal], lr=LR, seed=7)
    frames = quantize_input(x, qnet.input_format).numpy()
    ref_qnet = _flip_one_weight(qnet, tm.plastic[0]) if corrupt else qnet
    return FixedCase(qnet, tm.plastic, frames, labels, seed=3, timeout_s=mode.timeout_s,
                     reference_qnet=ref_qnet)  # fmt: skip


def _fixed_group(tm, mode, tasks, source: SignalSource, corrupt: bool, cases: dict) -> list[Row]:
    t0 = time.monotonic()
    if tm not in cases:
        cases[tm] = _fixed_case(tm, mode, tasks, corrupt)
    case = cases[tm]
    qnet, (n, per) = case.qnet, case.frames.shape[:2]
    run = source.run(case)
    secs = time.monotonic() - t0
    ref, emu = run.reference, run.reference.emu
    keys = set(run.outputs) | set(ref.outputs)
    outs = sum(_diff_count(run.outputs.get(k), ref.outputs.get(k)) for k in keys)
    states = weights = moved = total = 0
    for name in tm.plastic:
        node, st = qnet.node(name), run.state[name]
        for key, var, w0 in (
            ("w", "weights", node.weight),
            ("w_rec", "weight_rec", getattr(node, "weight_rec", None)),
        ):
            if w0 is None:
                continue
            weights += _diff_count(st[var], emu.weights(name)[key].numpy())
            moved += int((st[var] != w0.numpy()).sum())
            total += w0.numel()
        learn = emu.learn[name]
        pairs = [(st["p"], learn.p[0])]
        if isinstance(node, SpikingLayer):
            pairs += [(st["q"], learn.q[0]), (st["psi"], emu.state[name + "/psi"][0]),
                      (st["v"], emu.state[name].v[0]), (st["u"], emu.state[name].u[0])]  # fmt: skip
            if node.weight_rec is not None:
                pairs.append((st["r"], learn.r[0]))
        else:
            pairs.append((st["v"], emu.state[name][0]))
        states += sum(_diff_count(a, b.numpy()) for a, b in pairs)
    fired, nspk, count = _activity(qnet.nodes, run.outputs)
    extra = sorted(k for k in keys if k not in {m.name for m in qnet.nodes})
    act = f"{fired}/{nspk} spiking layers fire ({count} spikes), {n}×{per} steps with reset"
    if extra:
        act += f"; also compared: {', '.join(extra)}"
    det_s = f"final traces and membranes of {','.join(tm.plastic)}"
    det_w = f"{moved} of {total} plastic weights moved ({','.join(tm.plastic)})"
    row = functools.partial(make_row, tm.key, source=source.name, bound=0, seconds=secs)
    return [
        row("fixed_outputs", metric="differing outputs", value=outs, detail=act,
            vacuous="" if count else "no spike in any layer"),
        row("fixed_states", metric="differing P,Q,R,Ψ,v,u", value=states, detail=det_s),
        row("fixed_weights", metric="differing weights", value=weights, detail=det_w,
            vacuous="" if moved else "no weight moved"),
    ]  # fmt: skip


def find_checkpoint(runs_dir: Path, task: str, arch: str, exclude: Path | None = None):
    """The ``best.pt`` under ``runs_dir`` trained on ``task`` with ``arch`` and the highest
    recorded test accuracy (ties: first path), or None."""
    found = []
    for path in sorted(Path(runs_dir).rglob("best.pt")):
        if exclude is not None and Path(exclude).resolve() in path.resolve().parents:
            continue
        cfg = None
        for folder in (path.parent, path.parent.parent):
            if (folder / "config.json").is_file():
                try:
                    cfg = json.loads((folder / "config.json").read_text())
                except (OSError, ValueError):
                    cfg = None
                break
        if cfg is None or cfg.get("task") != task or cfg.get("arch") != arch:
            continue
        try:
            ckpt = load_pt(path, keys=("model", "config"))
        except UserError:  # an unreadable, unsafe or foreign file is not a candidate
            continue
        found.append((-float(ckpt.get("test_acc") or 0.0), str(path), ckpt))
    if not found:
        return None
    _, path, ckpt = min(found, key=lambda f: f[:2])
    return Path(path), ckpt


def _checkpoint_model(ckpt: dict, path: Path, tasks: TaskCache):
    from stllr.checkpoints import load_model_state, stored_config
    from stllr.models.factory import build_model

    cfg = stored_config(ckpt, path)
    data = tasks.get(cfg)
    model, _ = build_model(cfg, data.input_shape, data.num_classes)
    load_model_state(model, ckpt, path, "its config")
    return model.eval(), data


def _prediction_group(tm, mode, tasks, runs_dir, exclude, corrupt: bool) -> list[Row]:
    from quantization.report import calibration_batches

    t0 = time.monotonic()
    found = find_checkpoint(runs_dir, tm.task, tm.arch, exclude) if runs_dir else None
    if found is not None:
        path, ckpt = found
        model, data = _checkpoint_model(ckpt, path, tasks)
        try:
            path = path.resolve().relative_to(ROOT)
        except ValueError:
            pass
        acc = ckpt.get("test_acc")
        which = f"checkpoint {path} ({type(model).__name__}, test acc {acc})"
    else:
        data = tasks.get(task_config(tm))
        model = small_model(tm, data.input_shape, data.num_classes).float()
        which = f"fresh init ({type(model).__name__} {' '.join(tm.small)}, gains ×{tm.gain:g})"
    x = task_frames(data, 0, mode.pred_samples, None, None).float()
    if mode.pred_steps is not None:
        x = x[:, : mode.pred_steps]
    labels = [int(data.test[i][1]) for i in range(mode.pred_samples)]
    cal = calibration_batches(data.train, 1, 8, seed=0)
    qnet, _ = quantize_model(model, cal, PTQConfig(weight_bits=8))
    ref_qnet = _flip_one_weight(qnet, _weighted(qnet)[-1].name) if corrupt else qnet
    names = tuple(k.name for k in qnet.nodes)
    emu = IntegerEmulator(ref_qnet)
    ref = emu.run(x.transpose(0, 1), record=names)  # batched, the toolkit's evaluation
    frames = quantize_input(x, qnet.input_format).numpy()
    res = run_lava(qnet, frames, timeout_s=mode.timeout_s)
    secs = time.monotonic() - t0
    n, steps = frames.shape[:2]
    diff = 0
    for k in names:
        want = torch.stack(ref.records[k]).transpose(0, 1).reshape(n * steps, -1).numpy()
        diff += _diff_count(res.outputs[k].reshape(n * steps, -1), want)
    for node in _weighted(qnet):
        st, w = res.state[node.name], emu.weights(node.name)
        diff += _diff_count(st["weights"], w["w"].numpy())
        if isinstance(node, SpikingLayer):
            diff += _diff_count(st["v"], emu.state[node.name].v[-1].numpy())
            diff += _diff_count(st["u"], emu.state[node.name].u[-1].numpy())
        else:
            diff += _diff_count(st["v"], emu.state[node.name][-1].numpy())
    last = qnet.nodes[-1].name
    lava_pred = res.outputs[last].reshape(n, steps, -1).sum(1).argmax(1)
    emu_pred = ref.predictions().numpy()
    wrong = int((lava_pred != emu_pred).sum())
    fired, nspk, count = _activity(qnet.nodes, res.outputs)
    shape = "×".join(map(str, frames.shape[2:]))
    det_inf = f"{fired}/{nspk} spiking layers fire, {n} samples × {steps} steps, in {shape}"
    correct = int((lava_pred == np.asarray(labels)).sum())
    det_pred = (f"Lava {lava_pred.tolist()}, emulator {emu_pred.tolist()}, labels {labels} "
                f"({correct}/{n} correct); {which}")  # fmt: skip
    row = functools.partial(make_row, tm.key, source="-", bound=0, seconds=secs)
    return [
        row("fixed_inference", metric="differing outputs/states", value=diff,
            detail=f"{det_inf}; {which}", vacuous="" if res.outputs[last].any() else "logits 0"),
        row("predictions", metric="differing predictions", value=wrong, detail=det_pred),
    ]  # fmt: skip


def _builtin_rows(mode: Mode, corrupt: bool, checks: Iterable[str]) -> list[Row]:
    cases = {"builtin_dense": lambda: dense_chain_qnet("3layer", 2, 8),
             "builtin_conv": lambda: conv_chain_qnet("pad1-stride2-fc", 0, 8)}  # fmt: skip
    rows = []
    for check in checks:
        key = BUILTIN_KEYS[check]
        t0 = time.monotonic()
        try:
            qnet, x = cases[check]()
            ref_qnet = _flip_one_weight(qnet, qnet.nodes[0].name) if corrupt else qnet
            lava = run_builtin_with_deadline(qnet, x, mode.timeout_s)
            ours = emulate_delay1(ref_qnet, x)
            diff = sum(_diff_count(ours[n.name][q], lava[n.name][q])
                       for n in qnet.nodes for q in ("s", "u", "v"))  # fmt: skip
            fired = sum(1 for n in qnet.nodes if lava[n.name]["s"].any())
            layers = " → ".join(f"{n.name}({n.kind})" for n in qnet.nodes)
            det = (f"{layers}, 8-bit, hard reset, {x.shape[0]} steps; s,u,v every step; "
                   f"{fired}/{len(qnet.nodes)} layers fire")  # fmt: skip
            rows.append(make_row(key, check, "-", "differing s,u,v", diff, 0,
                                 time.monotonic() - t0, det,
                                 "" if fired else "no spike in any layer"))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 — a failing check is a failing row
            rows.append(_error_row(key, check, "-", time.monotonic() - t0, exc))
    return rows


def _error_row(key, check, source, seconds, exc) -> Row:
    """A failing row for a check that raised: the message's first and last line (a
    ``LavaRunError`` carries the failing process's traceback in between)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [""]
    msg = f"{type(exc).__name__}: {lines[0]}" + (f" … {lines[-1]}" if len(lines) > 1 else "")
    return make_row(key, check, source, "error", None, 0, seconds, msg[:500])


def expected_keys(groups: Iterable[str] = GROUPS, task_models=TASK_MODELS,
                  mode: str = "full") -> list[tuple]:  # fmt: skip
    """(task, model, check, source) of every row a table of these groups must contain."""
    keys = []
    for g in groups:
        if g == "builtin":
            keys += [(*BUILTIN_KEYS[c], c, "-") for c in GROUP_CHECKS[g]]
            continue
        for tm in task_models:
            if g == "fixed":
                sources = [s.name for s in signal_sources(mode) if s.applies(tm, mode)]
            else:
                sources = ["host"] if g == "float" else ["-"]
            keys += [(*tm.key, c, s) for s in sources for c in GROUP_CHECKS[g]]
    return keys


def build_table(
    quick: bool = False,
    *,
    runs_dir: Path | None = ROOT / "runs",
    exclude: Path | None = None,
    groups: Iterable[str] = GROUPS,
    task_models: Iterable[TaskModel] = TASK_MODELS,
    corrupt: Iterable[str] = (),
    log: Callable[[str], None] = lambda s: None,
) -> list[Row]:
    """Run the check ``groups`` for ``task_models``; ``corrupt`` names groups whose
    reference is deliberately corrupted (one weight moved) to show the table can fail."""
    from lava_models.runtime import import_lava

    import_lava()  # load_task uses tqdm: fix the fork start method first
    torch.set_num_threads(1)
    mode = QUICK if quick else FULL
    groups, corrupt, task_models = list(groups), set(corrupt), list(task_models)
    unknown = (set(groups) | corrupt) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown check groups {sorted(unknown)}; known: {list(GROUPS)}")
    tasks, cases = TaskCache(), {}
    rows: list[Row] = []
    for tm in task_models:
        jobs = []
        if "float" in groups:
            jobs.append(("float", "host", lambda tm=tm: _float_group(
                tm, mode, tasks, "float" in corrupt)))  # fmt: skip
        if "fixed" in groups:
            for src in signal_sources(mode.name):
                if src.applies(tm, mode.name):
                    jobs.append(("fixed", src.name, lambda tm=tm, src=src: _fixed_group(
                        tm, mode, tasks, src, "fixed" in corrupt, cases)))  # fmt: skip
        if "predictions" in groups:
            jobs.append(("predictions", "-", lambda tm=tm: _prediction_group(
                tm, mode, tasks, runs_dir, exclude, "predictions" in corrupt)))  # fmt: skip
        for group, source, job in jobs:
            t0 = time.monotonic()
            try:
                new = job()
            except Exception as exc:  # noqa: BLE001 — a failing check is a failing row
                new = [_error_row(tm.key, c, source, time.monotonic() - t0, exc)
                       for c in GROUP_CHECKS[group]]  # fmt: skip
            for r in new:
                log(_line(r))
            rows += new
    if "builtin" in groups:
        new = _builtin_rows(mode, "builtin" in corrupt, GROUP_CHECKS["builtin"])
        for r in new:
            log(_line(r))
        rows += new
    return rows


# --- output ------------------------------------------------------------------------------

COLUMNS = ("task", "model", "check", "source", "metric", "value", "bound", "result", "seconds",
           "detail")  # fmt: skip


def format_number(v) -> str:
    if v is None:
        return "error"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return "0" if v == 0 else f"{v:.3g}"


def row_cells(r: Row) -> list[str]:
    cells = [
        r.task,
        r.model,
        r.check,
        r.source,
        r.metric,
        format_number(r.value),
        format_number(r.bound),
        "pass" if r.passed else "FAIL",
        f"{r.seconds:.1f}",
        r.detail,
    ]
    return [c.replace("|", "\\|") for c in cells]  # fmt: skip


def _line(r: Row) -> str:
    c = row_cells(r)
    return f"{c[7]:4} {c[0]:20} {c[1]:9} {c[2]:16} {c[3]:5} {c[5]:>9} ≤ {c[6]:<6} {c[8]:>6} s"


def markdown(rows: list[Row], title: str = "Parity table", preamble: str = "") -> str:
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> list[dict[str, str]]:
    """The table rows of :func:`markdown` as ``{column: cell}`` (for the tests)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| task |"):
            continue
        parts = re.split(r"(?<!\\)\|", line.strip()[1:-1])  # not at an escaped "\|"
        cells = [c.strip().replace("\\|", "|") for c in parts]
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def write_table(rows: list[Row], out: Path, meta: dict) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    passed = all(r.passed for r in rows)
    doc = {**meta, "passed": passed, "rows": [r.as_dict() for r in rows]}
    (out / "parity.json").write_text(json.dumps(doc, indent=2) + "\n")
    n_ok = sum(r.passed for r in rows)
    pre = (f"Mode `{meta.get('mode')}`, generated by `{meta.get('command')}`: **{n_ok}/{len(rows)} "
           f"rows pass**, wall time {meta.get('wall_s', 0):.1f} s. Signal sources: "
           f"{', '.join(meta.get('signal_sources', []))}. `seconds`: the Lava run and the "
           "reference that the row comes from (rows of one run share it).")  # fmt: skip
    (out / "parity.md").write_text(markdown(rows, preamble=pre))
    return out / "parity.json", out / "parity.md"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("lava-nc", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hw_tests.parity",
        description="Lava vs torch / integer emulator parity table for every task model.",
    )
    p.add_argument("--quick", action="store_true", help="small inputs and few samples (CI)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "parity", help="output folder")
    p.add_argument("--runs", type=Path, default=ROOT / "runs",
                   help="where to look for trained checkpoints (best.pt)")  # fmt: skip
    p.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK[/ARCH]",
        help="only these task models, e.g. shd-standin gesture-standin/vgg9",
    )
    p.add_argument(
        "--corrupt",
        nargs="+",
        choices=GROUPS,
        default=[],
        help="self-test: move one weight of these groups' references (their rows must fail)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tms = list(TASK_MODELS)
    if args.tasks:
        tms = [tm for tm in tms if tm.task in args.tasks or f"{tm.task}/{tm.arch}" in args.tasks]
    t0 = time.monotonic()
    rows = build_table(args.quick, runs_dir=args.runs, exclude=args.out, groups=args.groups,
                       task_models=tms, corrupt=args.corrupt,
                       log=lambda s: print(s, flush=True))  # fmt: skip
    argv_str = " ".join(sys.argv[1:] if argv is None else argv)
    mode = "quick" if args.quick else "full"
    meta = {"mode": mode, "versions": _versions(), "wall_s": round(time.monotonic() - t0, 1),
            "command": f"python -m hw_tests.parity {argv_str}".strip(),
            "signal_sources": [s.name for s in signal_sources(mode)],
            "groups": args.groups, "corrupt": args.corrupt}  # fmt: skip
    json_path, md_path = write_table(rows, args.out, meta)
    print()
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
