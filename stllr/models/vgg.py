"""VGG-9 for event-camera classification (``*_vgg_stllr`` / ``*_vgg_bptt``).

The networks of docs/rule.md §10a, §10b:

C(2→64)–C(64→128)–P–C(128→256)–C(256→256)–P–C(256→512)–C(512→512)–P–
C(512→512)–C(512→512)–AdaptiveAvgPool(1)–Linear(512→K), every C a 3×3/1/1
spiking conv with bias (γ = 0.5, θ = 0.6) followed by ``DropoutLIF``; P is
MaxPool2d(2) (:class:`~stllr.layers.pooling.MaxPool2x2`) or AvgPool2d(2) (the BPTT
twin always uses AvgPool). The head is a plain ``nn.Linear``: its per-step output is
the logit. ``channels`` and ``pool_after`` are configurable so that tests can use
narrow versions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stllr.factors import STLLRFactors
from stllr.feedback import FeedbackHook
from stllr.layers.bptt import BPTTLIF, ScaledWSConv2d
from stllr.layers.dropout import DropoutLIF
from stllr.layers.pooling import MaxPool2x2
from stllr.layers.stllr_layers import Conv2dSTLLR
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams

VGG9_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
VGG9_POOL_AFTER = (1, 3, 5)
GESTURE_FACTORS = STLLRFactors(lambda_post=0.2, lambda_pre=0.75, alpha_post=-1.0, alpha_pre=1.0)


def _pool(kind: str) -> nn.Module:
    if kind == "max":
        return MaxPool2x2()
    if kind == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"pooling must be 'max' or 'avg', got {kind!r}")


def _init_head(head: nn.Linear) -> None:
    nn.init.kaiming_normal_(head.weight)
    nn.init.zeros_(head.bias)


class VGGSTLLR(SpikingModel):
    """VGG-9 built from ``Conv2dSTLLR`` layers with optional DFA hooks."""

    family = "stllr"

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (2, 32, 32),
        num_classes: int = 11,
        channels: Sequence[int] = VGG9_CHANNELS,
        pool_after: Sequence[int] = VGG9_POOL_AFTER,
        pooling: str = "max",
        factors: STLLRFactors = GESTURE_FACTORS,
        psi: str = "b",
        dropout: float = 0.0,
        feedback: str = "BP",
        threshold: float = 0.6,
        leak: float = 0.0,
    ):
        super().__init__(input_shape, num_classes)
        lif = LIFParams(leak=leak, threshold=threshold)
        c_in, h, w = input_shape
        self.convs = nn.ModuleList()
        self.drops = nn.ModuleList()
        self.pools = nn.ModuleList()
        self.hooks = nn.ModuleList()
        for i, c_out in enumerate(channels):
            conv = Conv2dSTLLR(c_in, c_out, 3, padding=1, lif=lif, factors=factors, psi=psi)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            self.convs.append(conv)
            self.drops.append(DropoutLIF(dropout))
            if i in pool_after:
                self.pools.append(_pool(pooling))
                h, w = h // 2, w // 2
            else:
                self.pools.append(nn.Identity())
            self.hooks.append(FeedbackHook(num_classes, (c_out, h, w), feedback))
            c_in = c_out
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        _init_head(self.head)
        self.feedback_mode = feedback

    def batch_summed_parameters(self) -> list[nn.Parameter]:
        return list(self.convs.parameters()) if self.feedback_mode != "BP" else []

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        fb = self.feedback_context(target) if self.feedback_mode != "BP" else None
        for conv, drop, pool, hook in zip(
            self.convs, self.drops, self.pools, self.hooks, strict=True
        ):
            x = hook(pool(drop(conv(x))), fb)
        logits = self.head(self.gap(x).flatten(1))
        if fb is not None:
            fb.set_output(logits)
        return logits


class VGGBPTT(SpikingModel):
    """VGG-9 built from ``ScaledWSConv2d`` + ``BPTTLIF`` (AvgPool always)."""

    family = "bptt"

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (2, 32, 32),
        num_classes: int = 11,
        channels: Sequence[int] = VGG9_CHANNELS,
        pool_after: Sequence[int] = VGG9_POOL_AFTER,
        psi: str = "b",
        dropout: float = 0.0,
        threshold: float = 0.6,
        leak: float = 0.0,
    ):
        super().__init__(input_shape, num_classes)
        lif = LIFParams(leak=leak, threshold=threshold)
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for i, c_out in enumerate(channels):
            conv = ScaledWSConv2d(c_in, c_out, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, BPTTLIF(lif, psi=psi), DropoutLIF(dropout)]
            if i in pool_after:
                layers.append(nn.AvgPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        _init_head(self.head)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.gap(self.features(x)).flatten(1))
