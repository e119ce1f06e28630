"""The ``[flow]`` table of a pipeline config: the flow task's stand-in and its shift.

Only the flow tasks (``mvsec-standin``; :data:`stllr.tasks.FLOW_TASKS`) read it. The
stand-in is the simplest motion of docs/flow.md §5 (±x translation at ``x_speed`` px/s,
the CI test's), square frames of ``size`` px; the shifted condition of the adaptation
stage is the same scenes, motion and gt seen by another sensor (:data:`SHIFTS`):

* ``sensor_noise``: spurious events, ``noise_rate`` per pixel and second, random polarity
  (:class:`stllr.flow.standin.StandinSpec`, ``noise_rate``);
* ``contrast``: a less sensitive sensor, contrast threshold ``contrast`` instead of the
  stand-in's 0.15 (fewer events for the same motion).

The other stages take their settings from the usual tables: ``[lava] samples`` (test
windows per sequence run in Lava), ``[adaptation] lr``, ``samples`` (shifted training
windows streamed through the device), ``lava_eval_samples`` (how many of them Lava
replays) and ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stllr.errors import UserError

SHIFTS = ("sensor_noise", "contrast")


@dataclass(frozen=True)
class FlowSection:
    """Stand-in, shifted condition and on-device flow-head learning of a flow pipeline."""

    #: frames of size × size pixels (≥ train.flow_crop)
    size: int = 40
    #: images of the training recording (outdoor_day2) and of each test recording
    train_frames: int = 160
    test_frames: int = 24
    #: ±x translation speed in px/s (docs/flow.md §5)
    x_speed: float = 80.0
    #: the shifted condition: one of SHIFTS
    shift: str = "sensor_noise"
    #: sensor_noise: spurious events per pixel and second
    noise_rate: float = 4.0
    #: contrast: the shifted sensor's contrast threshold (the stand-in's is 0.15)
    contrast: float = 0.3
    #: passes of on-device learning over the shifted training windows
    adapt_epochs: int = 1
    #: largest |flow error| in px that the 8-bit third factor holds
    signal_max: float = 4.0
    #: third factor only where the window has events (the evaluation's mask)
    event_mask: bool = True


def check_flow(cfg, source: str) -> None:
    """One-line errors for flow settings no stage can run with (``cfg``: PipelineConfig)."""
    f, t = cfg.flow, cfg.train
    if t.arch != "fsfn":
        raise UserError(f"{source}: train.arch must be 'fsfn' for task {t.task!r}, got {t.arch!r}")
    if f.size < t.flow_crop:
        raise UserError(
            f"{source}: flow.size must be ≥ train.flow_crop ({t.flow_crop}), got {f.size}"
        )
    if f.train_frames < 8 or f.test_frames < 8:
        raise UserError(
            f"{source}: flow.train_frames and flow.test_frames must be ≥ 8, got "
            f"{f.train_frames}, {f.test_frames}"
        )
    if f.shift not in SHIFTS:
        raise UserError(f"{source}: flow.shift must be one of {', '.join(SHIFTS)}, got {f.shift!r}")
    for key in ("x_speed", "noise_rate", "contrast", "signal_max"):
        v = getattr(f, key)
        if not 0 < v < math.inf:
            raise UserError(f"{source}: flow.{key} must be a finite number > 0, got {v}")
    if f.adapt_epochs < 1:
        raise UserError(f"{source}: flow.adapt_epochs must be ≥ 1, got {f.adapt_epochs}")
    a = cfg.adaptation
    if not 0 < a.lr < math.inf or a.samples < 1 or a.lava_eval_samples < 0:
        raise UserError(
            f"{source}: adaptation.lr must be > 0, adaptation.samples ≥ 1 and "
            f"adaptation.lava_eval_samples ≥ 0, got {a.lr}, {a.samples}, {a.lava_eval_samples}"
        )
    if cfg.lava.samples < 1 or cfg.lava.timeout_s <= 0:
        raise UserError(f"{source}: lava.samples must be ≥ 1 and lava.timeout_s > 0")
    if cfg.quantize.bits < 2 or cfg.quantize.bits > 16:
        raise UserError(f"{source}: quantize.bits must be in 2..16, got {cfg.quantize.bits}")
