"""A :class:`~quantization.network.QNetwork` as a graph of Lava Processes (``fixed_pt``).

:func:`export` validates every node, creates one Process per node with the converter
registered for its class (:func:`register_process`; built in: ``SpikingLayer`` →
:class:`~lava_models.processes.STLLRLayer`, ``Readout`` →
:class:`~lava_models.processes.ReadoutProcess`, ``Pool``, ``GlobalSumPool``, ``Add``,
``Concat``, ``Upsample2x``, ``Flatten``, ``AdaptiveLayer`` →
:class:`~lava_models.processes.AdaptiveProcess`)
and connects each node's output port to the input ports of its consumers. Each Process
carries its node; its ``fixed_pt`` model steps the node's kind (:mod:`quantization.nodes`).
The processes are fused synapse + neuron (no ``Dense``), so the network runs with the
timing of ``IntegerEmulator(qnet, delay=0)``: every node's output of step ``t`` depends
on the network input of step ``t``. The float network: :mod:`lava_models.float_exporter`.

Shapes are per sample in the toolkit's layout (``[C, H, W]`` or ``[N]``); each node's
output shape is its kind's ``out_shape`` (evaluated on zeros: no shape formula is
retyped). A node without a converter raises :class:`UnsupportedNodeError` naming it,
before Lava is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from quantization.network import QNetwork


def _builtin_fixed() -> tuple:
    """Each kind's Process; the output shapes are the kinds' own (quantization.nodes)."""
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
    )

    made = ((SpikingLayer, _spiking), (Readout, _readout), (Pool, _pool),
            (GlobalSumPool, _gsum), (Add, export_add), (Upsample2x, export_upsample),
            (AdaptiveLayer, _adaptive), (Flatten, export_flatten))  # fmt: skip
    return (*((cls, fn, kind_out_shape) for cls, fn in made), (Concat, export_concat, concat_shape))


def kind_out_shape(n, in_shapes) -> tuple[int, ...]:
    """Node ``n``'s per-sample output shape, from its kind (:mod:`quantization.nodes`)."""
    from quantization.nodes import kind_of

    return kind_of(n).out_shape(n, in_shapes)


_FIXED = ProcessRegistry(_builtin_fixed)


def register_process(node_cls: type, converter: Converter, out_shape: Callable) -> None:
    """Make :func:`export` handle ``node_cls``.

    ``converter(node, ctx)`` returns a :class:`NodeExport`; ``out_shape(node, in_shapes)``
    the per-sample output shape (raise :class:`UnsupportedNodeError` for a node it cannot
    run).
    """
    _FIXED.table()[node_cls] = (converter, out_shape)


def supported_node_types() -> list[str]:
    return sorted(cls.__name__ for cls in _FIXED.table())


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
    return _FIXED.build(qnet, shapes, common_params(step_offset, reset_interval, record_dir,
                                                   record_steps))  # fmt: skip


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


def _adaptive(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import AdaptiveProcess

    proc = AdaptiveProcess(
        in_shape=ctx.in_shapes[0], out_shape=ctx.out_shape, weight=_np(n.weight), bias=_bias(n),
        weight_rec=_np(n.weight_rec), node_index=ctx.index, name=f"adlif_{n.name}", node=n,
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


def export_add(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import AddProcess

    proc = AddProcess(shape=ctx.out_shape, shifts=tuple(n.shifts) or (0, 0),
                      node_index=ctx.index, name=f"add_{n.name}", node=n,
                      **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.a_in, proc.b_in), proc.s_out)


def export_upsample(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import UpsampleProcess

    proc = UpsampleProcess(in_shape=ctx.in_shapes[0], shift=n.shift, node_index=ctx.index,
                           name=f"up_{n.name}", node=n, **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def export_flatten(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import FlattenProcess

    proc = FlattenProcess(in_shape=ctx.in_shapes[0], node_index=ctx.index,
                          name=f"flatten_{n.name}", node=n, **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.s_in,), proc.s_out)


def concat_shape(n, in_shapes) -> tuple[int, ...]:
    if len(in_shapes) != 2:
        raise UnsupportedNodeError(f"ConcatProcess joins exactly 2 inputs, got {len(in_shapes)}")
    return kind_out_shape(n, in_shapes)


def export_concat(n, ctx: ExportContext) -> NodeExport:
    from lava_models.processes import ConcatProcess

    proc = ConcatProcess(a_shape=ctx.in_shapes[0], b_shape=ctx.in_shapes[1],
                         shifts=tuple(n.shifts) or (0, 0), node_index=ctx.index,
                         name=f"concat_{n.name}", node=n, **ctx.common)  # fmt: skip
    return NodeExport(proc, (proc.a_in, proc.b_in), proc.s_out)


__all__ = [
    "ExportContext",
    "LavaNetwork",
    "NodeExport",
    "UnsupportedNodeError",
    "export",
    "output_shapes",
    "register_process",
    "supported_node_types",
]
