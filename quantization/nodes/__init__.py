"""Node kinds of a quantized network, one module each (see :mod:`quantization.nodes.base`).

The registry: importing this package registers every built-in kind. A new kind is one
module (its node dataclass, typed state, ``forward``, ``learn``, output shape and value
bound, registered with :func:`~quantization.nodes.base.register_kind`) plus its import
line below.
"""

from quantization.nodes import (  # noqa: F401
    adaptive,
    concat,
    flatten,
    pooling,
    readout,
    spiking,
    upsample,
)
from quantization.nodes.adaptive import AdaptiveLayer, AdaptiveState
from quantization.nodes.base import (
    Host,
    NodeKind,
    Quantized,
    Step,
    SynapseWeights,
    Traces,
    UnsupportedNodeError,
    kind_for_float,
    kind_names,
    kind_of,
    max_abs_fan_in,
    node_class,
    register_kind,
    registered_kinds,
)
from quantization.nodes.concat import Concat
from quantization.nodes.flatten import Flatten
from quantization.nodes.pooling import Add, GlobalSumPool, Pool
from quantization.nodes.readout import Readout, ReadoutState
from quantization.nodes.spiking import SpikingLayer, SpikingState
from quantization.nodes.upsample import Upsample2x

__all__ = [
    "AdaptiveLayer",
    "AdaptiveState",
    "Add",
    "Concat",
    "Flatten",
    "GlobalSumPool",
    "Host",
    "NodeKind",
    "Pool",
    "Quantized",
    "Readout",
    "ReadoutState",
    "SpikingLayer",
    "SpikingState",
    "Step",
    "SynapseWeights",
    "Traces",
    "UnsupportedNodeError",
    "Upsample2x",
    "kind_for_float",
    "kind_names",
    "kind_of",
    "max_abs_fan_in",
    "node_class",
    "register_kind",
    "registered_kinds",
]
