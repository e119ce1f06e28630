"""The pieces every Lava export shares: what a converter makes of one node, the exported
network, the registry of node class → Process converter, and the common process arguments.

:mod:`lava_models.exporter` (the integer network, ``fixed_pt``) and
:mod:`lava_models.float_exporter` (the float network, ``floating_pt``) each keep one
:class:`ProcessRegistry`. Shapes are per sample in the toolkit's layout (``[C, H, W]``
or ``[N]``); a node without a converter raises :class:`UnsupportedNodeError` naming it,
before Lava is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lava_models.errors import UnsupportedNodeError


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
class ProcessRegistry:
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
                    f"(supported: {sorted(c.__name__ for c in table)}; see register_process)"
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


def common_params(step_offset, reset_interval, record_dir, record_steps) -> dict:
    return {
        "step_offset": int(step_offset),
        "reset_interval": int(reset_interval),
        "record_dir": None if record_dir is None else str(record_dir),
        "record_steps": int(record_steps),
    }
