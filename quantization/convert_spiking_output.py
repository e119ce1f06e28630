"""Converters of the spiking-output networks (``fs_fc``, ``fs_gesture``, ``fs_plane``;
docs/first_spike.md, "Networks" and "In the pipeline") to the float layer graph of
:mod:`quantization.convert`.

Every layer becomes a :class:`~quantization.float_nodes.FloatSpiking` of its neuron kind:
the toolkit's LIF, or a current-based layer (``culif``, ``pculif`` with one decay per
layer); an AdLIF hidden layer of ``fs_fc`` becomes a
:class:`~quantization.float_nodes.FloatAdaptive` (the ``AdaptiveLayer`` kind). The output
layer is a spiking node too, read by its first spike. The
convolutional networks compose existing kinds: conv layers, max pooling (``Pool``), the
neuron after a pooling as a depthwise 1×1 convolution of unit weights, ``Flatten`` and a
dense recurrent layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quantization.float_nodes import DEFAULT_FACTORS, FloatAdaptive, FloatSpiking
from quantization.network import Pool
from quantization.nodes.flatten import Flatten
from stllr.neuron import LIFParams


def _neuron_layer_spec(
    synapse: nn.Module, neurons: nn.Module, name: str, inputs, factors, rec: nn.Linear | None = None
) -> FloatSpiking:
    """A bias-free ``Linear`` (``rec``: plus a recurrent ``Linear``) or ``Conv2d`` into a
    neuron module of :mod:`stllr.models.neuron_kinds` (:func:`_neuron_spec`)."""
    geometry = {}
    if isinstance(synapse, nn.Conv2d):
        geometry = dict(stride=tuple(synapse.stride), padding=tuple(synapse.padding),
                        dilation=tuple(synapse.dilation), groups=synapse.groups)  # fmt: skip
    elif not isinstance(synapse, nn.Linear):
        raise TypeError(f"{name}: unsupported synapse {type(synapse).__name__}")
    kind = "conv" if geometry else "dense"
    w_rec = None if rec is None else rec.weight.detach().clone()
    bias = None if synapse.bias is None else synapse.bias.detach().clone()
    return _neuron_spec(name, inputs, kind, synapse.weight.detach().clone(), bias, neurons,
                        factors, w_rec, geometry, synapse)  # fmt: skip


def _pass_through_spec(neurons: nn.Module, channels: int, name: str, inputs,
                       factors) -> FloatSpiking:  # fmt: skip
    """A neuron module applied to a ``[C, H, W]`` map as it is (``neuron(pool(x))`` of
    ``fs_gesture``/``fs_plane``): a depthwise 1×1 convolution of unit weights (``groups =
    C``, Ŵ ``[C, 1, 1, 1]`` of ones), so every neuron reads its own input position once."""
    w = torch.ones(channels, 1, 1, 1)
    return _neuron_spec(name, inputs, "conv", w, None, neurons, factors, None,
                        dict(groups=channels), None)  # fmt: skip


def _neuron_spec(name, inputs, kind, w, bias, neurons, factors, w_rec, geometry, source):
    """The spiking layer of a neuron module: the toolkit's LIF (``LIFNeurons``) or a
    current-based population with one decay per layer (``culif``, ``pculif`` with
    ``decay_mode = layer``: α the voltage decay, β the current decay, λ_syn = β as for the
    BPTT layers). Other kinds have no integer layer here: a TypeError names them."""
    from stllr.models.neuron_kinds import LIFNeurons, PopulationNeurons

    f = factors or DEFAULT_FACTORS
    if isinstance(neurons, LIFNeurons):
        return FloatSpiking(name, tuple(inputs), kind, w, bias, neurons.lif, neurons.psi_name,
                            f, weight_rec=w_rec, source=source, **geometry)  # fmt: skip
    spec = neurons.pop.spec if isinstance(neurons, PopulationNeurons) else None
    if spec is None or spec.kind not in ("culif", "pculif") or spec.mode != "layer":
        what = type(neurons).__name__ if spec is None else f"{spec.kind} ({spec.mode})"
        raise TypeError(
            f"{name}: neuron {what} has no integer layer in a spiking-output network; "
            "expected lif, culif or pculif with decay_mode=layer"
        )
    params = neurons.pop.params()
    alpha, beta = float(params.alpha), float(params.beta)
    lif = LIFParams(leak=math.log(alpha / (1.0 - alpha)), threshold=spec.threshold,
                    reset=spec.reset)  # fmt: skip
    return FloatSpiking(name, tuple(inputs), kind, w, bias, lif, neurons.psi_name, f,
                        weight_rec=w_rec, current_decay=beta, lambda_syn=beta, source=source,
                        **geometry)  # fmt: skip


def _adaptive_layer_spec(fc: nn.Linear, neurons: nn.Module, name: str, inputs,
                         factors) -> FloatAdaptive:  # fmt: skip
    """A bias-free ``Linear`` into an AdLIF population (either decay mode): α, ρ, a, b per
    neuron or per layer, θ and the reset of the population, the layer's surrogate for Ψ."""
    p = neurons.pop.params()

    def t(v) -> torch.Tensor:
        return torch.as_tensor(v).detach().double().clone()

    bias = None if fc.bias is None else fc.bias.detach().clone()
    return FloatAdaptive(name, tuple(inputs), fc.weight.detach().clone(), bias, t(p.alpha),
                         t(p.rho), t(p.a), t(p.b), float(p.threshold), p.reset, source=fc,
                         psi=neurons.psi_name, factors=factors or DEFAULT_FACTORS)  # fmt: skip


def _is_adlif(neurons: nn.Module) -> bool:
    spec = getattr(getattr(neurons, "pop", None), "spec", None)
    return spec is not None and spec.kind == "adlif"


def convert_fs_fc(model, factors):
    """``fs_fc`` (docs/first_spike.md, "Networks"): ``fc0 … fc{n−1}`` (Linear → neuron;
    dropout is the identity at inference; an AdLIF hidden layer as
    :func:`_adaptive_layer_spec`) and the spiking output layer ``out`` (never AdLIF: it is
    read by its first spike as a :class:`FloatSpiking`)."""
    specs, prev = [], "input"
    for i, (fc, neurons) in enumerate(zip(model.fc, model.neurons, strict=True)):
        if _is_adlif(neurons) and isinstance(fc, nn.Linear):
            specs.append(_adaptive_layer_spec(fc, neurons, f"fc{i}", (prev,), factors))
        else:
            specs.append(_neuron_layer_spec(fc, neurons, f"fc{i}", (prev,), factors))
        prev = f"fc{i}"
    specs.append(_neuron_layer_spec(model.out, model.out_neuron, "out", (prev,), factors))
    return specs


def convert_fs_conv(model, factors):
    """``fs_gesture`` / ``fs_plane`` (docs/first_spike.md, "Networks"; their neurons as in
    :func:`_neuron_spec`): ``conv0``, ``conv1`` (conv → neuron), ``pool1`` (max 2),
    ``pooled1`` (the neuron after the pooling, :func:`_pass_through_spec`), ``conv2``,
    ``pool2``, ``pooled2``, ``flat`` (:class:`~quantization.nodes.flatten.Flatten`, the
    model's ``flatten(1)``), ``fc`` (dense + recurrent, ``s_h[t] = neuron(W x[t] + R
    s_h[t−1])``) and the spiking output layer ``out``."""
    convs, n = model.convs, model.neurons
    k = model.pool.kernel_size
    k = k if isinstance(k, int) else k[0]
    if not isinstance(model.pool, nn.MaxPool2d) or model.pool.stride not in (k, (k, k)):
        raise TypeError(f"{type(model).__name__}: expected a non-overlapping max pooling")
    pool = Pool("pool1", ("conv1",), "max", k)
    specs = [
        _neuron_layer_spec(convs[0], n[0], "conv0", ("input",), factors),
        _neuron_layer_spec(convs[1], n[1], "conv1", ("conv0",), factors),
        pool,
        _pass_through_spec(n[2], convs[1].out_channels, "pooled1", ("pool1",), factors),
        _neuron_layer_spec(convs[2], n[3], "conv2", ("pooled1",), factors),
        Pool("pool2", ("conv2",), pool.mode, pool.kernel),
        _pass_through_spec(n[4], convs[2].out_channels, "pooled2", ("pool2",), factors),
        Flatten("flat", ("pooled2",)),
        _neuron_layer_spec(model.fc, n[5], "fc", ("flat",), factors, rec=model.rec),
        _neuron_layer_spec(model.out, model.out_neuron, "out", ("fc",), factors),
    ]
    return specs
