"""First-spike (FS) and firing-rate (FR) losses of a spiking output layer (docs/first_spike.md).

Shapes: output spikes ``s`` and the output layer's membrane before reset ``v`` are
time-major ``[T, B, K]`` (T steps, B samples, K classes); labels ``y`` ``[B]``. Time is
counted in steps ``k = 1 … T``.

**Spike → time** (:class:`SpikeTimes`)::

    t[k, b, n] = k · s[k, b, n] + (T + X[k, b, n]) · (1 − s[k, b, n])
    X[k, b, n] = r_neuron(b, n) + 0.01 · r_step(k, b, n)

``r_neuron ∈ {1 … K}`` ranks the neurons of a sample by their largest membrane over time
(largest first); ``r_step ∈ {0 … T−1}`` ranks the steps of one neuron by membrane (largest
first). A silent neuron so gets the time ``T + r_neuron`` at its step of highest membrane:
the closer a silent neuron came to firing, the earlier its pseudo-time.

Backward: the time error, scaled by ``−A``, is convolved along time with an unnormalised
Gaussian ``G[j] = exp(−j² / 2σ²)`` of ``σ = ⌊T / D⌋`` and odd length
``L = min(6σ + 1, 2⌊T/2⌋ + 1)`` ("same" padding)::

    ∂L/∂s[k] = Σ_j G[j] · (−A · ∂L/∂t[k + j])

No gradient flows to ``v`` (it only orders silent neurons).

**First-spike time** (:class:`FirstTime`): ``t_first[b, n] = min_k t[k, b, n]``. Backward
sends the error to the arg-min step; a silent neuron (all ``t ≥ T + 1``) receives it at
every step, so the Gaussian spreads it over the whole sequence.

**Losses** (:func:`first_spike_loss`, :func:`firing_rate_loss`)::

    L_FS = CE(softmax(α_FS · (min_n t_first[n] − t_first)), y)
           + λ · mean_b (exp(β · t̃_y) − 1),   t̃_y = t_first[y] if t_first[y] > T else 0
    L_FR = CE(softmax(α_FR · r), y),          r[b, n] = (1/T) Σ_k s[k, b, n]

Predictions: FS ``argmin_n t_first``, FR ``argmax_n r`` (first index on ties).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stllr.padding import step_mask
from stllr.validation import check_float_tensor

#: spacing of the step ranks inside the pseudo-time of a silent neuron
STEP_RANK_SCALE = 0.01


def gaussian_kernel(steps: int, d: int) -> torch.Tensor:
    """The error-spreading kernel ``[L]`` (float32, peak 1) for T = ``steps`` and D = ``d``.

    ``σ = ⌊T / D⌋``, ``L = min(6σ + 1, 2⌊T/2⌋ + 1)``, ``G[i] = exp(−(i − (L−1)/2)² / 2σ²)``.
    ``σ = 0`` (T < D) gives the identity kernel ``[1]``.
    """
    if steps < 1 or d < 1:
        raise ValueError(f"steps and D must be ≥ 1, got {steps} and {d}")
    sigma = steps // d
    if sigma == 0:
        return torch.ones(1)
    length = min(6 * sigma + 1, 2 * (steps // 2) + 1)
    j = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
    return torch.exp(-(j**2) / (2.0 * sigma**2)).float()


def silent_offsets(v: torch.Tensor) -> torch.Tensor:
    """``X[k, b, n] = r_neuron(b, n) + 0.01 · r_step(k, b, n)`` for ``v`` ``[T, B, K]``.

    Ranks come from a stable descending sort (ties: the lower index ranks first).
    """
    steps, batch, k = v.shape
    peak = v.amax(dim=0)  # [B, K]
    order_n = torch.sort(peak, dim=1, descending=True, stable=True).indices
    rank_n = torch.empty_like(peak)
    ranks = torch.arange(1, k + 1, dtype=v.dtype, device=v.device).expand(batch, k)
    rank_n.scatter_(1, order_n, ranks)
    order_t = torch.sort(v, dim=0, descending=True, stable=True).indices
    rank_t = torch.empty_like(v)
    step_ranks = torch.arange(steps, dtype=v.dtype, device=v.device) * STEP_RANK_SCALE
    rank_t.scatter_(0, order_t, step_ranks.view(steps, 1, 1).expand(steps, batch, k))
    return rank_n.unsqueeze(0) + rank_t


def spike_times_forward(s: torch.Tensor, v: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
    """``t[k] = k·s[k] + (T_b + X[k])·(1 − s[k])`` ``[T, B, K]``; ``horizon`` ``[B]`` holds
    each sample's T_b (the padded T for every sample without lengths)."""
    steps = s.shape[0]
    k = torch.arange(1, steps + 1, dtype=s.dtype, device=s.device).view(steps, 1, 1)
    return k * s + (horizon.view(1, -1, 1) + silent_offsets(v)) * (1 - s)


class SpikeTimes(torch.autograd.Function):
    """``(s, v, T_b, kernel, A) → t`` ``[T, B, K]``; backward: ``−A``·error convolved with
    the kernel along time (module docstring)."""

    @staticmethod
    def forward(ctx, s, v, horizon, kernel: torch.Tensor, amplitude: float):
        ctx.kernel = kernel.to(device=s.device, dtype=s.dtype)
        ctx.amplitude = amplitude
        return spike_times_forward(s, v.detach(), horizon)

    @staticmethod
    def backward(ctx, grad_t):
        return spread_time_error(grad_t, ctx.kernel, ctx.amplitude), None, None, None, None


def spread_time_error(grad_t: torch.Tensor, kernel: torch.Tensor, amplitude: float):
    """``∂L/∂s[k] = Σ_j G[j]·(−A·∂L/∂t[k + j])`` for ``grad_t`` ``[T, B, K]`` ("same"
    padding: steps outside ``1 … T`` contribute nothing)."""
    steps, batch, k = grad_t.shape
    g = (-amplitude * grad_t).permute(1, 2, 0).reshape(1, batch * k, steps)
    w = kernel.view(1, 1, -1).expand(batch * k, 1, -1)
    pad = (kernel.numel() - 1) // 2
    out = F.conv1d(g, w, padding=pad, groups=batch * k)
    return out.reshape(batch, k, steps).permute(2, 0, 1)


class FirstTime(torch.autograd.Function):
    """``(t [T, B, K], mask [T, B]) → t_first = min_k t`` ``[B, K]``; backward to the
    arg-min step, or to every step of the sample (``mask`` 1) for a silent neuron (its
    ``t_first ≥ T_b + 1``)."""

    @staticmethod
    def forward(ctx, t, mask, horizon):
        first, index = t.min(dim=0)
        ctx.save_for_backward(first, index, mask, horizon)
        return first

    @staticmethod
    def backward(ctx, grad_first):
        first, index, mask, horizon = ctx.saved_tensors
        steps = mask.shape[0]
        shape = (steps, *first.shape)
        grad = grad_first.new_zeros(shape).scatter_(0, index.unsqueeze(0), grad_first.unsqueeze(0))
        silent = (first >= horizon.view(-1, 1) + 1).unsqueeze(0)
        spread = grad_first.unsqueeze(0) * mask.unsqueeze(-1)
        return torch.where(silent, spread, grad), None, None


def first_spike_times(
    s: torch.Tensor,
    v: torch.Tensor,
    d: int = 16,
    amplitude: float = 200.0,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``t_first`` ``[B, K]`` of output spikes ``s`` and membranes ``v`` ``[T, B, K]``,
    differentiable in ``s`` (:class:`SpikeTimes` then :class:`FirstTime`; D, A as there).

    ``lengths`` ``[B]`` (steps of each sample before zero padding): sample b is read over its
    own ``T_b`` steps only (later spikes and membranes are ignored, ``T_b`` replaces T in the
    pseudo-time of silent neurons); the kernel's σ uses the padded T.
    """
    check_float_tensor("s", s)
    if s.dim() != 3 or v.shape != s.shape:
        raise ValueError(f"s and v must both be [T, B, K], got {list(s.shape)}, {list(v.shape)}")
    steps, batch = s.shape[:2]
    if lengths is None:
        lengths = torch.full((batch,), steps, device=s.device)
    horizon = lengths.to(device=s.device, dtype=s.dtype)
    mask = step_mask(lengths, steps, s.dtype).to(s.device)  # [T, B]
    if not bool(mask.all()):
        s = s * mask.unsqueeze(-1)
        v = v.masked_fill(mask.unsqueeze(-1) == 0, -math.inf)
    kernel = gaussian_kernel(steps, d)
    t = SpikeTimes.apply(s, v, horizon, kernel, float(amplitude))
    return FirstTime.apply(t, mask, horizon)


def first_spike_loss(
    t_first: torch.Tensor,
    y: torch.Tensor,
    steps: int | torch.Tensor,
    alpha: float = 0.2,
    lam: float = 0.0,
    beta: float = 0.0,
) -> torch.Tensor:
    """``L_FS`` (module docstring) of ``t_first`` ``[B, K]`` and labels ``y`` ``[B]``;
    ``steps`` = T (an int, or ``[B, 1]`` per-sample T_b). ``lam = 0`` leaves out the
    regulariser (evaluation)."""
    logits = alpha * (t_first.min(dim=1, keepdim=True).values - t_first)
    loss = F.cross_entropy(logits, y)
    if lam:
        t_label = t_first.gather(1, y.view(-1, 1))
        late = torch.where(t_label > steps, t_label, torch.zeros_like(t_label))
        loss = loss + lam * (torch.exp(beta * late) - 1).mean()
    return loss


def firing_rates(s: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``r[b, n] = (1/T_b) Σ_{k ≤ T_b} s[k, b, n]`` ``[B, K]`` (T_b = T without lengths)."""
    if lengths is None:
        return s.mean(dim=0)
    steps = s.shape[0]
    mask = step_mask(lengths, steps, s.dtype).to(s.device).unsqueeze(-1)
    return (s * mask).sum(dim=0) / lengths.to(device=s.device, dtype=s.dtype).view(-1, 1)


def firing_rate_loss(rate: torch.Tensor, y: torch.Tensor, alpha: float = 20.0) -> torch.Tensor:
    """``L_FR = CE(α·r, y)`` of the rates ``r`` ``[B, K]`` (:func:`firing_rates`)."""
    return F.cross_entropy(alpha * rate, y)


def fs_prediction(t_first: torch.Tensor) -> torch.Tensor:
    """``argmin_n t_first`` ``[B]`` (first index on ties)."""
    return t_first.argmin(dim=1)


def fr_prediction(rate: torch.Tensor) -> torch.Tensor:
    """``argmax_n r`` ``[B]`` (first index on ties)."""
    return rate.argmax(dim=1)
