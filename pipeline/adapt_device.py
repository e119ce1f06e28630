"""The adaptation stage's data and its on-device (emulator) run, once per seed.

:func:`prepare` turns the scenario (:mod:`pipeline.shift`) and the mechanisms into the
tensors the learners stream: the interleaved stream (shifted and replayed samples), the
shifted evaluation set and the original-condition set. :func:`run_device` learns that
stream in the integer emulator and scores both conditions before, during and after
(paired changes, :mod:`pipeline.adapt_stats`). The stage runs it for its own seed and,
with ``adaptation.repeats``, for further seeds (the spread of the curves and the
mean ± std of the changes).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch

from pipeline.adapt_loop import Curves, StreamFrames, learn_stream, unlabel_after
from pipeline.adapt_mechanisms import Mechanisms, StreamItem, stream_schedule
from pipeline.adapt_stats import PairedChange, paired_change
from pipeline.learners import DeviceLearner, OnDeviceLearner, make_plan, make_plastic
from pipeline.shift import make_shift
from stllr.padding import stack_samples
from stllr.progress import bar as progress_bar


class Prepared(NamedTuple):
    """The tensors of one adaptation run (frames time-major, labels ``[N]``)."""

    schedule: list[StreamItem]
    x_all: StreamFrames  # the stream [T, M, ...] (shifted and replayed), float frames
    y_all: torch.Tensor  # its labels [M] (−1: unlabelled)
    x_all_int: StreamFrames  # the stream in the network's input format
    xs: torch.Tensor  # the shifted stream samples alone [T_s, N, ...]
    xe: torch.Tensor  # shifted evaluation samples, with labels and lengths
    ye: torch.Tensor
    le: torch.Tensor
    xc: torch.Tensor  # original-condition samples, with labels and lengths
    yc: torch.Tensor
    lc: torch.Tensor
    steps: int
    n_stream: int
    n_eval: int
    n_replay: int
    eval_name: str
    clean_name: str


class DeviceRun(NamedTuple):
    curves: Curves
    shifted: PairedChange
    original: PairedChange
    learned: object  # the QNetwork after learning
    plastic: object  # the QNetwork with its learning specs, deployed weights
    plan: object  # SignalPlan of on-device signals, or None
    signals: dict  # recorded for Lava: the first `recorded` stream samples, [T, R, ...]
    outputs: dict
    seconds: float
    learned_steps: int | None
    recorded: int = 0  # stream samples whose signals and outputs were recorded
    prefix: object = None  # the network right after the recorded samples (R < M), or None


def _pad_to(x: torch.Tensor, steps: int) -> torch.Tensor:
    if x.shape[0] == steps:
        return x
    out = x.new_zeros((steps, *x.shape[1:]))
    out[: x.shape[0]] = x
    return out


def replay_samples(data, n: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    """The host's replay buffer: ``n`` original-condition training samples, a seeded draw."""
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    idx = torch.randperm(len(data.train), generator=gen)[: min(n, len(data.train))].tolist()
    return [(data.train[i][0], int(data.train[i][1])) for i in idx]


def emulator_predictions(
    qnet, x: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Predictions ``[N]`` of the network (learning off) on frames ``[T, N, ...]``, each
    sample scored over its ``lengths`` steps."""
    from pipeline.learners import strip_learning
    from quantization.emulator import IntegerEmulator

    emu = IntegerEmulator(strip_learning(qnet))
    return torch.cat(
        [
            emu.run(x[:, s : s + batch_size], lengths=lengths[s : s + batch_size]).predictions()
            for s in range(0, x.shape[1], batch_size)
        ]
    )


def compact_int(x: torch.Tensor) -> torch.Tensor:
    """Integer frames in the narrowest of int8/int16/int32/int64 that holds their values
    (the stream's spike counts fit int8: an eighth of int64's memory)."""
    lo, hi = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    for dt in (torch.int8, torch.int16, torch.int32):
        info = torch.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return x.to(dt)
    return x


def lava_stream_samples(k: int, n: int) -> int:
    """How many of the ``n`` stream samples Lava learns with ``adaptation.lava_stream_samples
    = k``: the first ``k`` when ``0 < k < n``, else all ``n`` (0 = the whole stream)."""
    return k if 0 < k < n else n


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((pred == y).double().mean())


def prepare(a, data, qnet, mech: Mechanisms) -> Prepared:
    """The scenario of section ``a`` (its seed) on ``data`` as stream and evaluation sets."""
    from quantization.ptq import quantize_input

    scenario = make_shift(a).build(data, a)
    n_stream, n_eval = len(scenario.stream), len(scenario.eval)
    xs, ys, _ = stack_samples(scenario.stream)
    xe, ye, le = stack_samples(scenario.eval)
    xc, yc, lc = stack_samples(scenario.clean)
    # the stream and the evaluations are padded separately: the learning window counts
    # from the end of a stream sample, which must not be padding
    steps = max(xe.shape[0], xc.shape[0])
    xe, xc = _pad_to(xe, steps), _pad_to(xc, steps)
    xr = yr = None
    if mech.replay_buffer:
        xr, yr, _ = stack_samples(replay_samples(data, mech.replay_buffer, a.seed))
    schedule = stream_schedule(
        n_stream, mech.replay_every, 0 if yr is None else len(yr), mech.passes
    )
    # the stream is a view of the shifted samples and the replay buffer, held once
    x_all = StreamFrames(schedule, xs, xr)
    y_all = torch.tensor(
        [int(ys[it.index] if it.source == "shift" else yr[it.index]) for it in schedule],
        dtype=torch.long,
    )
    if a.labelled:  # a label-scarce stream: only the first `labelled` shifted samples
        y_all = unlabel_after(schedule, y_all, a.labelled)
    x_all_int = x_all.map(lambda x: compact_int(quantize_input(x, qnet.input_format)))
    n_replay = sum(1 for it in schedule if it.source == "replay")

    return Prepared(
        schedule, x_all, y_all, x_all_int, xs, xe, ye, le, xc, yc, lc, steps, n_stream,
        n_eval, n_replay, scenario.eval_name, scenario.clean_name,
    )  # fmt: skip


def run_device(
    ctx, a, qnet, layers, prep: Prepared, mech: Mechanisms, record: bool, teacher=None
) -> DeviceRun:
    """Learn ``prep``'s stream on device (emulator) with section ``a``'s settings;
    ``teacher``: the first-spike teaching signal's settings for a spiking output layer
    (:mod:`stllr.functional.first_spike_teacher`, host signals only). ``record`` (for Lava):
    keep the signals and outputs of the stream samples Lava learns
    (:func:`lava_stream_samples`) and, when that is a prefix, the network right after it."""
    xs, xe, ye, le, xc, yc, lc = prep.xs, prep.xe, prep.ye, prep.le, prep.xc, prep.yc, prep.lc
    n_stream, schedule = prep.n_stream, prep.schedule
    calib = [xs[:, : min(32, n_stream)]]
    # consolidation runs in the node kinds, after the last step of every stream sample
    plastic = make_plastic(
        qnet, layers, calib, a.lr, a.seed, a.signal, mech.consolidate_shift,
        prep.x_all_int.shape[0], mech.precondition, a.window,
    )  # fmt: skip
    plan = None if a.signal == "host" else make_plan(plastic, layers, a.signal, a.seed)
    pred_e0 = emulator_predictions(qnet, xe, le)
    pred_c0 = emulator_predictions(qnet, xc, lc)
    if plan is None:
        learner = DeviceLearner(plastic, layers, a.window, teacher)
    else:
        learner = OnDeviceLearner(plastic, plan, a.window)

    def score_emu(net):
        shifted = accuracy(emulator_predictions(net, xe, le), ye)
        return shifted, accuracy(emulator_predictions(net, xc, lc), yc)

    recorded = lava_stream_samples(a.lava_stream_samples, len(schedule)) if record else 0
    t0 = time.time()
    streamed = learn_stream(
        learner, prep.x_all_int, prep.y_all, schedule, mech, a.eval_every, score_emu,
        learner.network,
        record=recorded,
        progress=lambda r: progress_bar(
            r, show=ctx.progress, desc=f"on-device learning (seed {a.seed})", unit="sample"
        ),
    )  # fmt: skip
    emu_seconds = time.time() - t0
    learned = learner.network()
    emu_shift = paired_change(pred_e0, emulator_predictions(learned, xe, le), ye)
    emu_orig = paired_change(pred_c0, emulator_predictions(learned, xc, lc), yc)
    return DeviceRun(
        streamed.curves, emu_shift, emu_orig, learned, plastic, plan, streamed.signals,
        streamed.outputs, emu_seconds, getattr(learner, "learned_steps", None), recorded,
        streamed.prefix,
    )  # fmt: skip
