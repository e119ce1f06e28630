"""Lava Processes (and their ``fixed_pt`` models) for quantized S-TLLR networks.

A dedicated subpackage because Lava's model discovery imports every module of this
package and executes every file in this folder when it compiles one of these
Processes (LAVA.md §7, pitfall 4): keep only ``process.py`` (numpy + Lava) and
``models.py`` (plus the toolkit's integer kernels) here, without side effects.
"""

from lava_models.processes.process import (
    AddProcess,
    GlobalSumPoolProcess,
    PoolProcess,
    ReadoutProcess,
    STLLRLayer,
)

__all__ = ["AddProcess", "GlobalSumPoolProcess", "PoolProcess", "ReadoutProcess", "STLLRLayer"]
