"""A :class:`~quantization.network.QNetwork` as a graph of the toolkit's Lava Processes.

:func:`export` validates every node, creates one Process per node with the converter
registered for its class (:func:`register_converter`; built in: ``SpikingLayer`` →
:class:`~lava_models.processes.STLLRLayer`, ``Readout`` →
:class:`~lava_models.processes.ReadoutProcess`, ``Pool``, ``GlobalSumPool``, ``Add``)
and connects each node's output port to the input ports of its consumers. The
processes are fused synapse + neuron (no ``Dense``), so the network runs with the
timing of ``IntegerEmulator(qnet, delay=0)``: every node's output of step ``t`` depends
on the network input of step ``t``.

Shapes are per sample in the toolkit's layout (``[C, H, W]`` or ``[N]``); each node's
output shape is found by evaluating its numpy kernel on zeros (no shape formula is
retyped). A node without a converter raises :class:`UnsupportedNodeError` naming it,
before Lava is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lava_models.builtin import UnsupportedNodeError

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

    qnet: Any
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


Converter = Callable[[Any, ExportContext], NodeExport]
#: Node class → (converter, output-shape function ``(node, in_shapes) -> shape``).
_CONVERTERS: dict[type, tuple[Converter, Callable]] = {}
_BUILTIN_REGISTERED = []  # non-empty once the built-in converters are in _CONVERTERS


def register_converter(node_cls: type, converter: Converter, out_shape: Callable) -> None:
    """Make :func:`export` handle ``node_cls``.

    ``converter(node, ctx)`` returns a :class:`NodeExport`; ``out_shape(node, in_shapes)``
    the per-sample output shape (raise :class:`UnsupportedNodeError` for a node it cannot
    run).
    """
    _register_builtin()
    _CONVERTERS[node_cls] = (converter, out_shape)


def supported_node_types() -> list[str]:
    _register_builtin()
    return sorted(cls.__name__ for cls in _CONVERTERS)


def output_shapes(qnet: QNetwork) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every node (and ``"input"``); validates the graph."""
    _register_builtin()
    shapes = {"input": tuple(qnet.input_shape)}
    if not qnet.nodes:
        raise UnsupportedNodeError("QNetwork has no nodes")
    for n in qnet.nodes:
        where = f"node {n.name!r} ({type(n).__name__})"
        if type(n) not in _CONVERTERS:
            raise UnsupportedNodeError(
                f"{where}: no Lava converter for this node kind "
                f"(supported: {supported_node_types()}; see register_converter)"
            )
        if n.name in shapes:
            raise UnsupportedNodeError(f"{where}: duplicate node name")
        missing = [k for k in n.inputs if k not in shapes]
        if missing:
            raise UnsupportedNodeError(f"{where}: inputs {missing} are not earlier nodes")
        in_shapes = tuple(shapes[k] for k in n.inputs)
        try:
            shapes[n.name] = tuple(int(d) for d in _CONVERTERS[type(n)][1](n, in_shapes))
        except UnsupportedNodeError as err:
            raise UnsupportedNodeError(f"{where}: {err}") from None
        except (RuntimeError, ValueError) as err:  # e.g. torch's shape errors
            raise UnsupportedNodeError(f"{where}: input shapes {in_shapes}: {err}") from None
    return shapes


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
    from lava_models.runtime import import_lava

    import_lava()
    common = {
        "step_offset": int(step_offset),
        "reset_interval": int(reset_interval),
        "record_dir": None if record_dir is None else str(record_dir),
        "record_steps": int(record_steps),
    }
    nodes: dict[str, NodeExport] = {}
    input_ports = []
    for i, n in enumerate(qnet.nodes):
        ctx = ExportContext(i, tuple(shapes[k] for k in n.inputs), shapes[n.name], common)
        made = _CONVERTERS[type(n)][0](n, ctx)
        for src, port in zip(n.inputs, made.in_ports, strict=True):
            if src == "input":
                input_ports.append(port)
            else:
                nodes[src].out_port.connect(port)
        nodes[n.name] = made
    return LavaNetwork(qnet, nodes, shapes, tuple(input_ports), nodes[qnet.nodes[-1].name].process)


# --- built-in converters ---------------------------------------------------------------


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.int64)


def _bias(n) -> np.ndarray | None:
    b = _np(n.bias_mant)
    if b is None:
        return None
    return b << n.bias_exp if n.bias_exp >= 0 else b >> -n.bias_exp


def _zeros(shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


def _spiking_shape(n, in_shapes):
    from quantization.backend import int_conv2d, int_linear

    (shape,) = in_shapes
    w = _np(n.weight)
    if n.kind == "conv":
        if len(shape) != 3:
            raise UnsupportedNodeError(f"a conv layer needs a [C, H, W] input, got {shape}")
        return int_conv2d(_zeros(shape), w, n.stride, n.padding, n.dilation, n.groups).shape
    if n.kind != "dense":
        raise UnsupportedNodeError(f"kind {n.kind!r} is not supported (dense or conv)")
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a dense layer needs a flat input, got {shape}")
    out = int_linear(_zeros(shape), w).shape
    if n.weight_rec is not None and tuple(n.weight_rec.shape) != out * 2:
        raise UnsupportedNodeError(f"weight_rec {tuple(n.weight_rec.shape)} is not {out * 2}")
    return out


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
        learning=n.learning, psi=psi, node_index=ctx.index, name=f"stllr_{n.name}",
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _readout_shape(n, in_shapes):
    from quantization.backend import int_linear

    (shape,) = in_shapes
    if len(shape) != 1:
        raise UnsupportedNodeError(f"a readout needs a flat input, got {shape}")
    return int_linear(_zeros(shape), _np(n.weight)).shape


def _readout(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import ReadoutProcess

    proc = ReadoutProcess(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_np(n.weight), dv=n.dv,
        bias=_bias(n), learning=n.learning, node_index=ctx.index, name=f"readout_{n.name}",
        **ctx.common,
    )  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out, proc.ls_in)


def _pool_shape(n, in_shapes):
    from quantization.backend import int_max_pool2d, int_sum_pool2d

    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"pooling needs a [C, H, W] input, got {shape}")
    if n.mode not in ("max", "sum"):
        raise UnsupportedNodeError(f"pool mode {n.mode!r} is not supported (max or sum)")
    fn = int_max_pool2d if n.mode == "max" else int_sum_pool2d
    return fn(_zeros(shape), n.kernel).shape


def _pool(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import PoolProcess

    proc = PoolProcess(in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, mode=n.mode,
                       kernel=n.kernel, node_index=ctx.index, name=f"pool_{n.name}",
                       **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def _gsum_shape(n, in_shapes):
    from quantization.kernels import global_sum_pool

    (shape,) = in_shapes
    if len(shape) != 3:
        raise UnsupportedNodeError(f"global pooling needs a [C, H, W] input, got {shape}")
    return global_sum_pool(_zeros(shape)).shape


def _gsum(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import GlobalSumPoolProcess

    proc = GlobalSumPoolProcess(in_shape=ctx.in_shapes[0], node_index=ctx.index,
                                name=f"gsum_{n.name}", **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def _add_shape(n, in_shapes):
    if len(in_shapes) != 2:
        raise UnsupportedNodeError(f"AddProcess adds exactly 2 inputs, got {len(in_shapes)}")
    if in_shapes[0] != in_shapes[1]:
        raise UnsupportedNodeError(f"input shapes differ: {in_shapes}")
    shifts = tuple(n.shifts) or (0, 0)
    if len(shifts) != 2 or min(shifts) < 0:
        raise UnsupportedNodeError(f"shifts {n.shifts} must be two non-negative ints")
    return in_shapes[0]


def _add(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import AddProcess

    proc = AddProcess(shape=ctx.out_shape, shifts=tuple(n.shifts) or (0, 0),
                      node_index=ctx.index, name=f"add_{n.name}", **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.a_in, proc.b_in), proc.s_out)


def _register_builtin() -> None:
    if _BUILTIN_REGISTERED:
        return
    from quantization.network import Add, GlobalSumPool, Pool, Readout, SpikingLayer

    for cls, conv, shape in (
        (SpikingLayer, _spiking, _spiking_shape),
        (Readout, _readout, _readout_shape),
        (Pool, _pool, _pool_shape),
        (GlobalSumPool, _gsum, _gsum_shape),
        (Add, _add, _add_shape),
    ):
        _CONVERTERS.setdefault(cls, (conv, shape))  # a user's registration wins
    _BUILTIN_REGISTERED.append(True)


__all__ = [
    "ExportContext",
    "LavaNetwork",
    "NodeExport",
    "UnsupportedNodeError",
    "export",
    "output_shapes",
    "register_converter",
    "supported_node_types",
]
