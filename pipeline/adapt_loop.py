"""The adaptation loop: one stream, one learner (device or float), the host's mechanisms.

The stream the device learns from is the scenario's shifted samples in arrival order
with, when replay is on, the replay buffer's original-condition samples interleaved
(:func:`pipeline.adapt_mechanisms.stream_schedule`); :func:`interleave` stacks it into one
``[T, M, ...]`` tensor (the same tensor is fed to Lava). For item ``j`` of the stream the
learner receives the rate scale ``s_j`` and the error gate; after it, the optional
consolidation pull (the float learner's; the device pulls inside its node kinds). At the
checkpoints (counted in shifted samples seen) the network is scored on both conditions:
the learning curves of the shifted and the original condition.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from pipeline.adapt_mechanisms import Mechanisms, StreamItem, rate_scale


class Curves(NamedTuple):
    """Accuracy (percent) on the shifted and on the original condition after ``samples``
    shifted samples (0 = before learning)."""

    samples: list[int]
    shifted: list[float]
    original: list[float]


class Streamed(NamedTuple):
    """What :func:`learn_stream` returns: the curves; the device learner's signals and every
    node's outputs of the recorded stream samples, stacked ``[T, R, ...]`` (empty dicts when
    none were recorded); ``prefix``, a copy of the learner's network right after the last
    recorded sample (its learning and pull) when fewer than the whole stream were recorded,
    else ``None`` (the final network is the learner's own)."""

    curves: Curves
    signals: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    prefix: object | None


def _pad_to(x: torch.Tensor, steps: int) -> torch.Tensor:
    if x.shape[0] == steps:
        return x
    out = x.new_zeros((steps, *x.shape[1:]))
    out[: x.shape[0]] = x
    return out


def interleave(
    schedule: Sequence[StreamItem],
    xs: torch.Tensor,
    ys: torch.Tensor,
    xr: torch.Tensor | None = None,
    yr: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[T, M, ...]`` and labels ``[M]`` of the stream in ``schedule`` order, from the
    shifted samples ``xs [T_s, N, ...]`` and the replay buffer ``xr [T_r, B, ...]`` (both
    zero-padded at the end to ``max(T_s, T_r)``)."""
    steps = xs.shape[0] if xr is None else max(xs.shape[0], xr.shape[0])
    xs = _pad_to(xs, steps)
    xr = None if xr is None else _pad_to(xr, steps)
    cols, labels = [], []
    for item in schedule:
        if item.source == "shift":
            cols.append(xs[:, item.index])
            labels.append(int(ys[item.index]))
        else:
            if xr is None or yr is None:
                raise ValueError("the schedule replays samples but no replay buffer was given")
            cols.append(xr[:, item.index])
            labels.append(int(yr[item.index]))
    return torch.stack(cols, dim=1), torch.tensor(labels, dtype=torch.long)


class StreamFrames:
    """The stream's frames ``[T, M, ...]`` in ``schedule`` order, without the copy.

    Column ``j`` is shifted sample ``schedule[j].index`` of ``xs [T_s, N, ...]`` or replayed
    sample ``schedule[j].index`` of ``xr [T_r, B, ...]``, both zero-padded at the end to
    ``T = max(T_s, T_r)`` (the values :func:`interleave` stacks). The host holds the
    shifted samples and the replay buffer once, however many passes the schedule makes
    over them (a stacked 4-pass stream of 1000 SHD stand-in samples held about 6.5 GB);
    ``frames[:, j : j + 1]`` gives one sample ``[T, 1, ...]``, :meth:`materialize` the
    stacked tensor (for Lava, which takes the whole stream at once).
    """

    def __init__(self, schedule, xs: torch.Tensor, xr: torch.Tensor | None = None):
        steps = xs.shape[0] if xr is None else max(xs.shape[0], xr.shape[0])
        if xr is None and any(it.source == "replay" for it in schedule):
            raise ValueError("the schedule replays samples but no replay buffer was given")
        self.schedule = list(schedule)
        self.xs = _pad_to(xs, steps)
        self.xr = None if xr is None else _pad_to(xr, steps)
        self.shape = torch.Size((steps, len(self.schedule), *xs.shape[2:]))
        self.dtype = xs.dtype

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> StreamFrames:
        """The same stream with ``fn`` (elementwise, e.g. the input quantization) applied
        to the held samples."""
        return StreamFrames(self.schedule, fn(self.xs), None if self.xr is None else fn(self.xr))

    def column(self, j: int) -> torch.Tensor:
        """Stream sample ``j``, ``[T, ...]``."""
        item = self.schedule[j]
        src = self.xs if item.source == "shift" else self.xr
        return src[:, item.index]

    def __getitem__(self, key) -> torch.Tensor:
        """``frames[:, j]`` or ``frames[:, a:b]`` (consecutive stream samples)."""
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)):
            raise IndexError("StreamFrames supports frames[:, j] and frames[:, a:b] only")
        sel = key[1]
        if isinstance(sel, int):
            return self.column(sel)
        idx = range(len(self.schedule))[sel]
        return torch.stack([self.column(j) for j in idx], dim=1)

    def materialize(self) -> torch.Tensor:
        """The whole stream stacked, ``[T, M, ...]``."""
        return self[:, :]


def unlabel_after(schedule: Sequence[StreamItem], y: torch.Tensor, labelled: int) -> torch.Tensor:
    """Labels ``[M]`` of a label-scarce stream: only the first ``labelled`` shifted samples
    (stream indices ``< labelled``, in every pass) carry a label, the others arrive
    without one (``−1``); replayed samples keep theirs."""
    out = y.clone()
    for j, item in enumerate(schedule):
        if item.source == "shift" and item.index >= labelled:
            out[j] = -1
    return out


def checkpoints_of(schedule: Sequence[StreamItem], every: int) -> dict[int, int]:
    """``{stream position j: shifted samples seen}`` where a curve point is taken: after the
    shifted sample whose count is a multiple of ``every``, and at the end of the stream
    (after any replay that follows the last shifted sample, so the last point is the
    final network)."""
    shift_pos = [j for j, it in enumerate(schedule) if it.source == "shift"]
    n = len(shift_pos)
    out = {}
    for k, j in enumerate(shift_pos, 1):
        if every and k % every == 0 and k < n:
            out[j] = k
    if schedule:
        out[len(schedule) - 1] = n
    return out


def learn_stream(
    learner,
    x: torch.Tensor,
    y: torch.Tensor,
    schedule: Sequence[StreamItem],
    mech: Mechanisms,
    every: int,
    score: Callable[[object], tuple[float, float]],
    snapshot: Callable[[], object],
    consolidate: Callable[[int], None] | None = None,
    record: int = 0,
    progress=iter,
) -> Streamed:
    """Stream ``x [T, M, ...]``/``y [M]`` (``schedule`` order) through ``learner``.

    ``score(net) → (shifted %, original %)`` scores ``snapshot()``, the learner's network
    now; ``consolidate(j)`` runs the pull after item ``j`` (when ``mech.consolidate_shift``;
    the float learner's: the device's node kinds pull by themselves, see
    :func:`pipeline.learners.make_plastic`).
    ``record = R > 0``: the device learner's signals and outputs of the first ``R`` stream
    items (arrival order: replay and passes included) are returned stacked ``[T, R, ...]``
    (for Lava; nothing of the later items is kept) and, when ``R < M``, a copy of
    ``snapshot()`` right after item ``R − 1`` (its update and its consolidation pull).
    """
    marks = checkpoints_of(schedule, every)
    s0, o0 = score(snapshot())
    curves = Curves([0], [s0], [o0])
    signals: dict[str, list] = {}
    outputs: dict[str, list] = {}
    prefix = None
    for j in progress(range(len(schedule))):
        scale = rate_scale(j, mech.rate_decay)
        res = learner.learn_sample(
            x[:, j : j + 1], int(y[j]), scale, mech.error_gate, mech.pseudo_label
        )
        if j < record:
            sig, outs = res
            for name, v in sig.items():
                signals.setdefault(name, []).append(v)
            for name, v in outs.items():
                outputs.setdefault(name, []).append(v)
        if mech.consolidate_shift and consolidate is not None:
            consolidate(j)
        if j == record - 1 and record < len(schedule):  # frozen: learning goes on
            prefix = copy.deepcopy(snapshot())
        if j in marks:
            s, o = score(snapshot())
            curves.samples.append(marks[j])
            curves.shifted.append(s)
            curves.original.append(o)
    cat = lambda d: {k: torch.cat(v, dim=1) for k, v in d.items()}  # noqa: E731
    return Streamed(curves, cat(signals), cat(outputs), prefix)
