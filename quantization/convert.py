"""Float task models → a float layer graph, the input of post-training quantization.

A converter walks one model class and emits float node specs in execution order:
:class:`FloatSpiking` (a dense/conv/recurrent spiking layer with its effective weight
Ŵ, i.e. after weight standardisation), :class:`FloatReadout` (the non-spiking output
integrator) and the weightless nodes of :mod:`quantization.network` (``Pool``, ``Add``)
plus :class:`FloatGlobalPool` (and ``Flatten``: the spiking-output networks' converters,
:mod:`quantization.convert_spiking_output`). Dropout is the identity at inference and is
skipped.

New model classes plug in with :func:`register_converter`; a model without a converter
is an error that names its class (never a silent partial export).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from quantization.float_nodes import (
    DEFAULT_FACTORS,
    FloatAdaptive,
    FloatGlobalPool,
    FloatReadout,
    FloatSpiking,
)
from quantization.network import Add, Concat, Pool
from quantization.nodes.upsample import Upsample2x
from stllr.factors import STLLRFactors
from stllr.layers.bptt import (
    BPTTLIF,
    LeakyReadout,
    ScaledWSConv2d,
    ScaledWSConvTranspose2d,
    ScaledWSLinear,
)
from stllr.layers.dropout import DropoutLIF
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import (
    Conv2dSTLLR,
    ConvTranspose2dSTLLR,
    LinearSTLLR,
    RecurrentLinearSTLLR,
)
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams
from stllr.weight_standardization import standardize_weight

Converter = Callable[[SpikingModel, STLLRFactors | None], list]
_CONVERTERS: dict[type, Converter] = {}


def register_converter(model_cls: type, fn: Converter) -> None:
    """Make models of ``model_cls`` convertible (``fn(model, factors) → specs``)."""
    _CONVERTERS[model_cls] = fn


def to_float_graph(model: SpikingModel, factors: STLLRFactors | None = None) -> list:
    """The float node specs of ``model`` (see module doc). ``factors`` overrides the
    S-TLLR factors used for on-device learning (default: the layers' own, or
    ``DEFAULT_FACTORS`` for BPTT twins)."""
    for cls in type(model).__mro__:
        if cls in _CONVERTERS:
            with torch.no_grad():
                return _CONVERTERS[cls](model, factors)
    raise TypeError(
        f"no quantization converter for model class {type(model).__name__}; "
        f"known: {sorted(c.__name__ for c in _CONVERTERS)} (use register_converter)"
    )


# --- building blocks --------------------------------------------------------------------


def _ws(weight, gain) -> torch.Tensor:
    return standardize_weight(weight, gain).detach().clone() if gain is not None else weight


def _opt(t):
    return None if t is None else t.detach().clone()


def node_modules(model: SpikingModel) -> dict[str, nn.Module]:
    """Weighted node name → the float model's module it is converted from, read off the
    same converter walk that names the nodes (the one home of that mapping)."""
    return {s.name: s.source for s in to_float_graph(model) if getattr(s, "source", None)
            is not None}  # fmt: skip


def stllr_layer_spec(layer: nn.Module, name: str, inputs, factors) -> FloatSpiking:
    """Spec of a ``LinearSTLLR``/``Conv2dSTLLR``/``RecurrentLinearSTLLR``."""
    f = factors or layer.factors
    if isinstance(layer, RecurrentLinearSTLLR):
        w, w_rec = layer.standardized_weights()
        return FloatSpiking(
            name, tuple(inputs), "dense", w.detach().clone(), _opt(layer.bias), layer.lif,
            layer.psi_name, f, weight_rec=w_rec.detach().clone(), source=layer,
        )  # fmt: skip
    w = layer.standardized_weight().detach().clone()
    if isinstance(layer, LinearSTLLR):
        return FloatSpiking(name, tuple(inputs), "dense", w, _opt(layer.bias), layer.lif,
                            layer.psi_name, f, source=layer)  # fmt: skip
    if isinstance(layer, Conv2dSTLLR):
        o = layer._ops
        return FloatSpiking(
            name, tuple(inputs), "conv", w, _opt(layer.bias), layer.lif, layer.psi_name, f,
            stride=o.stride, padding=o.padding, dilation=o.dilation, groups=o.groups,
            source=layer,
        )  # fmt: skip
    if isinstance(layer, ConvTranspose2dSTLLR):
        return _deconv_spec(name, inputs, w, layer.bias, layer.lif, layer.psi_name, f,
                            layer._ops, layer)  # fmt: skip
    raise TypeError(f"{name}: not an S-TLLR layer: {type(layer).__name__}")


def bptt_layer_spec(synapse: nn.Module, lif: BPTTLIF, name, inputs, factors, rec=None):
    """Spec of a ``ScaledWSLinear``/``ScaledWSConv2d`` followed by a ``BPTTLIF``."""
    w = _ws(synapse.weight, synapse.gain)
    f = factors or DEFAULT_FACTORS
    if isinstance(synapse, ScaledWSLinear):
        w_rec = None if rec is None else _ws(rec.weight, rec.gain)
        return FloatSpiking(name, tuple(inputs), "dense", w, _opt(synapse.bias), lif.lif,
                            lif.psi_name, f, weight_rec=w_rec, source=synapse)  # fmt: skip
    if isinstance(synapse, ScaledWSConv2d):
        return FloatSpiking(
            name, tuple(inputs), "conv", w, _opt(synapse.bias), lif.lif, lif.psi_name, f,
            stride=tuple(synapse.stride), padding=tuple(synapse.padding),
            dilation=tuple(synapse.dilation), groups=synapse.groups, source=synapse,
        )  # fmt: skip
    if isinstance(synapse, ScaledWSConvTranspose2d):
        return _deconv_spec(name, inputs, w, synapse.bias, lif.lif, lif.psi_name, f,
                            synapse.ops, synapse)  # fmt: skip
    raise TypeError(f"{name}: unsupported BPTT synapse {type(synapse).__name__}")


def _deconv_spec(name, inputs, w, bias, lif, psi, factors, ops, source) -> FloatSpiking:
    """A transposed-conv spiking layer (Ŵ ``[C_out, C_in, k, k]``, stllr's layout)."""
    return FloatSpiking(
        name, tuple(inputs), "deconv", w, _opt(bias), lif, psi, factors, stride=ops.stride,
        padding=ops.padding, output_padding=ops.output_padding, source=source,
    )  # fmt: skip


def pool_spec(module: nn.Module, name: str, inputs) -> Pool:
    """``MaxPool2d``/``AvgPool2d`` with kernel = stride and no padding."""
    k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
    stride = module.stride if isinstance(module.stride, int) else module.stride[0]
    if stride != k or getattr(module, "padding", 0) not in (0, (0, 0)):
        raise TypeError(f"{name}: only non-overlapping pooling (stride = kernel, no padding)")
    if isinstance(module, nn.MaxPool2d):
        return Pool(name, tuple(inputs), "max", k)
    if isinstance(module, nn.AvgPool2d):
        return Pool(name, tuple(inputs), "sum", k)
    raise TypeError(f"{name}: unsupported pooling {type(module).__name__}")


def linear_readout(linear: nn.Linear, name, inputs, gamma: float) -> FloatReadout:
    """A linear head into a leaky integrator. Its pre-trace decays with γ, which makes
    ``P`` the exact ∂o[t]/∂W of ``o[t] = Σ_k γ^k W x[t−k]`` (γ = 0: the instantaneous
    input, as backprop through a plain ``nn.Linear`` head)."""
    return FloatReadout(name, tuple(inputs), linear.weight.detach().clone(),
                        _opt(linear.bias), gamma, gamma, source=linear)  # fmt: skip


def spatial_after(shape: tuple[int, int], layer_specs: list) -> tuple[int, int]:
    """Height/width of the last spec's output (for global pooling), tracked per node."""
    hw = {"input": tuple(shape)}
    for s in layer_specs:
        h, w = hw[s.inputs[0]]
        if isinstance(s, FloatSpiking) and s.kind == "conv":
            kh, kw = s.weight.shape[2:]
            h = (h + 2 * s.padding[0] - s.dilation[0] * (kh - 1) - 1) // s.stride[0] + 1
            w = (w + 2 * s.padding[1] - s.dilation[1] * (kw - 1) - 1) // s.stride[1] + 1
        elif isinstance(s, Pool):
            h, w = h // s.kernel, w // s.kernel
        hw[s.name] = (h, w)
    return hw[layer_specs[-1].name]


# --- the task models --------------------------------------------------------------------


def _convert_shd_stllr(model, factors):
    ro: AccumulateReadout = model.readout
    return [
        stllr_layer_spec(model.rec, "rec", ["input"], factors),
        FloatReadout(
            "readout",
            ("rec",),
            ro.weight.detach().clone(),
            _opt(ro.bias),
            ro.gamma,
            ro.lambda_pre,
            source=ro,
        ),  # fmt: skip
    ]


def _convert_shd_bptt(model, factors):
    ro: LeakyReadout = model.readout
    return [
        bptt_layer_spec(model.ff, model.lif, "rec", ["input"], factors, rec=model.rec),
        linear_readout(ro.linear, "readout", ["rec"], ro.gamma),
    ]


def _convert_vgg_stllr(model, factors):
    specs, prev = [], "input"
    for i, (conv, drop, pool) in enumerate(zip(model.convs, model.drops, model.pools, strict=True)):
        if not isinstance(drop, DropoutLIF):
            raise TypeError(f"conv{i}: unexpected {type(drop).__name__} after the conv")
        specs.append(stllr_layer_spec(conv, f"conv{i}", [prev], factors))
        prev = f"conv{i}"
        if not isinstance(pool, nn.Identity):
            specs.append(pool_spec(pool, f"pool{i}", [prev]))
            prev = f"pool{i}"
    return _head(model, specs, prev)


def _head(model, specs, prev):
    h, w = spatial_after(model.input_shape[1:], specs)
    specs.append(FloatGlobalPool("gap", (prev,), h * w))
    specs.append(linear_readout(model.head, "head", ["gap"], 0.0))
    return specs


def _convert_vgg_bptt(model, factors):
    specs, prev, pending, i = [], "input", None, 0
    for m in model.features:
        if isinstance(m, ScaledWSConv2d):
            pending = m
        elif isinstance(m, BPTTLIF):
            specs.append(bptt_layer_spec(pending, m, f"conv{i}", [prev], factors))
            prev, pending, i = f"conv{i}", None, i + 1
        elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            specs.append(pool_spec(m, f"pool{i - 1}", [prev]))
            prev = f"pool{i - 1}"
        elif not isinstance(m, DropoutLIF):
            raise TypeError(f"VGGBPTT: unsupported module {type(m).__name__} in features")
    return _head(model, specs, prev)


def _resnet_conv(module, name, inputs, factors):
    if isinstance(module, Conv2dSTLLR):
        return stllr_layer_spec(module, name, inputs, factors)
    return bptt_layer_spec(module.conv, module.lif, name, inputs, factors)


def _convert_resnet(model, factors):
    specs = [_resnet_conv(model.stem, "stem", ["input"], factors)]
    specs.append(pool_spec(model.pool, "stem_pool", ["stem"]))
    prev = "stem_pool"
    for b, block in enumerate(model.blocks):
        c1 = _resnet_conv(block.conv1, f"b{b}.conv1", [prev], factors)
        c2 = _resnet_conv(block.conv2, f"b{b}.conv2", [c1.name], factors)
        specs += [c1, c2]
        short = prev
        if not isinstance(block.shortcut, nn.Identity):
            sc = _resnet_conv(block.shortcut, f"b{b}.short", [prev], factors)
            specs.append(sc)
            short = sc.name
        specs.append(Add(f"b{b}.add", (c2.name, short)))
        prev = f"b{b}.add"
    return _head(model, specs, prev)


def _convert_chain(model, factors):
    names = model.node_names()
    inputs = ["input", *names[:-1]]
    return [
        stllr_layer_spec(layer, name, (prev,), factors)
        for layer, name, prev in zip(model.layers, names, inputs, strict=True)
    ]


def _convert_shd_neurons(model, factors):
    """The SHD network of a current-based neuron (``neuron = culif``, or ``pculif`` with one
    decay per layer; docs/neurons.md): its recurrent layer as a current-based FloatSpiking
    (α = the voltage decay, β = the current decay, θ). An AdLIF or CuAdLIF layer
    (``neuron = adlif | cuadlif``, either decay mode) becomes a FloatAdaptive (with β for
    the CuAdLIF). A CuLIF/PCuLIF with per-neuron current decays has no integer kind yet: a
    TypeError names it."""
    from stllr.neurons.layers import RecurrentNeuronSTLLR

    rec = model.rec
    pop, spec = rec.neurons, rec.neurons.spec
    if spec.kind in ("adlif", "cuadlif"):
        layer = _adaptive_spec(rec, factors, RecurrentNeuronSTLLR)
    elif spec.kind not in ("culif", "pculif") or spec.mode != "layer":
        raise TypeError(
            f"neuron {spec.kind!r} (decay_mode {spec.mode!r}): only current-based neurons with "
            "one decay per layer (culif, pculif with decay_mode=layer), adlif and cuadlif have "
            "an integer kind"
        )
    else:
        layer = _current_spec(rec, pop, spec, factors, RecurrentNeuronSTLLR)
    ro = model.readout
    if isinstance(ro, AccumulateReadout):
        head = FloatReadout("readout", ("rec",), ro.weight.detach().clone(), _opt(ro.bias),
                            ro.gamma, ro.lambda_pre, source=ro)  # fmt: skip
    else:
        head = linear_readout(ro.linear, "readout", ["rec"], ro.gamma)
    return [layer, head]


#: float value of one unit of a flow head's integer output (pixels): 1/256 px, ±32768 px
#: in the 24-bit integrator (docs/flow.md, "Deployment")
FLOW_OUT_SCALE = 2.0**-8
#: scale of an up-sampled flow fed into a spiking layer beside spikes (1/32 px): finer
#: scales push that layer's threshold beyond 17 bits (docs/flow.md, "Deployment")
FLOW_FEED_SCALE = 2.0**-5


def _convert_fsfn(model, factors):
    """FSFN (docs/flow.md §6) as a float graph: encoder ``enc1…enc4``, residual blocks
    ``res0…res3`` with ``Add`` nodes ``sum1``, ``sum2``, decoder ``dec3…dec1`` (transposed
    convs), flow heads ``flow4…flow1`` (1×1-conv readouts, ``o`` in units of
    :data:`FLOW_OUT_SCALE`), the ×2 up-sampling ``up4…up2`` and each decoder input
    ``[e, d, up(f)]`` as two 2-input ``Concat`` nodes (``cat3a``, ``cat3``, …). The finest
    flow ``flow1`` is the last node."""
    if model.family == "stllr":

        def spiking(layer, name, inputs):
            return stllr_layer_spec(layer, name, inputs, factors)
    else:

        def spiking(layer, name, inputs):
            return bptt_layer_spec(layer.synapse, layer.lif, name, inputs, factors)

    def head(k, inputs):
        h = model.heads[k - 1]
        return FloatReadout(f"flow{k}", (inputs,), h.conv.weight.detach().clone(),
                            _opt(h.conv.bias), h.decay, h.decay, FLOW_OUT_SCALE,
                            source=h.conv)  # fmt: skip

    specs, prev = [], "input"
    for i, layer in enumerate(model.encoder, start=1):
        specs.append(spiking(layer, f"enc{i}", [prev]))
        prev = f"enc{i}"
    for k in (0, 2):
        specs.append(spiking(model.residual[k], f"res{k}", [prev]))
        specs.append(spiking(model.residual[k + 1], f"res{k + 1}", [f"res{k}"]))
        specs.append(Add(f"sum{k // 2 + 1}", (f"res{k + 1}", prev)))
        prev = f"sum{k // 2 + 1}"
    specs.append(head(4, prev))
    decoders = (model.deconv3, model.deconv2, model.deconv1)
    for level, deconv in zip((3, 2, 1), decoders, strict=True):
        specs.append(Upsample2x(f"up{level + 1}", (f"flow{level + 1}",),
                                out_scale=FLOW_FEED_SCALE))  # fmt: skip
        specs.append(spiking(deconv, f"dec{level}", [prev]))
        specs.append(Concat(f"cat{level}a", (f"enc{level}", f"dec{level}")))
        specs.append(Concat(f"cat{level}", (f"cat{level}a", f"up{level + 1}")))
        prev = f"cat{level}"
        specs.append(head(level, prev))
    return specs


def _rec_weights(rec):
    """(Ŵ, Ŵ_rec, bias) of a RecurrentNeuronSTLLR or RecurrentNeuronBPTT."""
    from stllr.neurons.layers import RecurrentNeuronSTLLR

    if isinstance(rec, RecurrentNeuronSTLLR):
        w, w_rec = rec.standardized_weights()
        return w, w_rec, _opt(rec.bias)
    return _ws(rec.ff.weight, rec.ff.gain), _ws(rec.rec.weight, rec.rec.gain), _opt(rec.ff.bias)


def _adaptive_spec(rec, factors, stllr_cls) -> FloatAdaptive:
    """The AdLIF layer (α, ρ, a, b per neuron or per layer, θ; the S-TLLR layer's Ψ and
    factors, or ``factors`` if given; ``DEFAULT_FACTORS`` for the BPTT layer). A CuAdLIF
    layer adds β and λ_syn (the S-TLLR layer's, the mean β for the BPTT one)."""
    p = rec.neurons.params()
    f = factors or (rec.factors if isinstance(rec, stllr_cls) else DEFAULT_FACTORS)
    w, w_rec, bias = _rec_weights(rec)

    def t(v):
        return torch.as_tensor(v).detach().double().clone()

    beta = lam_syn = None
    if hasattr(p, "beta"):
        beta = t(p.beta)
        lam_syn = rec.lambda_syn if isinstance(rec, stllr_cls) else float(beta.mean())
    return FloatAdaptive("rec", ("input",), w.detach().clone(), bias, t(p.alpha), t(p.rho),
                         t(p.a), t(p.b), p.threshold, p.reset,
                         weight_rec=w_rec.detach().clone(), source=rec, psi=rec.psi_name,
                         factors=f, beta=beta, lambda_syn=lam_syn)  # fmt: skip


def _current_spec(rec, pop, spec, factors, stllr_cls) -> FloatSpiking:
    """The current-based recurrent layer (α, β of the population, θ; λ_syn of the S-TLLR
    layer, β for the BPTT one)."""
    params = pop.params()
    alpha, beta = float(params.alpha), float(params.beta)
    lif = LIFParams(leak=math.log(alpha / (1.0 - alpha)), threshold=spec.threshold,
                    reset=spec.reset)  # fmt: skip
    w, w_rec, bias = _rec_weights(rec)
    if isinstance(rec, stllr_cls):
        f, lam_syn = factors or rec.factors, rec.lambda_syn
    else:
        f, lam_syn = factors or DEFAULT_FACTORS, beta
    return FloatSpiking("rec", ("input",), "dense", w.detach().clone(), bias, lif, rec.psi_name,
                        f, weight_rec=w_rec.detach().clone(), current_decay=beta,
                        lambda_syn=lam_syn, source=rec)  # fmt: skip


def _register_builtin() -> None:
    from quantization.convert_spiking_output import convert_fs_conv, convert_fs_fc
    from stllr.models.chain import SpikingChain
    from stllr.models.fsfn import FSFN
    from stllr.models.resnet import SpikingResNet18
    from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
    from stllr.models.shd_neurons import SHDNeuronNetBPTT, SHDNeuronNetSTLLR
    from stllr.models.spiking_output import FSConvNet, FSFCNet
    from stllr.models.vgg import VGGBPTT, VGGSTLLR

    register_converter(SHDNetSTLLR, _convert_shd_stllr)
    register_converter(SHDNetBPTT, _convert_shd_bptt)
    register_converter(VGGSTLLR, _convert_vgg_stllr)
    register_converter(VGGBPTT, _convert_vgg_bptt)
    register_converter(SpikingResNet18, _convert_resnet)
    register_converter(SpikingChain, _convert_chain)
    register_converter(SHDNeuronNetSTLLR, _convert_shd_neurons)
    register_converter(SHDNeuronNetBPTT, _convert_shd_neurons)
    register_converter(FSFN, _convert_fsfn)
    register_converter(FSFCNet, convert_fs_fc)
    register_converter(FSConvNet, convert_fs_conv)


_register_builtin()
