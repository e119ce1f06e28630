"""Binning of event recordings into frames, and frame-level transforms.

:func:`validate_events` checks a structured event array against a sensor size;
:func:`events_to_frames` (tonic ``ToFrame``) and :func:`slice_by_time` (tonic
``SliceByTime``) turn events into int16 count frames ``[T, P, H, W]``; :func:`resize_frames`,
:func:`random_crop` and the picklable :class:`CropAugment` work on frame stacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tonic
import torch
import torch.nn.functional as F

from stllr.errors import UserError

#: default of :func:`max_frame_bytes`: float32 frames of one recording (1 GiB)
MAX_FRAME_BYTES = 1 << 30
#: environment variable that changes :data:`MAX_FRAME_BYTES` (a number of bytes)
MAX_FRAME_BYTES_ENV = "STLLR_MAX_FRAME_BYTES"


def max_frame_bytes() -> int:
    """Most bytes the float32 frames ``[T, P, H, W]`` of one recording may take:
    ``$STLLR_MAX_FRAME_BYTES`` if set, else :data:`MAX_FRAME_BYTES`."""
    text = os.environ.get(MAX_FRAME_BYTES_ENV, "").strip()
    if not text:
        return MAX_FRAME_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(
            f"environment variable {MAX_FRAME_BYTES_ENV} = {text!r}; expected a positive "
            "number of bytes (e.g. 4e9)"
        )
    return value


def _size_text(n_bytes: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} bytes"


def frame_count_first_spike(duration_us: int, window_us: float) -> int:
    """tonic's number of complete windows of ``window_us`` in ``duration_us``, at least 1."""
    return max(int((duration_us - window_us) // window_us) + 1, 1)


def frame_memory(n_frames: int, sensor_size: tuple[int, int, int]) -> int:
    """Bytes of ``n_frames`` float32 frames of ``sensor_size = (W, H, P)``."""
    w, h, p = (int(v) for v in sensor_size)
    return int(n_frames) * w * h * p * 4


def check_frame_memory(
    n_frames: int, sensor_size: tuple[int, int, int], where: str, cause: str
) -> None:
    """Raise :class:`~stllr.errors.UserError` naming ``where`` and the numbers when
    ``n_frames`` float32 frames of ``sensor_size`` exceed :func:`max_frame_bytes`;
    ``cause`` says where the frame count comes from and which setting lowers it."""
    need, limit = frame_memory(n_frames, sensor_size), max_frame_bytes()
    if need > limit:
        w, h, p = (int(v) for v in sensor_size)
        raise UserError(
            f"{where}: binning would make {n_frames} frame{'s' * (n_frames != 1)} of "
            f"(P, H, W) = ({p}, {h}, {w}), "
            f"{_size_text(need)} of float32, over the limit of {_size_text(limit)} per "
            f"recording; {cause}, or raise the limit with {MAX_FRAME_BYTES_ENV}=<bytes>"
        )


def frame_count(
    events: np.ndarray,
    *,
    time_window: float | None = None,
    n_time_bins: int | None = None,
    n_event_bins: int | None = None,
) -> int:
    """Frames :func:`events_to_frames` makes of ``events`` (sorted by ``t``, at least one),
    computed from the first and last timestamps without binning."""
    if time_window is not None:
        duration = int(events["t"][-1]) - int(events["t"][0])
        return frame_count_first_spike(duration, time_window)
    bins = n_time_bins if n_time_bins is not None else n_event_bins
    return int(bins or 0)  # none given: tonic's own error follows


def _frame_cause(events: np.ndarray, time_window: float | None) -> str:
    if time_window is None:
        return "lower the number of frames (n_time_bins / n_event_bins) or the sensor size"
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    return (
        f"field 't' spans {t0}..{t1} µs ({t1 - t0} µs) in windows of {time_window:g} µs (an "
        "outlier timestamp?); fix the timestamps or lengthen the frame (time_window / frame_us)"
    )


def validate_events(events: np.ndarray, sensor_size: tuple[int, int, int], where: str) -> None:
    """Raise :class:`~stllr.errors.UserError` naming ``where`` unless ``events`` can be binned.

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

    Raises:
        UserError: the events do not fit ``sensor_size`` or are unsorted
            (:func:`validate_events`), or their frames would exceed :func:`max_frame_bytes`
            (checked before anything is allocated).
    """
    validate_events(events, sensor_size, where)
    n_frames = frame_count(
        events, time_window=time_window, n_time_bins=n_time_bins, n_event_bins=n_event_bins
    )
    check_frame_memory(n_frames, sensor_size, where, _frame_cause(events, time_window))
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
