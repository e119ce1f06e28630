"""A feed-forward chain of S-TLLR spiking layers: the smallest model the toolkit trains,
quantizes and exports.

Per step ``t``::

    s_0[t] = x[t]                      [B, *input_shape]
    s_l[t] = layer_l(s_{l−1}[t])       l = 1 … L  (LinearSTLLR, RecurrentLinearSTLLR, Conv2dSTLLR)
    output = s_L[t]                    [B, N_L], the last layer's spikes (no readout)

A dense layer whose input has more than one feature dimension (after a conv layer, or a
``[C, H, W]`` input) reads it flattened row-major, ``[B, C·H·W]``. The quantized graph
(``quantization.convert``) holds one node per layer, named ``f"{prefix}{l − 1}"``.

The hardware tests, the netx tests and the emulator benchmark build their networks from
it: hard-reset chains are what Lava's built-in ``Dense``/``Conv``/``LIF`` run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams


class SpikingChain(SpikingModel):
    """``layers`` applied in order; ``num_classes`` defaults to the last layer's width."""

    def __init__(
        self,
        input_shape: Sequence[int],
        layers: Sequence[nn.Module],
        num_classes: int | None = None,
        prefix: str = "fc",
    ):
        if not layers:
            raise ValueError("SpikingChain needs at least one layer")
        last = layers[-1]
        if num_classes is None:
            num_classes = last.out_channels if isinstance(last, Conv2dSTLLR) else last.out_features
        super().__init__(tuple(input_shape), num_classes)
        self.layers = nn.ModuleList(layers)
        self.prefix = prefix

    @classmethod
    def dense(
        cls, sizes: Sequence[int], lifs: LIFParams | Sequence[LIFParams], prefix: str = "fc"
    ) -> SpikingChain:
        """``LinearSTLLR`` layers ``sizes[0] → sizes[1] → … → sizes[-1]``; ``lifs`` is one
        :class:`LIFParams` for every layer or one per layer."""
        n = len(sizes) - 1
        lifs = [lifs] * n if isinstance(lifs, LIFParams) else list(lifs)
        if n < 1 or len(lifs) != n:
            raise ValueError(f"SpikingChain.dense: {len(sizes)} sizes need {n} LIFParams")
        pairs = zip(sizes[:-1], sizes[1:], lifs, strict=True)
        return cls((sizes[0],), [LinearSTLLR(i, o, lif=p) for i, o, p in pairs], prefix=prefix)

    def node_names(self) -> list[str]:
        """The names of the layers' nodes in the quantized graph, in order."""
        return [f"{self.prefix}{i}" for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            if not isinstance(layer, Conv2dSTLLR) and x.dim() > 2:
                x = x.flatten(1)
            x = layer(x)
        return x
