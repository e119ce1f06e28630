"""Checking what netx can hold: :func:`plan_netx` validates a network and lists its layers.

Each layer of the plan holds what the file will (``type``, ``shape``, the int64
weight, ``weight_rec`` and netx ``bias`` arrays, and the node); anything netx cannot
represent exactly raises :class:`~lava_models.errors.UnsupportedNodeError` naming the
node. Only numpy is imported at module level (:mod:`quantization` inside functions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lava_models.errors import NetxInexactError, UnsupportedNodeError
from lava_models.netx.bias import membrane_bias
from lava_models.netx.layout import (
    BIAS_MAX,
    BIAS_MIN,
    CONV_PARAM_MAX,
    CONV_WEIGHT_MAX,
    CONV_WEIGHT_MIN,
    DV_MAX,
    NETX_BIAS_EXP,
    READOUT_NO_MEMORY,
    VTH_MAX,
    conv_out_hw,
)
from lava_models.netx.synapse import check_netx_dense, check_sum_bound

if TYPE_CHECKING:  # the module imports only numpy at top level (docs/lava.md §7, pitfall 4)
    from quantization.network import QNetwork


def _unsupported_kind(n) -> str:
    kind = type(n).__name__
    reasons = {
        "Readout": "a non-spiking readout has no netx layer type (only a last group-sum readout "
        "maps onto slayer's 'average': weights 1 on contiguous equal groups, dv = 4096, no "
        "bias, weight_exp 0, no learning)",
        "Pool": "netx cannot load pooling ('pool' raises NotImplementedError)",
        "GlobalSumPool": "netx cannot load global pooling ('average' is not implemented)",
        "Add": "netx networks are sequential (no residual add; 'concat' is not implemented)",
    }
    return reasons.get(kind, f"{kind} nodes have no netx layer type")


def _check_conv_params(n, where: str, in_shape) -> None:
    if len(in_shape) != 3:
        raise UnsupportedNodeError(
            f"{where}: a conv layer needs a [C, H, W] input, got {list(in_shape)} (netx cannot "
            "unflatten: no conv after a dense layer)"
        )
    w = n.weight
    if w.dim() != 4 or w.numel() == 0:
        raise UnsupportedNodeError(
            f"{where}: weight shape {tuple(w.shape)} is not [C_out, C_in/groups, kH, kW]"
        )
    params = (*n.stride, *n.padding, *n.dilation, n.groups, *w.shape[2:])
    if len(params) != 9 or min(params) < 0 or min(*n.stride, *n.dilation, n.groups) < 1:
        raise UnsupportedNodeError(f"{where}: invalid stride/padding/dilation/groups")
    if max(params) > CONV_PARAM_MAX:
        raise UnsupportedNodeError(
            f"{where}: kernel/stride/padding/dilation/groups beyond Lava's int8 ({CONV_PARAM_MAX})"
        )
    g = int(n.groups)
    if int(w.shape[1]) * g != int(in_shape[0]) or int(w.shape[0]) % g:
        raise UnsupportedNodeError(
            f"{where}: weight {tuple(w.shape)} with groups = {g} does not fit "
            f"{in_shape[0]} input channels"
        )
    if min(conv_out_hw(w.shape, in_shape[1:], n.stride, n.padding, n.dilation)) < 1:
        raise UnsupportedNodeError(f"{where}: empty output for input {list(in_shape)}")


def _plan_node(n, where: str, in_shape) -> dict:
    """Validate one spiking node and return what its netx layer holds (file layout)."""
    if n.learning is not None:
        raise UnsupportedNodeError(
            f"{where}: has a LearningSpec; netx files hold inference-only networks"
        )
    if n.reset != "hard":
        raise UnsupportedNodeError(
            f"{where}: reset {n.reset!r} is not supported (netx's LIF resets v to 0: 'hard')"
        )
    if not 0 <= int(n.dv) <= DV_MAX:
        raise UnsupportedNodeError(f"{where}: dv = {n.dv} is not a 12-bit decay (0 … 4095)")
    if not 0 <= int(n.vth) <= VTH_MAX:
        raise UnsupportedNodeError(f"{where}: vth = {n.vth} is beyond 17 bits")
    m = n.weight.detach().cpu().numpy().astype(np.int64)
    layer: dict = {"node": n, "weight": m}
    if n.kind == "dense":
        if m.ndim != 2 or m.size == 0:
            raise UnsupportedNodeError(f"{where}: weight shape {tuple(m.shape)} is not [out, in]")
        if m.shape[1] != int(np.prod(in_shape)):
            raise UnsupportedNodeError(
                f"{where}: weight reads {m.shape[1]} inputs, its input has shape {list(in_shape)}"
            )
        mats = [m]
        if n.weight_rec is not None:
            rec = n.weight_rec.detach().cpu().numpy().astype(np.int64)
            if rec.shape != (m.shape[0], m.shape[0]):
                raise UnsupportedNodeError(
                    f"{where}: weight_rec shape {tuple(rec.shape)} is not [{m.shape[0]}] * 2"
                )
            mats.append(rec)
            layer["weight_rec"] = rec
        try:
            check_netx_dense(*mats)
        except NetxInexactError as e:
            raise UnsupportedNodeError(f"{where}: {e}") from None
        check_sum_bound(where, *mats)
        layer["type"] = "dense_rec" if n.weight_rec is not None else "dense"
        layer["shape"] = (m.shape[0],)
        if n.delay is not None:  # slayer's per-neuron form when every row is constant
            d = n.delay.detach().cpu().numpy().astype(np.int64)
            layer["delay"] = d[:, 0] if np.all(d == d[:, :1]) else d
    elif n.kind == "conv":
        if n.weight_rec is not None:
            raise UnsupportedNodeError(f"{where}: a conv layer cannot have recurrent weights")
        _check_conv_params(n, where, in_shape)
        lo, hi = int(m.min()), int(m.max())
        if lo < CONV_WEIGHT_MIN or hi > CONV_WEIGHT_MAX:
            raise UnsupportedNodeError(
                f"{where}: conv weights span [{lo}, {hi}], beyond "
                f"[{CONV_WEIGHT_MIN}, {CONV_WEIGHT_MAX}]"
            )
        check_sum_bound(where, m)
        hw = conv_out_hw(m.shape, in_shape[1:], n.stride, n.padding, n.dilation)
        layer["type"] = "conv"
        layer["shape"] = (m.shape[0], *hw)
    else:
        raise UnsupportedNodeError(f"{where}: kind {n.kind!r} is not supported")
    b = membrane_bias(n)
    if b is not None:
        if b.size != m.shape[0]:
            raise UnsupportedNodeError(f"{where}: {b.size} biases for {m.shape[0]} channels")
        if np.any(b % (1 << NETX_BIAS_EXP)):
            raise UnsupportedNodeError(
                f"{where}: bias_mant << bias_exp ({n.bias_exp}) is not a multiple of 64 "
                "membrane units, and netx adds bias << 6; round it with snap_bias_to_netx(qnet)"
            )
        nb = b >> NETX_BIAS_EXP
        if nb.min() < BIAS_MIN or nb.max() > BIAS_MAX:
            raise UnsupportedNodeError(
                f"{where}: netx biases span [{int(nb.min())}, {int(nb.max())}], beyond 13 bits"
            )
        layer["bias"] = nb
    return layer


def average_groups(n, n_in: int) -> int | None:
    """``K`` if readout ``n`` is slayer's ``average`` over ``K`` contiguous equal groups of its
    ``n_in`` inputs (weights 1 on each group, no memory, no bias, exponent 0, not plastic),
    else ``None``."""
    w = n.weight.detach().cpu().numpy().astype(np.int64)
    k = w.shape[0] if w.ndim == 2 else 0
    if k < 1 or w.shape[1] != n_in or n_in % k or n.dv != READOUT_NO_MEMORY:
        return None
    if n.learning is not None or n.weight_exp != 0:
        return None
    if n.bias_mant is not None and bool(n.bias_mant.any()):
        return None
    groups = np.kron(np.eye(k, dtype=np.int64), np.ones((1, n_in // k), dtype=np.int64))
    return k if np.array_equal(w, groups) else None


def plan_netx(qnet: QNetwork) -> list[dict]:
    """Validate ``qnet`` for netx and list its layers (``type``, ``shape``, arrays, node).

    Raises :class:`UnsupportedNodeError` naming the first node netx cannot represent
    exactly. Used by :func:`~lava_models.netx.write.write_netx`; handy to check a network
    without writing it.
    """
    if not qnet.nodes:
        raise UnsupportedNodeError("QNetwork has no nodes")
    in_shape = tuple(int(v) for v in qnet.input_shape)
    if len(in_shape) not in (1, 3) or min(in_shape) < 1:
        raise UnsupportedNodeError(
            f"input shape {list(in_shape)}: netx inputs are [N] or [C, H, W]"
        )
    layers: list[dict] = [{"type": "input", "shape": in_shape}]
    prev, shape = "input", in_shape
    names = set()
    from quantization.network import Readout, SpikingLayer

    for i, n in enumerate(qnet.nodes):
        where = f"node {getattr(n, 'name', '?')!r} ({type(n).__name__})"
        last = i == len(qnet.nodes) - 1
        if isinstance(n, Readout) and last and i > 0 and tuple(n.inputs) == (prev,):
            k = average_groups(n, int(np.prod(shape)))
            if k is not None:  # slayer's average output layer
                layers.append({"type": "average", "shape": (k, 1, 1), "node": n})
                break
        if not isinstance(n, SpikingLayer):
            raise UnsupportedNodeError(f"{where}: {_unsupported_kind(n)}")
        if tuple(n.inputs) != (prev,):
            raise UnsupportedNodeError(
                f"{where}: inputs {tuple(n.inputs)}; netx networks are sequential, this node "
                f"must read exactly ({prev!r},)"
            )
        if n.name in names or n.name == "input":
            raise UnsupportedNodeError(f"{where}: duplicate node name")
        names.add(n.name)
        layer = _plan_node(n, where, shape)
        if layer["type"] != "conv" and len(shape) == 3:
            layers.append({"type": "flatten", "shape": (int(np.prod(shape)), 1, 1)})
        layers.append(layer)
        prev, shape = n.name, layer["shape"]
    return layers
