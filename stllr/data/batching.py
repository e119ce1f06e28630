"""Batching of frame samples: :func:`pad_collate` and :func:`make_loader`.

Frames are float32 throughout; :func:`pad_collate` stacks samples time-major
``[T_max, B, C, H, W]``, zero-padding shorter samples at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stllr.padding import pad_time


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples time-major: ``x [T_max, B, *S]`` float32, ``y [B]`` long.

    Each sample is ``(frames [T_i, *S], label)``; shorter samples are zero-padded at the
    end (tonic's ``PadTensors(batch_first=True)`` followed by a transpose).
    """
    if len(batch) == 0:
        raise ValueError("pad_collate needs at least one (frames, label) sample")
    frames = [torch.as_tensor(f) for f, _ in batch]
    shapes = [tuple(f.shape) for f in frames]
    if any(len(s) < 1 for s in shapes) or len({s[1:] for s in shapes}) != 1:
        raise ValueError(
            f"pad_collate needs samples [T_i, *S] with one trailing shape S, got {shapes}"
        )
    x = pad_time([f.to(torch.float32) for f in frames])
    y = torch.tensor([int(label) for _, label in batch], dtype=torch.long)
    return x, y


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader with :func:`pad_collate` (and a seeded shuffle when ``seed`` is given)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=pad_collate,
        generator=generator,
    )
