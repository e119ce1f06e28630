"""Lava Processes for S-TLLR networks, with ``fixed_pt`` and ``floating_pt`` models.

A dedicated subpackage because Lava's model discovery imports every module of this
package and executes every file in this folder when it compiles one of these
Processes (docs/lava.md §7, pitfall 4): keep only ``process.py`` (numpy + Lava),
``models.py`` (``fixed_pt``, the toolkit's integer kernels), ``float_models.py``
(``floating_pt``, stllr's float step functions) and ``signal_processes.py`` (on-device
error and DFA/sDFA/BP feedback, with their ``fixed_pt`` models) here, without side effects.
"""

from lava_models.processes.process import (
    AdaptiveProcess,
    AddProcess,
    ConcatProcess,
    FlattenProcess,
    GlobalSumPoolProcess,
    PoolProcess,
    ReadoutProcess,
    STLLRLayer,
    UpsampleProcess,
)

__all__ = [
    "AdaptiveProcess",
    "AddProcess",
    "ConcatProcess",
    "FlattenProcess",
    "GlobalSumPoolProcess",
    "PoolProcess",
    "ReadoutProcess",
    "STLLRLayer",
    "UpsampleProcess",
]
