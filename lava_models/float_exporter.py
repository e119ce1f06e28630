"""The float layer graph as Lava Processes (``floating_pt``): :func:`export_float`.

The float graph of :func:`quantization.convert.to_float_graph` (a :class:`FloatNetwork`,
see :func:`float_network`) becomes the same Processes as the integer export
(:mod:`lava_models.exporter`), built as float nodes for their ``floating_pt`` models
(:mod:`lava_models.processes.float_models`), with the timing of the torch model itself.
Converters: :func:`register_float_process` (built in: ``FloatSpiking``, ``FloatAdaptive``,
``FloatReadout``,
``Pool``, ``FloatGlobalPool``, ``Add``, ``Concat``, ``Upsample2x``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lava_models.errors import UnsupportedNodeError
from lava_models.export_graph import (
    Converter,
    ExportContext,
    LavaNetwork,
    NodeExport,
    ProcessRegistry,
    common_params,
)
from lava_models.exporter import (
    concat_shape,
    export_add,
    export_concat,
    export_upsample,
    kind_out_shape,
)


def _builtin_float() -> tuple:
    from quantization.convert import FloatGlobalPool, FloatReadout, FloatSpiking
    from quantization.float_nodes import FloatAdaptive
    from quantization.nodes import Add, Concat, Pool, Upsample2x

    return (
        (FloatSpiking, _float_spiking, _float_spiking_shape),
        (FloatAdaptive, _float_adaptive, _float_adaptive_shape),
        (FloatReadout, _float_readout, _float_readout_shape),
        (Pool, _float_pool, _float_pool_shape),
        (FloatGlobalPool, _float_gpool, _float_gpool_shape),
        (Add, export_add, kind_out_shape),
        (Concat, export_concat, concat_shape),
        (Upsample2x, export_upsample, kind_out_shape),
    )


_FLOAT = ProcessRegistry(_builtin_float)


def register_float_process(node_cls: type, converter: Converter, out_shape: Callable) -> None:
    """Make :func:`export_float` handle ``node_cls`` (as
    :func:`lava_models.exporter.register_process`)."""
    _FLOAT.table()[node_cls] = (converter, out_shape)


def supported_float_node_types() -> list[str]:
    return sorted(cls.__name__ for cls in _FLOAT.table())


@dataclass(frozen=True)
class FloatNetwork:
    """The float layer graph of :func:`quantization.convert.to_float_graph` to run in Lava.

    ``nodes``: the specs in execution order (``FloatSpiking`` with the effective weights
    Ŵ, ``FloatReadout``, ``Pool``, ``FloatGlobalPool``, ``Add``); ``plastic``: the names
    of the weighted nodes that learn on device with online S-TLLR (``W ← W − lr·∂/∂W``
    after every step, on Ŵ itself: weight standardisation is not exported).
    """

    nodes: tuple
    input_shape: tuple[int, ...]
    lr: float = 0.0
    plastic: tuple[str, ...] = ()

    def node(self, name: str):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} (nodes: {[n.name for n in self.nodes]})")

    def learning(self, name: str):
        """The node's :class:`~lava_models.float_ops.FloatLearning`, or None if not plastic."""
        if name not in self.plastic:
            return None
        from lava_models.float_ops import FloatLearning
        from quantization.convert import FloatReadout

        n = self.node(name)
        if isinstance(n, FloatReadout):
            return FloatLearning.readout(self.lr, n.lambda_pre)
        return FloatLearning(float(self.lr), n.factors)


def float_network(
    model_or_specs,
    *,
    input_shape=None,
    lr: float = 0.0,
    plastic=(),
    factors=None,
) -> FloatNetwork:
    """A :class:`FloatNetwork` from a task model (``to_float_graph(model, factors)``) or
    from float specs (then ``input_shape`` is required and ``factors``, if given,
    replaces every spiking layer's S-TLLR factors). ``plastic`` names the weighted nodes
    that learn with learning rate ``lr``. A :class:`FloatNetwork` is returned as it is.
    """
    import dataclasses
    import math

    if isinstance(model_or_specs, FloatNetwork):
        if input_shape is not None or lr or plastic or factors is not None:
            raise TypeError("float_network: already a FloatNetwork; give no other arguments")
        return model_or_specs
    from quantization.convert import FloatReadout, FloatSpiking, to_float_graph
    from quantization.float_nodes import FloatAdaptive

    if isinstance(model_or_specs, (list, tuple)):
        if input_shape is None:
            raise ValueError("float_network: float specs need input_shape=")
        specs = list(model_or_specs)
        if factors is not None:
            specs = [dataclasses.replace(s, factors=factors) if isinstance(s, FloatSpiking)
                     else s for s in specs]  # fmt: skip
    else:
        specs = to_float_graph(model_or_specs, factors)
        model_shape = tuple(model_or_specs.input_shape)
        if input_shape is not None and tuple(input_shape) != model_shape:
            raise ValueError(f"input_shape {tuple(input_shape)} is not the model's {model_shape}")
        input_shape = model_shape
    if not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite number, got {lr!r}")
    plastic = tuple(plastic)
    kinds = {s.name: s for s in specs}
    for name in plastic:
        if name not in kinds:
            raise ValueError(f"plastic node {name!r} is not in the network {list(kinds)}")
        if not isinstance(kinds[name], (FloatSpiking, FloatAdaptive, FloatReadout)):
            raise ValueError(f"node {name!r} ({type(kinds[name]).__name__}) has no weights")
    return FloatNetwork(tuple(specs), tuple(int(d) for d in input_shape), float(lr), plastic)


def float_output_shapes(network: FloatNetwork) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every float node (and ``"input"``); validates the graph."""
    return _FLOAT.shapes(network.nodes, network.input_shape)


def export_float(
    model_or_specs,
    *,
    input_shape=None,
    lr: float = 0.0,
    plastic=(),
    factors=None,
    reset_interval: int = 0,
    record_dir: str | None = None,
    record_steps: int = 0,
) -> LavaNetwork:
    """Create and connect the Lava Processes of the float network (``floating_pt``).

    ``model_or_specs``: a task model, float specs or a :class:`FloatNetwork` (the other
    network arguments as :func:`float_network`); ``reset_interval``, ``record_dir`` and
    ``record_steps`` as :func:`lava_models.exporter.export`. Run it with ``Loihi2SimCfg(select_tag=
    "floating_pt")`` (:func:`lava_models.runner.run_lava` does it for a FloatNetwork).
    """
    network = float_network(model_or_specs, input_shape=input_shape, lr=lr, plastic=plastic,
                            factors=factors)  # fmt: skip
    shapes = float_output_shapes(network)  # validates before Lava is imported
    return _FLOAT.build(network, shapes, common_params(0, reset_interval, record_dir, record_steps))


# --- built-in float converters ----------------------------------------------------------


def _f64(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _float_zeros(shape):
    from lava_models.float_ops import batch

    return batch(np.zeros(shape))


def _float_spiking_shape(n, in_shapes):
    from lava_models.float_ops import synapse_ops

    (shape,) = in_shapes
    if n.kind in ("conv", "deconv") and len(shape) != 3:
        raise UnsupportedNodeError(f"a {n.kind} layer needs a [C, H, W] input, got {shape}")
    if n.kind == "dense" and len(shape) != 1:
        raise UnsupportedNodeError(f"a dense layer needs a flat input, got {shape}")
    if n.kind not in ("dense", "conv", "deconv"):
        raise UnsupportedNodeError(f"kind {n.kind!r} is not supported (dense, conv, deconv)")
    if n.kind == "deconv" and tuple(n.output_padding) != (0, 0):
        raise UnsupportedNodeError("a float deconv layer has no output padding (floating_pt)")
    ops = synapse_ops(n.kind, n.stride, n.padding, n.dilation, n.groups)
    out = tuple(ops.current(_float_zeros(shape), n.weight.double(), None).shape[1:])
    if n.weight_rec is not None and tuple(n.weight_rec.shape) != out * 2:
        raise UnsupportedNodeError(f"weight_rec {tuple(n.weight_rec.shape)} is not {out * 2}")
    return out


def _float_spiking(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import STLLRLayer

    proc = STLLRLayer(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_f64(n.weight), kind=n.kind,
        stride=n.stride, padding=n.padding, dilation=n.dilation, groups=n.groups,
        bias=_f64(n.bias), weight_rec=_f64(n.weight_rec), lif=n.lif, psi=n.psi,
        current_decay=n.current_decay,
        lambda_syn=n.current_decay if n.lambda_syn is None else n.lambda_syn,
        learning=ctx.network.learning(n.name), node_index=ctx.index, name=f"stllr_{n.name}",
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _float_adaptive_shape(n, in_shapes):
    (shape,) = in_shapes
    out, fan_in = (int(d) for d in n.weight.shape)
    if shape != (fan_in,):
        raise UnsupportedNodeError(f"an AdLIF layer needs a flat input of {fan_in}, got {shape}")
    return (out,)


def _float_adaptive(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import AdaptiveProcess
    from stllr.neurons.dynamics import AdLIFParams, CuAdLIFParams

    (out,) = ctx.out_shape

    def per_neuron(*ts):
        return (np.broadcast_to(_f64(t), (out,)).copy() for t in ts)

    if n.beta is None:
        params = AdLIFParams(*per_neuron(n.alpha, n.rho, n.a, n.b), float(n.threshold), n.reset)
    else:  # the current-based AdLIF
        params = CuAdLIFParams(*per_neuron(n.alpha, n.beta, n.rho, n.a, n.b),
                               float(n.threshold), n.reset)  # fmt: skip
    proc = AdaptiveProcess(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_f64(n.weight),
        bias=_f64(n.bias), weight_rec=_f64(n.weight_rec), adlif=params, psi=n.psi,
        learning=ctx.network.learning(n.name), node_index=ctx.index, name=f"adlif_{n.name}",
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _float_readout_shape(n, in_shapes):
    (shape,) = in_shapes
    w = tuple(n.weight.shape)
    if len(w) == 4:  # a 1×1 conv over [C, H, W]
        if len(shape) != 3 or w[1:] != (shape[0], 1, 1):
            raise UnsupportedNodeError(f"weight {w} does not take {shape}")
        return (w[0], *shape[1:])
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a readout needs a flat input, got {shape}")
    if w[1:] != shape:
        raise UnsupportedNodeError(f"weight {w} does not take {shape}")
    return w[:1]


def _float_readout(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import ReadoutProcess

    proc = ReadoutProcess(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_f64(n.weight),
        bias=_f64(n.bias), gamma=float(n.gamma), learning=ctx.network.learning(n.name),
        node_index=ctx.index, name=f"readout_{n.name}", **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


#: The float graph's ``Pool`` modes (``pool_spec``: "sum" stands for ``nn.AvgPool2d``,
#: whose 1/k² the integer graph folds into the next weights) → PoolProcess modes.
_FLOAT_POOL_MODES = {"max": "max", "sum": "avg"}


def _float_pool_shape(n, in_shapes):
    from lava_models.float_ops import pool2d

    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"pooling needs a [C, H, W] input, got {shape}")
    if n.mode not in _FLOAT_POOL_MODES:
        raise UnsupportedNodeError(f"pool mode {n.mode!r} is not supported (max or sum)")
    return tuple(pool2d(_float_zeros(shape), _FLOAT_POOL_MODES[n.mode], n.kernel).shape[1:])


def _float_pool(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import PoolProcess

    proc = PoolProcess(in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape,
                       mode=_FLOAT_POOL_MODES[n.mode], kernel=n.kernel, node_index=ctx.index,
                       name=f"pool_{n.name}", **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def _float_gpool_shape(n, in_shapes):
    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"global pooling needs a [C, H, W] input, got {shape}")
    if shape[1] * shape[2] != n.positions:
        raise UnsupportedNodeError(f"averages {n.positions} positions, the input has {shape}")
    return shape[:1]


def _float_gpool(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import GlobalSumPoolProcess

    proc = GlobalSumPoolProcess(in_shape=ctx.in_shapes[0], average=True, node_index=ctx.index,
                                name=f"gap_{n.name}", **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


__all__ = [
    "FloatNetwork",
    "export_float",
    "float_network",
    "float_output_shapes",
    "register_float_process",
    "supported_float_node_types",
]
