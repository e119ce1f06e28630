"""The float network's per-node operations, for the Lava ``floating_pt`` models and the exporter.

Torch only (no Lava), so the exporter can evaluate output shapes before Lava is
imported. Everything is a thin call into :mod:`stllr` or ``torch.nn.functional``,
the functions the torch task models themselves run (each formula written once, reused):

* :func:`synapse_ops` — stllr's :class:`~stllr.synapse_ops.DenseOps` /
  :class:`~stllr.synapse_ops.Conv2dOps` (``current`` and ``weight_grad``);
* :func:`pool2d` — ``F.max_pool2d`` / ``F.avg_pool2d`` (what ``nn.MaxPool2d`` and
  ``nn.AvgPool2d`` call), or a plain window sum;
* :func:`global_pool` — ``F.adaptive_avg_pool2d(x, 1)`` (the models' ``gap``), or a sum;
* :func:`weight_gradient` — the fast S-TLLR weight gradient of
  :mod:`stllr.functional.stllr_step`, ``α_pre Σ_b (δ⊙Ψ)ᵀ·P + α_post Σ_b (δ⊙Q[t−1])ᵀ·x``,
  built by the same helper its autograd backward uses.

Arrays cross the Lava ports one sample at a time without a batch axis; :func:`batch`
adds a batch axis of 1 (float64) and :func:`sample` removes it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stllr.factors import STLLRFactors
from stllr.functional.stllr_step import stacked_operands
from stllr.synapse_ops import Conv2dOps, ConvTranspose2dOps, DenseOps, SynapseOps

#: What the float models compute in (and what their Vars and ports hold).
FLOAT_DTYPE = np.float64


@dataclass(frozen=True)
class FloatLearning:
    """On-device S-TLLR of a float node: ``W ← W − lr · ∂/∂W`` after every step.

    ``factors`` are the S-TLLR constants. A readout learns as an S-TLLR synapse with
    Ψ ≡ 1 and no post term (its ``factors`` are ``α_pre = 1, α_post = 0`` and the
    readout's ``λ_pre``), which makes its update ``−lr · Lᵀ·P`` (``AccumulateStep``).
    """

    lr: float
    factors: STLLRFactors

    def __post_init__(self) -> None:
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr):
            raise ValueError(f"FloatLearning.lr must be a finite number, got {self.lr!r}")

    @classmethod
    def readout(cls, lr: float, lambda_pre: float) -> FloatLearning:
        return cls(float(lr), STLLRFactors(0.0, float(lambda_pre), 0.0, 1.0))


def tensor(a) -> torch.Tensor:
    """A numpy array (a weight, a bias) as a float64 tensor (sharing memory where it can)."""
    return torch.from_numpy(np.asarray(a, dtype=FLOAT_DTYPE))


def batch(a) -> torch.Tensor:
    """One sample (numpy, any shape) → a float64 tensor with a batch axis of 1."""
    return torch.from_numpy(np.asarray(a, dtype=FLOAT_DTYPE))[None]


def sample(t: torch.Tensor) -> np.ndarray:
    """A batch-of-1 tensor → the float64 numpy sample."""
    return t[0].detach().cpu().numpy().astype(FLOAT_DTYPE, copy=True)


def synapse_ops(kind: str, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) -> SynapseOps:
    """stllr's connectivity for a dense, conv or transposed-conv (``deconv``: Ŵ ``[C_out,
    C_in, k, k]``, no output padding, one group) layer."""
    if kind == "dense":
        return DenseOps()
    if kind == "conv":
        return Conv2dOps(tuple(stride), tuple(padding), tuple(dilation), int(groups))
    if kind == "deconv":
        if tuple(dilation) != (1, 1) or int(groups) != 1:
            raise ValueError("a float deconv layer has no dilation and one group")
        return ConvTranspose2dOps(tuple(stride), tuple(padding))
    raise ValueError(f"kind must be 'dense', 'conv' or 'deconv', got {kind!r}")


def pixels_as_batch(x: torch.Tensor) -> torch.Tensor:
    """``[1, C, H, W] → [H·W, C]``: a 1×1 convolution is a dense layer over the pixels."""
    return x[0].flatten(1).t()


def pixels_back(y: torch.Tensor, like_hw) -> torch.Tensor:
    """The inverse of :func:`pixels_as_batch`: ``[H·W, K] → [1, K, H, W]``."""
    return y.t().reshape(1, -1, *like_hw)


def upsample_bilinear2x(x: torch.Tensor) -> torch.Tensor:
    """The float graph's ``Upsample2x``: PyTorch's ×2 bilinear (``align_corners=False``)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def concat_scaled(a: torch.Tensor, b: torch.Tensor, shifts=(0, 0)) -> torch.Tensor:
    """``[a·2^shifts[0], b·2^shifts[1]]`` along channels (the integer ``Concat``)."""
    sa, sb = (int(s) for s in shifts)
    return torch.cat([a * 2.0**sa if sa else a, b * 2.0**sb if sb else b], dim=1)


def pool2d(x: torch.Tensor, mode: str, kernel: int) -> torch.Tensor:
    """Non-overlapping ``kernel × kernel`` pooling of ``[B, C, H, W]``: max, average or sum."""
    if mode == "max":
        return F.max_pool2d(x, kernel)
    if mode == "avg":
        return F.avg_pool2d(x, kernel)
    if mode == "sum":
        return F.avg_pool2d(x, kernel, divisor_override=1)
    raise ValueError(f"pool mode must be 'max', 'avg' or 'sum', got {mode!r}")


def global_pool(x: torch.Tensor, average: bool) -> torch.Tensor:
    """``[B, C, H, W] → [B, C]``: the mean (the models' ``AdaptiveAvgPool2d(1)``) or the sum."""
    if average:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    return x.sum(dim=(2, 3))


def add_scaled(a: torch.Tensor, b: torch.Tensor, shifts=(0, 0)) -> torch.Tensor:
    """``a·2^shifts[0] + b·2^shifts[1]`` (the integer graph's ``(a << s0) + (b << s1)``)."""
    sa, sb = (int(s) for s in shifts)
    return (a * 2.0**sa if sa else a) + (b * 2.0**sb if sb else b)


def weight_gradient(
    ops: SynapseOps,
    factors: STLLRFactors,
    signal: torch.Tensor,
    psi: torch.Tensor | None,
    q_prev: torch.Tensor | None,
    trace: torch.Tensor,
    x: torch.Tensor,
    w_shape,
) -> torch.Tensor:
    """The S-TLLR weight gradient of one step with the upstream gradient δ = ``signal``.

    ``g = Ψ ⊙ δ`` (``psi=None``: Ψ ≡ 1); ``trace`` is P[t] (or R[t]) and ``x`` the input
    of this step (or s[t−1]); the result is ``α_pre Σ_b gᵀ·trace + α_post Σ_b (δ ⊙
    Q[t−1])ᵀ·x``, exactly what ``STLLRStep.backward`` returns for Ŵ.
    """
    g = signal if psi is None else psi * signal
    post, pre = stacked_operands(factors, g, signal, q_prev, trace, x)
    return ops.weight_grad(post, pre, torch.Size(w_shape))


__all__ = [
    "FLOAT_DTYPE",
    "FloatLearning",
    "add_scaled",
    "batch",
    "concat_scaled",
    "global_pool",
    "pixels_as_batch",
    "pixels_back",
    "pool2d",
    "sample",
    "synapse_ops",
    "tensor",
    "upsample_bilinear2x",
    "weight_gradient",
]
