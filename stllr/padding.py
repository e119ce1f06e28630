"""Zero padding of variable-length samples, and scoring each sample over its own steps.

Samples ``[T_i, ...]`` are batched time-major and zero-padded at the end to the longest
(:func:`pad_time`, :func:`stack_samples`, which also gives the lengths ``T_i``). A model
keeps running on the padding (its hidden layers still fire, its readout still leaks), so
a score summed over all ``T_max`` steps depends on which samples share the batch. The
evaluation therefore sums sample b's outputs over ``t < T_b`` only (:func:`step_mask`,
:func:`masked_step`, :func:`sum_over_lengths`): exactly what the sample scores when it
runs alone, unpadded (the models are causal and the samples of a batch independent).
The float model, the integer emulator and the Lava runs all score this way.
"""

from __future__ import annotations

import torch


def pad_time(samples: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[T_i, *shape]`` samples into ``[T_max, B, *shape]``, zero-padded at the end."""
    steps = max(s.shape[0] for s in samples)
    out = samples[0].new_zeros((steps, len(samples), *samples[0].shape[1:]))
    for i, s in enumerate(samples):
        out[: s.shape[0], i] = s
    return out


def stack_samples(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[(frames [T_i, ...], label)]`` → ``(x [T_max, B, ...]`` zero-padded at the end,
    labels ``[B]``, lengths ``[B]`` (each sample's T_i, the steps that are not padding))."""
    frames = [x for x, _ in items]
    lengths = torch.tensor([x.shape[0] for x in frames])
    return pad_time(frames), torch.tensor([int(y) for _, y in items]), lengths


def step_mask(lengths: torch.Tensor, steps: int, dtype=torch.bool) -> torch.Tensor:
    """``[steps, B]``: 1 where step t is one of sample b's own steps (``t < lengths[b]``), 0
    on the zero padding after its end."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.is_floating_point() or bool((lengths < 0).any()):
        raise ValueError(f"lengths must be a 1-d tensor of step counts ≥ 0, got {lengths}")
    if lengths.numel() and int(lengths.max()) > steps:
        raise ValueError(f"lengths {lengths.tolist()} exceed the batch's {steps} steps")
    t = torch.arange(steps, device=lengths.device)
    return (t[:, None] < lengths[None, :]).to(dtype)


def sum_over_lengths(values: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``Σ_{t < len_b} values[t, b]`` of per-step outputs ``[T, B, ...]`` (all T steps
    without ``lengths``): each sample's total over its own steps, padding left out."""
    values = torch.as_tensor(values)
    if lengths is None:
        return values.sum(0)
    mask = step_mask(lengths, values.shape[0], values.dtype)
    return (values * mask.view(*mask.shape, *([1] * (values.dim() - 2)))).sum(0)


def masked_step(out: torch.Tensor, mask: torch.Tensor | None, t: int) -> torch.Tensor:
    """Step t's outputs ``[B, ...]`` with the samples that ``mask[t]`` ``[B]`` marks 0 zeroed
    (``out`` itself without a mask)."""
    if mask is None:
        return out
    return out * mask[t].view(-1, *([1] * (out.dim() - 1)))
