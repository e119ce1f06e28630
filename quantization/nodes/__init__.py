"""Node kinds of a quantized network, one module each (see :mod:`quantization.nodes.base`).

The registry: importing this package registers every built-in kind. A new kind is one
module (its node dataclass, typed state, ``forward``, ``learn``, output shape and value
bound, registered with :func:`~quantization.nodes.base.register_kind`) plus its import
line below.
"""

from quantization.nodes import pooling, readout, spiking  # noqa: F401  (registers the kinds)
from quantization.nodes.base import (
    Host,
    NodeKind,
    Step,
    SynapseWeights,
    Traces,
    UnsupportedNodeError,
    kind_names,
    kind_of,
    node_class,
    register_kind,
)
from quantization.nodes.pooling import Add, GlobalSumPool, Pool
from quantization.nodes.readout import Readout, ReadoutState
from quantization.nodes.spiking import SpikingLayer, SpikingState

__all__ = [
    "Add",
    "GlobalSumPool",
    "Host",
    "NodeKind",
    "Pool",
    "Readout",
    "ReadoutState",
    "SpikingLayer",
    "SpikingState",
    "Step",
    "SynapseWeights",
    "Traces",
    "UnsupportedNodeError",
    "kind_names",
    "kind_of",
    "node_class",
    "register_kind",
]
