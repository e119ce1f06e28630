"""The quantized network: a small graph of integer nodes, saved and loaded as plain data.

A :class:`QNetwork` is an ordered list of nodes; each names its inputs (``"input"`` is
the network input) and every node's output is an integer tensor ``[B, ...]`` whose
float value is ``mantissa × scale`` (spikes: scale 1; a sum-pool of spikes:
``1/k²``). A consumer folds its input's scale into its own weights at quantization
time, so no node multiplies by a float at run time.

Node kinds (each a frozen dataclass in its own module of :mod:`quantization.nodes`, with
its step; re-exported here):

``SpikingLayer``  dense or conv synapses + the integer LIF of :mod:`quantization.loihi`
                  (``du = 4095``, soft or hard reset); optional recurrent dense weights;
                  optional :class:`~quantization.learning_formats.LearningSpec`.
``Readout``       dense synapses into a non-spiking leaky integrator whose state is the
                  logit (``dv = 4096`` removes the leak entirely).
``Pool``          ``max`` or ``sum`` over k×k windows.
``GlobalSumPool`` sum over all positions ``[B, C, H, W] → [B, C]``.
``Add``           elementwise sum of its inputs (residual blocks).
``Concat``        channel concatenation of its inputs (decoder skip paths).
``Upsample2x``    fixed ×2 bilinear up-sampling, ``16 × bilinear`` (a graded map).
``Flatten``       ``[C, H, W] → [C·H·W]`` (a dense layer after convolutions).

Units: a layer with weight exponent ``e`` holds ``W ≈ m·2^e``; its membrane ``v`` is in
units of ``2^e / 64`` (Lava's ``act_shift = 6``); threshold ``vth`` in units of ``2^e``;
bias ``bias_mant << bias_exp`` in membrane units. A spiking layer with ``gain = k ≠ 1``
(quantized at the non-power-of-two scale ``s = 2^e / k``) holds ``W ≈ m·s`` instead, all
its other quantities in the same units (``SpikingLayer.weight_lsb = s``); nothing at run
time depends on ``s``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quantization.learning_formats import LearningSpec, PsiTable
from quantization.nodes import (
    AdaptiveLayer,
    Add,
    Concat,
    Flatten,
    GlobalSumPool,
    Pool,
    Readout,
    SpikingLayer,
    Upsample2x,
    kind_names,
    node_class,
)
from stllr.errors import UserError

__all__ = [
    "SPIKING_NODES",
    "AdaptiveLayer",
    "Add",
    "Concat",
    "Flatten",
    "GlobalSumPool",
    "InputFormat",
    "Pool",
    "QNetwork",
    "Readout",
    "SpikingLayer",
    "Upsample2x",
]

FILE_FORMAT = "stllr-qnet/1"

#: the node kinds whose output is spikes (the LIF/CuLIF layer and the AdLIF layer)
SPIKING_NODES = (SpikingLayer, AdaptiveLayer)


@dataclass(frozen=True)
class InputFormat:
    """How float input frames become integers: ``x_int = clip(round(x / 2^exp), lo, hi)``."""

    exp: int = 0
    lo: int = 0
    hi: int = 255

    def scale(self) -> float:
        return 2.0**self.exp

    def check_range(self, smallest, largest, where: str) -> None:
        """Refuse input integers outside ``[lo, hi]``: the network was quantized for that
        range, and the emulator and Lava would compute with the values as they are.
        ``smallest``/``largest``: the extremes of the input; ``where``: what holds them."""
        if smallest < self.lo or largest > self.hi:
            bad = smallest if smallest < self.lo else largest
            bad = int(bad) if math.isfinite(bad) else float(bad)
            raise UserError(
                f"{where}: input value {bad} is outside the network's input format "
                f"[{self.lo}, {self.hi}] (float frames become such integers with "
                "quantization.ptq.quantize_input)"
            )


@dataclass(frozen=True)
class QNetwork:
    """Integer nodes in execution order; the last node's output is the logits (a spiking
    last node: a first-spike-coded network, read by its first output spike,
    docs/first_spike.md)."""

    nodes: tuple
    input_shape: tuple[int, ...]
    num_classes: int
    input_format: InputFormat = InputFormat()
    meta: dict = field(default_factory=dict)

    def node(self, name: str):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"QNetwork has no node {name!r}; nodes: {[n.name for n in self.nodes]}")

    def replace_node(self, new) -> QNetwork:
        """A copy with the node of the same name replaced (e.g. learned weights)."""
        nodes = tuple(new if n.name == new.name else n for n in self.nodes)
        return dataclasses.replace(self, nodes=nodes)

    def save(self, path: str | Path) -> None:
        """Write the network as plain tensors and numbers (loadable with weights_only)."""
        blob = {
            "format": FILE_FORMAT,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "input_format": dataclasses.asdict(self.input_format),
            "meta": self.meta,
            "nodes": [_to_plain(n) for n in self.nodes],
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> QNetwork:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != FILE_FORMAT:
            raise UserError(f"{path}: not a quantized stllr network (expected {FILE_FORMAT})")
        return cls(
            nodes=tuple(_from_plain(n, path) for n in blob["nodes"]),
            input_shape=tuple(blob["input_shape"]),
            num_classes=int(blob["num_classes"]),
            input_format=InputFormat(**blob["input_format"]),
            meta=dict(blob["meta"]),
        )


def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        d = {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        d["__type__"] = type(obj).__name__
        return d
    if isinstance(obj, tuple):
        return list(_to_plain(v) for v in obj)
    return obj


_NESTED = {"PsiTable": PsiTable, "LearningSpec": LearningSpec}


def _from_plain(d, path):
    if isinstance(d, dict) and "__type__" in d:
        kind = d["__type__"]
        cls = node_class(kind) or _NESTED.get(kind)
        if cls is None:
            raise UserError(f"{path}: unknown node type {kind!r} (known: {kind_names()})")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = _from_plain(d[f.name], path)
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)
    if isinstance(d, list):
        return [_from_plain(v, path) for v in d]
    return d
