"""Biases on netx's grid: membrane-unit biases and :func:`snap_bias_to_netx`.

Why netx computes exactly what the emulator does for biases::

    bias     utils.py:68 casts it to int; blocks/process.py:53-72 broadcasts a
             per-channel bias over (W, H, C). Lava adds bias << 6, ours adds
             bias_mant << bias_exp, so we write (bias_mant << bias_exp) / 64 and
             refuse biases that are not multiples of 64 membrane units (see
             :func:`snap_bias_to_netx`) or beyond 13 signed bits.

Only numpy is imported at module level (torch and :mod:`quantization` inside functions).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from lava_models.errors import UnsupportedNodeError
from lava_models.netx.layout import BIAS_MAX, BIAS_MIN, NETX_BIAS_EXP

if TYPE_CHECKING:  # the module imports only numpy at top level (docs/lava.md §7, pitfall 4)
    from quantization.network import QNetwork, SpikingLayer


def membrane_bias(n: SpikingLayer) -> np.ndarray | None:
    """``bias_mant << bias_exp`` (membrane units) as int64, or None."""
    if n.bias_mant is None:
        return None
    if n.bias_exp < 0:
        raise UnsupportedNodeError(
            f"node {n.name!r}: bias_exp = {n.bias_exp} is negative (netx adds bias << 6)"
        )
    b = n.bias_mant.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return b << int(n.bias_exp)


def snap_bias_to_netx(qnet: QNetwork) -> QNetwork:
    """A copy of ``qnet`` whose spiking-layer biases netx can hold exactly.

    netx adds ``bias << 6`` (``bias_exp = 6``), so a bias must be a multiple of 64
    membrane units: each ``bias_mant << bias_exp`` is rounded to the nearest one (half
    to even) and stored as ``bias_mant = round(b / 64)``, ``bias_exp = 6``. Evaluate the
    snapped network with the emulator: it is what the netx file will run. Raises
    :class:`UnsupportedNodeError` if a snapped bias needs more than 13 signed bits.
    """
    import torch

    from quantization.backend import round_float
    from quantization.network import SpikingLayer

    nodes = []
    for n in qnet.nodes:
        if isinstance(n, SpikingLayer) and n.bias_mant is not None:
            b = torch.as_tensor(membrane_bias(n), dtype=torch.float64)
            mant = round_float(b / (1 << NETX_BIAS_EXP), "nearest_even").to(torch.int64)
            lo, hi = int(mant.min()), int(mant.max())
            if lo < BIAS_MIN or hi > BIAS_MAX:
                raise UnsupportedNodeError(
                    f"node {n.name!r}: snapped biases span [{lo}, {hi}] × 64, beyond 13 bits"
                )
            n = dataclasses.replace(
                n, bias_mant=mant.reshape(n.bias_mant.shape), bias_exp=NETX_BIAS_EXP
            )
        nodes.append(n)
    return dataclasses.replace(qnet, nodes=tuple(nodes))
