"""A :class:`~quantization.network.QNetwork` (or the float network) as a graph of Lava Processes.

:func:`export` validates every node, creates one Process per node with the converter
registered for its class (:func:`register_converter`; built in: ``SpikingLayer`` →
:class:`~lava_models.processes.STLLRLayer`, ``Readout`` →
:class:`~lava_models.processes.ReadoutProcess`, ``Pool``, ``GlobalSumPool``, ``Add``)
and connects each node's output port to the input ports of its consumers. The
processes are fused synapse + neuron (no ``Dense``), so the network runs with the
timing of ``IntegerEmulator(qnet, delay=0)``: every node's output of step ``t`` depends
on the network input of step ``t``.

:func:`export_float` does the same for the float layer graph of
:func:`quantization.convert.to_float_graph` (a :class:`FloatNetwork`, see
:func:`float_network`), through a second registry (:func:`register_float_converter`;
built in: ``FloatSpiking``, ``FloatReadout``, ``Pool``, ``FloatGlobalPool``, ``Add``):
the same Processes, built as float nodes for their ``floating_pt`` models, with the
timing of the torch model itself.

Shapes are per sample in the toolkit's layout (``[C, H, W]`` or ``[N]``); each node's
output shape is found by evaluating its kernel on zeros (no shape formula is
retyped). A node without a converter raises :class:`UnsupportedNodeError` naming it,
before Lava is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lava_models.errors import UnsupportedNodeError

if TYPE_CHECKING:
    from quantization.network import QNetwork


@dataclass(frozen=True)
class NodeExport:
    """What a converter made of one node."""

    process: Any  # the Lava Process
    in_ports: tuple  # its InPorts, in the order of ``node.inputs``
    out_port: Any  # its OutPort
    signal_port: Any = None  # InPort of the third factor (plastic nodes)


@dataclass
class LavaNetwork:
    """The exported network: processes by node name and where to feed and read it."""

    qnet: Any  # the QNetwork (fixed_pt) or FloatNetwork (floating_pt) it was made from
    nodes: dict[str, NodeExport]
    shapes: dict[str, tuple[int, ...]]  # output shape per node, "input" included
    input_ports: tuple  # the InPorts that read the network input (connect a source here)
    output: Any  # the process of the last node (its ``s_out`` carries the logits)

    @property
    def processes(self) -> dict[str, Any]:
        return {name: e.process for name, e in self.nodes.items()}

    def connect_input(self, out_port) -> None:
        """Connect a source's OutPort (shape ``qnet.input_shape``) to every input reader."""
        for port in self.input_ports:
            out_port.connect(port)


@dataclass(frozen=True)
class ExportContext:
    """Arguments every converter receives besides its node."""

    index: int  # the node's position in ``qnet.nodes`` (keys its random streams)
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    common: dict  # step_offset, reset_interval, record_dir, record_steps
    network: Any = None  # the QNetwork or FloatNetwork being exported


Converter = Callable[[Any, ExportContext], NodeExport]


@dataclass
class _Registry:
    """Node class → (converter, output-shape function ``(node, in_shapes) -> shape``)."""

    builtin: Callable[[], tuple]  # () -> ((cls, converter, out_shape), ...), imported late
    converters: dict[type, tuple[Converter, Callable]] = field(default_factory=dict)
    loaded: bool = False

    def table(self) -> dict[type, tuple[Converter, Callable]]:
        if not self.loaded:
            for cls, conv, shape in self.builtin():
                self.converters.setdefault(cls, (conv, shape))  # a user's registration wins
            self.loaded = True
        return self.converters

    def shapes(self, nodes, input_shape) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every node (and ``"input"``); validates the graph."""
        table = self.table()
        shapes = {"input": tuple(input_shape)}
        if not nodes:
            raise UnsupportedNodeError("the network has no nodes")
        for n in nodes:
            where = f"node {n.name!r} ({type(n).__name__})"
            if type(n) not in table:
                raise UnsupportedNodeError(
                    f"{where}: no Lava converter for this node kind "
                    f"(supported: {sorted(c.__name__ for c in table)}; see register_converter)"
                )
            if n.name in shapes:
                raise UnsupportedNodeError(f"{where}: duplicate node name")
            missing = [k for k in n.inputs if k not in shapes]
            if missing:
                raise UnsupportedNodeError(f"{where}: inputs {missing} are not earlier nodes")
            in_shapes = tuple(shapes[k] for k in n.inputs)
            try:
                shapes[n.name] = tuple(int(d) for d in table[type(n)][1](n, in_shapes))
            except UnsupportedNodeError as err:
                raise UnsupportedNodeError(f"{where}: {err}") from None
            except (RuntimeError, ValueError) as err:  # e.g. torch's shape errors
                raise UnsupportedNodeError(f"{where}: input shapes {in_shapes}: {err}") from None
        return shapes

    def build(self, network, shapes, common: dict) -> LavaNetwork:
        """Create one Process per node and connect them (Lava must be importable)."""
        from lava_models.runtime import import_lava

        import_lava()
        table = self.table()
        nodes: dict[str, NodeExport] = {}
        input_ports = []
        for i, n in enumerate(network.nodes):
            ctx = ExportContext(i, tuple(shapes[k] for k in n.inputs), shapes[n.name], common,
                                network)  # fmt: skip
            made = table[type(n)][0](n, ctx)
            for src, port in zip(n.inputs, made.in_ports, strict=True):
                if src == "input":
                    input_ports.append(port)
                else:
                    nodes[src].out_port.connect(port)
            nodes[n.name] = made
        last = nodes[network.nodes[-1].name].process
        return LavaNetwork(network, nodes, shapes, tuple(input_ports), last)


def _builtin_fixed() -> tuple:
    """Each kind's Process; the output shapes are the kinds' own (quantization.nodes)."""
    from quantization.nodes import Add, GlobalSumPool, Pool, Readout, SpikingLayer, kind_of

    made = ((SpikingLayer, _spiking), (Readout, _readout), (Pool, _pool),
            (GlobalSumPool, _gsum), (Add, _add))  # fmt: skip
    return tuple((cls, fn, _kind_shape(kind_of, cls)) for cls, fn in made)


def _kind_shape(kind_of, cls) -> Callable:
    def shape(n, in_shapes):
        return kind_of(n).out_shape(n, in_shapes)

    return shape


def _builtin_float() -> tuple:
    from quantization.convert import FloatGlobalPool, FloatReadout, FloatSpiking
    from quantization.nodes import Add, Pool, kind_of

    return (
        (FloatSpiking, _float_spiking, _float_spiking_shape),
        (FloatReadout, _float_readout, _float_readout_shape),
        (Pool, _float_pool, _float_pool_shape),
        (FloatGlobalPool, _float_gpool, _float_gpool_shape),
        (Add, _add, _kind_shape(kind_of, Add)),
    )


_FIXED = _Registry(_builtin_fixed)
_FLOAT = _Registry(_builtin_float)


def register_converter(node_cls: type, converter: Converter, out_shape: Callable) -> None:
    """Make :func:`export` handle ``node_cls``.

    ``converter(node, ctx)`` returns a :class:`NodeExport`; ``out_shape(node, in_shapes)``
    the per-sample output shape (raise :class:`UnsupportedNodeError` for a node it cannot
    run).
    """
    _FIXED.table()[node_cls] = (converter, out_shape)


def register_float_converter(node_cls: type, converter: Converter, out_shape: Callable) -> None:
    """Make :func:`export_float` handle ``node_cls`` (as :func:`register_converter`)."""
    _FLOAT.table()[node_cls] = (converter, out_shape)


def supported_node_types(floating: bool = False) -> list[str]:
    return sorted(cls.__name__ for cls in (_FLOAT if floating else _FIXED).table())


def output_shapes(qnet: QNetwork) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every node (and ``"input"``); validates the graph."""
    return _FIXED.shapes(qnet.nodes, qnet.input_shape)


def export(
    qnet: QNetwork,
    *,
    step_offset: int = 0,
    reset_interval: int = 0,
    record_dir: str | None = None,
    record_steps: int = 0,
) -> LavaNetwork:
    """Create and connect the Lava Processes of ``qnet`` (the input is left unconnected).

    ``step_offset``: the emulator's global step at Lava's first time step (random
    streams); ``reset_interval``: zero every state and trace every that many steps (0:
    never); ``record_dir``/``record_steps``: every process writes its outputs and final
    state there at step ``record_steps`` (see :mod:`lava_models.processes.process`).
    """
    shapes = output_shapes(qnet)  # validates before Lava is imported
    return _FIXED.build(qnet, shapes, _common(step_offset, reset_interval, record_dir,
                                              record_steps))  # fmt: skip


def _common(step_offset, reset_interval, record_dir, record_steps) -> dict:
    return {
        "step_offset": int(step_offset),
        "reset_interval": int(reset_interval),
        "record_dir": None if record_dir is None else str(record_dir),
        "record_steps": int(record_steps),
    }


# --- the float network ------------------------------------------------------------------


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
        if not isinstance(kinds[name], (FloatSpiking, FloatReadout)):
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
    ``record_steps`` as :func:`export`. Run it with ``Loihi2SimCfg(select_tag=
    "floating_pt")`` (:func:`lava_models.runner.run_lava` does it for a FloatNetwork).
    """
    network = float_network(model_or_specs, input_shape=input_shape, lr=lr, plastic=plastic,
                            factors=factors)  # fmt: skip
    shapes = float_output_shapes(network)  # validates before Lava is imported
    return _FLOAT.build(network, shapes, _common(0, reset_interval, record_dir, record_steps))


# --- built-in converters ---------------------------------------------------------------


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.int64)


def _bias(n) -> np.ndarray | None:
    b = _np(n.bias_mant)
    if b is None:
        return None
    return b << n.bias_exp if n.bias_exp >= 0 else b >> -n.bias_exp


def _spiking(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import STLLRLayer

    psi = None
    if n.learning is not None:
        if n.psi is None:
            raise UnsupportedNodeError(f"node {n.name!r}: plastic but has no Ψ table")
        psi = (_np(n.psi.table), n.psi.shift, n.psi.half, n.psi.frac)
    proc = STLLRLayer(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_np(n.weight), kind=n.kind,
        stride=n.stride, padding=n.padding, dilation=n.dilation, groups=n.groups, dv=n.dv,
        vth=n.vth, reset=n.reset, bias=_bias(n), weight_rec=_np(n.weight_rec),
        learning=n.learning, psi=psi, node_index=ctx.index, name=f"stllr_{n.name}", node=n,
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _readout(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import ReadoutProcess

    proc = ReadoutProcess(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_np(n.weight), dv=n.dv,
        bias=_bias(n), learning=n.learning, node_index=ctx.index, name=f"readout_{n.name}",
        node=n, **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _pool(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import PoolProcess

    proc = PoolProcess(in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, mode=n.mode,
                       kernel=n.kernel, node_index=ctx.index, name=f"pool_{n.name}", node=n,
                       **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def _gsum(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import GlobalSumPoolProcess

    proc = GlobalSumPoolProcess(in_shape=ctx.in_shapes[0], node_index=ctx.index,
                                name=f"gsum_{n.name}", node=n, **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def _add(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import AddProcess

    proc = AddProcess(shape=ctx.out_shape, shifts=tuple(n.shifts) or (0, 0),
                      node_index=ctx.index, name=f"add_{n.name}", node=n,
                      **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.a_in, proc.b_in), proc.s_out)


# --- built-in float converters ----------------------------------------------------------


def _f64(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _float_zeros(shape):
    from lava_models.float_ops import batch

    return batch(np.zeros(shape))


def _float_spiking_shape(n, in_shapes):
    from lava_models.float_ops import synapse_ops

    (shape,) = in_shapes
    if n.kind == "conv" and len(shape) != 3:
        raise UnsupportedNodeError(f"a conv layer needs a [C, H, W] input, got {shape}")
    if n.kind == "dense" and len(shape) != 1:
        raise UnsupportedNodeError(f"a dense layer needs a flat input, got {shape}")
    if n.kind not in ("dense", "conv"):
        raise UnsupportedNodeError(f"kind {n.kind!r} is not supported (dense or conv)")
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
        learning=ctx.network.learning(n.name), node_index=ctx.index, name=f"stllr_{n.name}",
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _float_readout_shape(n, in_shapes):
    (shape,) = in_shapes
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a readout needs a flat input, got {shape}")
    if tuple(n.weight.shape[1:]) != shape:
        raise UnsupportedNodeError(f"weight {tuple(n.weight.shape)} does not take {shape}")
    return tuple(n.weight.shape[:1])


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
    "ExportContext",
    "FloatNetwork",
    "LavaNetwork",
    "NodeExport",
    "UnsupportedNodeError",
    "export",
    "export_float",
    "float_network",
    "float_output_shapes",
    "output_shapes",
    "register_converter",
    "register_float_converter",
    "supported_node_types",
]
