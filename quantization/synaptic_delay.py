"""Synaptic delays of a dense spiking layer: the delay line that holds ``W·x`` back.

A layer with integer delays ``d_ij`` in ``0 … DELAY_MAX`` (``D`` ``[out, in]``, Lava's
``DelayDense`` and netx's ``delay`` field, docs/lava.md §5) feeds its neurons::

    a_i[t] = Σ_j W_ij · x_j[t − δ − d_ij]

where ``δ`` is the host's own synaptic delay (0 in the emulator's default timing, 1 on
Lava's ``Dense``/``DelayDense``: a delay of 0 arrives the next step). The layer keeps a
*delay line* ``L`` ``[*batch, out, K]``: column ``k`` holds what reaches the neurons
``k`` steps from now. Per step::

    L[..., i, k] += C_k[..., i]          (what this step's input sends with delay k)
    a[t]          = L[..., :, 0]
    L            ← L shifted one column left, a zero column appended

Two ways to fill ``C``:

* **axonal** (every synapse of output ``i`` has the same delay ``d_i``, as slayer's
  per-neuron ``delay`` is stored): ``C`` is the host's ``W·x`` (already ``δ`` late) put in
  column ``d_i`` of row ``i``; ``K = max d + 1``;
* **per synapse**: for each delay value ``k`` present, ``C_{k+δ} = (W ⊙ [D = k])·x[t]``
  from the undelayed input; ``K = max d + δ + 1``.

Both are exact integer sums (each synapse contributes once, so ``|a|`` keeps the
layer's bound ``max_i Σ_j |W_ij|·max|x|``). Functions here are pure and work on torch
tensors (the batched emulator) and numpy arrays (one Lava process) alike.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

#: the largest delay netx loads (it clamps larger ones) and Lava's DelayDense takes
DELAY_MAX = 62


class DelayPlan(NamedTuple):
    """How a delay matrix is applied: ``axonal`` ``[out]`` (every row constant) or, when
    ``None``, the distinct ``values`` with their ``masks`` ``[out, in]`` (bool)."""

    axonal: np.ndarray | None
    values: tuple[int, ...]
    masks: tuple[np.ndarray, ...]
    max_delay: int


def check_delays(delay, out_features: int, in_features: int, where: str) -> None:
    """``ValueError`` naming ``where`` unless ``delay`` is an integer ``[out, in]`` array in
    ``0 … DELAY_MAX``."""
    d = np.asarray(delay)
    if d.shape != (out_features, in_features):
        raise ValueError(
            f"{where}: delay has shape {list(d.shape)}, expected [{out_features}, {in_features}]"
        )
    if d.size and (d.min() < 0 or d.max() > DELAY_MAX):
        raise ValueError(
            f"{where}: delays span [{int(d.min())}, {int(d.max())}], expected 0 … {DELAY_MAX}"
        )


def delay_plan(delay) -> DelayPlan:
    """The :class:`DelayPlan` of an integer ``[out, in]`` delay matrix."""
    d = np.asarray(delay, dtype=np.int64)
    top = int(d.max()) if d.size else 0
    if d.shape[1] == 0 or np.all(d == d[:, :1]):
        return DelayPlan(d[:, 0].copy() if d.shape[1] else np.zeros(d.shape[0], np.int64),
                         (), (), top)  # fmt: skip
    values = tuple(int(k) for k in np.unique(d))
    return DelayPlan(None, values, tuple(d == k for k in values), top)


def line_length(plan: DelayPlan, host_delay: int) -> int:
    """Columns ``K`` of the delay line (module docstring)."""
    return plan.max_delay + 1 + (0 if plan.axonal is not None else host_delay)


def _zeros(like, shape):
    if isinstance(like, torch.Tensor):
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=np.asarray(like).dtype)


def _onehot(like, rows: np.ndarray, k: int):
    eye = np.zeros((rows.shape[0], k), dtype=np.int64)
    eye[np.arange(rows.shape[0]), rows] = 1
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(eye, dtype=like.dtype, device=like.device)
    return eye.astype(np.asarray(like).dtype)


def _as_mask(like, mask: np.ndarray):
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(mask, device=like.device)
    return mask


def delay_step(plan: DelayPlan, line, a_host, x, weight, host_delay: int, masked_sum):
    """One step of the delay line: ``(a[t], new line)``.

    ``a_host`` is the host's ``W·x`` of this step (``δ`` late), ``x`` the undelayed input,
    ``weight`` the layer's weights in the host's array type and ``masked_sum(w, x)`` the
    layer's synaptic sum for a masked weight (used only for per-synapse delays). ``line``
    ``None`` is the zero line (a sample's first step)."""
    k = line_length(plan, host_delay)
    if line is None:
        line = _zeros(a_host, (*a_host.shape, k))
    if plan.axonal is not None:
        sent = a_host[..., None] * _onehot(a_host, plan.axonal, k)
    else:
        sent = _zeros(a_host, (*a_host.shape, k))
        for value, mask in zip(plan.values, plan.masks, strict=True):
            w = weight * _as_mask(weight, mask)
            sent[..., value + host_delay] = masked_sum(w, x)  # exact integers, a's dtype
    line = line + sent
    a = line[..., 0]
    tail = _zeros(a_host, (*a_host.shape, 1))
    if isinstance(line, torch.Tensor):
        return a, torch.cat([line[..., 1:], tail], dim=-1)
    return a, np.concatenate([line[..., 1:], tail], axis=-1)
