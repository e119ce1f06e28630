"""Binning of event recordings into frames, and frame-level transforms.

:func:`validate_events` checks a structured event array against a sensor size;
:func:`events_to_frames` (tonic ``ToFrame``) and :func:`slice_by_time` (tonic
``SliceByTime``) turn events into int16 count frames ``[T, P, H, W]``; :func:`resize_frames`,
:func:`random_crop` and the picklable :class:`CropAugment` work on frame stacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tonic
import torch
import torch.nn.functional as F

from stllr.errors import UserError


def validate_events(events: np.ndarray, sensor_size: tuple[int, int, int], where: str) -> None:
    """Raise :class:`ValueError` naming ``where`` unless ``events`` can be binned.

    Checks: a structured array with integer ``x``/``p`` fields (``y`` when ``H > 1``) and a
    numeric ``t``; at least one event; ``t`` non-decreasing; ``0 ≤ x < W``, ``0 ≤ y < H``,
    ``0 ≤ p < P`` for ``sensor_size = (W, H, P)``.
    """
    names = events.dtype.names
    if names is None:
        raise UserError(
            f"{where}: events must be a structured array with fields x, y, t, p; "
            f"got dtype {events.dtype}"
        )
    needed = ("x", "y", "t", "p") if sensor_size[1] > 1 else ("x", "t", "p")
    for field in needed:
        if field not in names:
            raise UserError(f"{where}: events lack the field '{field}' (fields: {names})")
        kind = events.dtype[field].kind
        ok = "iufb" if field == "t" else "iub"
        if kind not in ok:
            raise UserError(
                f"{where}: field '{field}' has dtype {events.dtype[field]}; expected "
                + ("a number" if field == "t" else "integers (or bool for p)")
            )
    if events.size == 0:
        raise UserError(f"{where}: empty recording (0 events); expected at least 1 event")
    t = events["t"]
    if np.any(t[1:] < t[:-1]):
        raise UserError(f"{where}: field 't' must be sorted in ascending time")
    limits = {"x": sensor_size[0], "p": sensor_size[2]}
    if "y" in needed:
        limits["y"] = sensor_size[1]
    for field, size in limits.items():
        values = events[field].astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= size:
            raise UserError(
                f"{where}: field '{field}' spans [{lo}, {hi}]; expected 0..{size - 1} "
                f"for sensor_size (W, H, P) = {tuple(sensor_size)}"
            )


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    where: str,
    *,
    time_window: float | None = None,
    n_time_bins: int | None = None,
    n_event_bins: int | None = None,
) -> np.ndarray:
    """Validated tonic ``ToFrame``: event counts ``[T, P, H, W]`` (int16).

    Exactly one of these must be given (tonic 1.7.0 ``to_frame_numpy`` semantics):

    * ``time_window`` (µs): complete windows ``[t0 + k·w, t0 + (k+1)·w)`` from the first
      event ``t0``, ``max(floor((t_last − t0 − w) / w) + 1, 1)`` of them;
    * ``n_time_bins``: ``n`` windows of ``floor((t_last − t0) / n)`` µs each (events at or
      after ``t0 + n·width``, the last one included, are dropped);
    * ``n_event_bins``: ``n`` frames of ``N // n`` consecutive events (the last ``N mod n``
      events are dropped).
    Audio-like sensors (``H == 1``, no ``y`` field) give ``[T, P, 1, W]``.
    """
    validate_events(events, sensor_size, where)
    to_frame = tonic.transforms.ToFrame(
        sensor_size=tuple(sensor_size),
        time_window=time_window,
        n_time_bins=n_time_bins,
        n_event_bins=n_event_bins,
    )
    frames = to_frame(events)
    if frames.ndim == 3:  # (T, P, W) for sensors without a y axis
        frames = frames[:, :, None, :]
    return frames


def slice_by_time(events: np.ndarray, window_us: float) -> list[np.ndarray]:
    """tonic ``SliceByTime(window_us)`` without the partial last slice; empty slices dropped.

    Slice ``i`` holds the events with ``t0 + i·w ≤ t < t0 + (i+1)·w`` (``t0`` = first event)
    for ``i < max(floor((t_last − t0 − w) / w) + 1, 1)``.
    """
    slices, _ = tonic.slicers.SliceByTime(time_window=window_us).slice(events, None)
    return [s for s in slices if len(s) > 0]


def resize_frames(
    frames: torch.Tensor | np.ndarray,
    size: tuple[int, int],
    *,
    antialias: bool = True,
    round_to_int: bool = True,
) -> torch.Tensor:
    """Bilinear resize of ``[T, C, H, W]`` frames to ``size = (h, w)`` (float32 out).

    Exactly torchvision's tensor ``Resize(size, antialias=antialias)`` on tonic's int16
    frames: cast to float32, ``F.interpolate(mode="bilinear", align_corners=False,
    antialias=antialias)`` with ``T`` as the batch, then (``round_to_int=True``)
    ``torch.round`` because torchvision casts the result back to the input's integer dtype.
    """
    x = torch.as_tensor(frames).to(torch.float32)
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clone()
    y = F.interpolate(
        x, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias
    )
    return torch.round(y) if round_to_int else y


def random_crop(
    frames: torch.Tensor, size: tuple[int, int], padding: int, generator: torch.Generator
) -> torch.Tensor:
    """Zero-pad ``padding`` pixels on each side, then crop ``size = (h, w)`` at one random
    position shared by all frames of ``[T, C, H, W]`` (torchvision ``RandomCrop(size,
    padding)`` applied to the whole stack; offsets uniform in ``[0, H + 2·padding − h]``)."""
    x = F.pad(frames, (padding, padding, padding, padding)) if padding else frames
    h, w = size
    i = int(torch.randint(0, x.shape[-2] - h + 1, (1,), generator=generator))
    j = int(torch.randint(0, x.shape[-1] - w + 1, (1,), generator=generator))
    return x[..., i : i + h, j : j + w].contiguous()


@dataclass(frozen=True)
class CropAugment:
    """Picklable ``augment`` callable: :func:`random_crop` of ``size = (h, w)`` after
    ``padding`` pixels of zeros, one crop for all frames of a sample."""

    size: tuple[int, int]
    padding: int

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop(frames, self.size, self.padding, generator)
