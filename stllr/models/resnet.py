"""Spiking ResNet-18 (``ResNet_STDP`` / ``ResNet_BPTT`` of the reference), docs/rule.md §10c.

Stem: spiking 3×3 conv → 64, AvgPool 2. Four stages of 2 BasicBlocks with
``widths`` (64, 128, 256, 512) and strides (1, 2, 2, 2). A block is two spiking 3×3
convs; the shortcut is a spiking 1×1 conv when the shape changes, else the
identity, and the block output is ``body + shortcut`` (a sum of spikes). Then
global average pooling and ``Linear(512 → K)``. γ = 0.5, θ = 0.6.

With S-TLLR layers the learning signal reaches both branches at the same step
(autograd sums them at the addition); nothing flows through time. The BPTT twin
uses ``ScaledWSConv2d`` + ``BPTTLIF``. Only the BP learning signal is supported
(the reference gives no DFA shapes for ResNets).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stllr.factors import STLLRFactors
from stllr.layers.bptt import BPTTLIF, ScaledWSConv2d
from stllr.layers.stllr_layers import Conv2dSTLLR
from stllr.models.base import SpikingModel
from stllr.models.vgg import GESTURE_FACTORS
from stllr.neuron import LIFParams

RESNET18_WIDTHS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)


class _SpikingConvBPTT(nn.Module):
    def __init__(self, c_in, c_out, k, stride, lif, psi):
        super().__init__()
        self.conv = ScaledWSConv2d(c_in, c_out, k, stride=stride, padding=k // 2)
        self.lif = BPTTLIF(lif, psi=psi)

    def forward(self, x):
        return self.lif(self.conv(x))


def _conv(family: str, c_in, c_out, k, stride, lif, factors, psi) -> nn.Module:
    if family == "bptt":
        return _SpikingConvBPTT(c_in, c_out, k, stride, lif, psi)
    return Conv2dSTLLR(
        c_in, c_out, k, stride=stride, padding=k // 2, lif=lif, factors=factors, psi=psi
    )


class BasicBlock(nn.Module):
    """``out = s(conv2(s(conv1(x)))) + shortcut(x)``, shortcut a spiking 1×1 conv if needed."""

    def __init__(self, family, c_in, c_out, stride, lif, factors, psi):
        super().__init__()
        self.conv1 = _conv(family, c_in, c_out, 3, stride, lif, factors, psi)
        self.conv2 = _conv(family, c_out, c_out, 3, 1, lif, factors, psi)
        self.shortcut = (
            _conv(family, c_in, c_out, 1, stride, lif, factors, psi)
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.shortcut(x)


class SpikingResNet18(SpikingModel):
    """ResNet-18 of S-TLLR (``family="stllr"``) or BPTT (``family="bptt"``) spiking convs."""

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (2, 32, 32),
        num_classes: int = 11,
        family: str = "stllr",
        widths: Sequence[int] = RESNET18_WIDTHS,
        factors: STLLRFactors = GESTURE_FACTORS,
        psi: str = "b",
        feedback: str = "BP",
        threshold: float = 0.6,
        leak: float = 0.0,
    ):
        super().__init__(input_shape, num_classes)
        if family not in ("stllr", "bptt"):
            raise ValueError(f"family must be 'stllr' or 'bptt', got {family!r}")
        if feedback != "BP":
            raise ValueError(f"ResNet-18 supports only the BP learning signal, got {feedback!r}")
        if len(widths) != 4:
            raise ValueError(f"widths must give the 4 stage widths, got {tuple(widths)}")
        self.family = family
        lif = LIFParams(leak=leak, threshold=threshold)
        self.stem = _conv(family, input_shape[0], widths[0], 3, 1, lif, factors, psi)
        self.pool = nn.AvgPool2d(2)
        blocks = []
        c_in = widths[0]
        for width, stride in zip(widths, STRIDES, strict=True):
            blocks += [
                BasicBlock(family, c_in, width, stride, lif, factors, psi),
                BasicBlock(family, width, width, 1, lif, factors, psi),
            ]
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, (Conv2dSTLLR, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        x = self.blocks(self.pool(self.stem(x)))
        return self.head(self.gap(x).flatten(1))
