"""Networks with a spiking output layer, for first-spike / firing-rate read-outs
(docs/first_spike.md, "Networks"), trained with BPTT.

Per step ``x[t]`` ``[B, *input_shape]`` → output spikes ``s[t]`` ``[B, K]``; after the step
``output_membrane()`` gives the output layer's potential before reset. The layouts follow
the reference repository's networks (bias-free layers, Xavier-uniform weights):

* ``fs_fc`` (FCNet): ``Linear → neuron → dropout`` per hidden size, then ``Linear → out``.
* ``fs_gesture`` (DVSGestureNet): conv3×3 C→c0, conv3×3 c0→c1, maxpool2, conv3×3 c1→c2,
  maxpool2 (a neuron after each), recurrent FC → h, ``Linear → out``.
* ``fs_plane`` (DVSPlaneNet): conv5×5/2 C→c0, conv3×3 c0→c1, maxpool2, conv3×3 c1→c2,
  maxpool2, recurrent FC → h, ``Linear → out``.

Recurrent FC: ``s_h[t] = neuron(W x[t] + R s_h[t−1])``. The neuron kinds come from
:mod:`stllr.models.neuron_kinds` (hidden ``spec``, output ``out_spec``).
"""

from __future__ import annotations

import torch
from torch import nn

from stllr.layers.dropout import DropoutLIF
from stllr.models.base import SpikingModel
from stllr.models.neuron_kinds import NeuronSpec, make_neuron

FC_HIDDEN = (256, 256)
GESTURE_CHANNELS = (64, 128, 128)
GESTURE_HIDDEN = (128,)
PLANE_CHANNELS = (32, 64, 128)
PLANE_HIDDEN = (256,)
#: default neurons: hidden (τ = 5, θ = 0.5) and output (τ = 60, θ = 1)
HIDDEN_SPEC = NeuronSpec()
OUT_SPEC = NeuronSpec(tau_mem=60.0, tau_syn=60.0, threshold=1.0)


class SpikingOutputNet(SpikingModel):
    """Base: a body (hidden layers) and a spiking output layer; counts hidden spikes."""

    family = "bptt"

    def __init__(self, input_shape, num_classes, out_in: int, out_spec: NeuronSpec, psi: str):
        super().__init__(input_shape, num_classes)
        self.out = nn.Linear(out_in, num_classes, bias=False)
        self.out_neuron = make_neuron(out_spec, psi, "out_neuron", num_classes)
        self._hidden_spikes: torch.Tensor | None = None
        self.hidden_neurons = 0

    @property
    def hidden_spikes(self) -> float:
        """Spikes of the hidden layers summed over the batch and the steps since reset."""
        return 0.0 if self._hidden_spikes is None else float(self._hidden_spikes)

    def reset_state(self) -> None:
        super().reset_state()
        self._hidden_spikes = None

    def _count(self, s: torch.Tensor) -> torch.Tensor:
        total = s.detach().sum()  # kept on the device: no synchronisation per step
        self._hidden_spikes = total if self._hidden_spikes is None else self._hidden_spikes + total
        return s

    def body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.out_neuron(self.out(self.body(x)))

    def output_membrane(self) -> torch.Tensor:
        """The output potential before reset of the last step ``[B, K]``."""
        return self.out_neuron.membrane


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class FSFCNet(SpikingOutputNet):
    """``fs_fc``: feed-forward hidden layers of ``spec`` neurons, dropout ``p`` after each."""

    def __init__(
        self,
        num_inputs: int,
        num_classes: int,
        hidden: tuple[int, ...] = FC_HIDDEN,
        spec: NeuronSpec = HIDDEN_SPEC,
        out_spec: NeuronSpec = OUT_SPEC,
        dropout: float = 0.0,
        psi: str = "e",
    ):
        super().__init__((num_inputs,), num_classes, hidden[-1], out_spec, psi)
        sizes = (num_inputs, *hidden)
        self.fc = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.neurons = nn.ModuleList(make_neuron(spec, psi, "neuron", h) for h in hidden)
        self.drop = nn.ModuleList(DropoutLIF(dropout, rescale=True) for _ in hidden)
        self.hidden_neurons = sum(hidden)
        _xavier(self)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        for fc, neuron, drop in zip(self.fc, self.neurons, self.drop, strict=True):
            x = drop(self._count(neuron(fc(x))))
        return x


class FSConvNet(SpikingOutputNet):
    """``fs_gesture`` / ``fs_plane``: three convolutions, two pooling stages, one recurrent
    FC layer (module docstring); ``first`` = (kernel, stride, padding) of the first conv."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        channels: tuple[int, int, int],
        hidden: int,
        first: tuple[int, int, int] = (3, 1, 1),
        spec: NeuronSpec = HIDDEN_SPEC,
        out_spec: NeuronSpec = OUT_SPEC,
        psi: str = "e",
    ):
        super().__init__(tuple(input_shape), num_classes, hidden, out_spec, psi)
        c_in, h, w = input_shape
        c0, c1, c2 = channels
        k, stride, pad = first
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(c_in, c0, k, stride, pad, bias=False),
                nn.Conv2d(c0, c1, 3, 1, 1, bias=False),
                nn.Conv2d(c1, c2, 3, 1, 1, bias=False),
            ]
        )
        self.pool = nn.MaxPool2d(2)
        self.neurons = nn.ModuleList(  # five feature maps, then the recurrent FC layer
            [*(make_neuron(spec, psi, "neuron") for _ in range(5)),
             make_neuron(spec, psi, "neuron", hidden)]
        )  # fmt: skip
        h0, w0 = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        flat = c2 * (h0 // 4) * (w0 // 4)
        if flat == 0:
            raise ValueError(f"input {list(input_shape)} is too small for two 2×2 poolings")
        self.fc = nn.Linear(flat, hidden, bias=False)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        half, quarter = (h0 // 2) * (w0 // 2), (h0 // 4) * (w0 // 4)
        self.hidden_neurons = (c0 + c1) * h0 * w0 + (c1 + c2) * half + c2 * quarter + hidden
        self._prev: torch.Tensor | None = None
        _xavier(self)

    def reset_state(self) -> None:
        super().reset_state()
        self._prev = None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        n = iter(self.neurons)
        x = self._count(next(n)(self.convs[0](x)))
        x = self._count(next(n)(self.convs[1](x)))
        x = self._count(next(n)(self.pool(x)))
        x = self._count(next(n)(self.convs[2](x)))
        x = self._count(next(n)(self.pool(x))).flatten(1)
        current = self.fc(x)
        if self._prev is not None:
            current = current + self.rec(self._prev)
        self._prev = self._count(next(n)(current))
        return self._prev


def conv_layout(arch: str) -> tuple[tuple[int, int, int], tuple[int, ...], tuple[int, int, int]]:
    """(default channels, default hidden sizes, first conv) of ``fs_gesture``/``fs_plane``."""
    if arch == "fs_plane":
        return PLANE_CHANNELS, PLANE_HIDDEN, (5, 2, 2)
    return GESTURE_CHANNELS, GESTURE_HIDDEN, (3, 1, 1)
