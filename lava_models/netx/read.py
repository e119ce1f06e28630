"""Reading: :func:`read_netx` turns a netx hdf5 file back into a ``QNetwork``.

It reads our files and other writers' (slayer's) in the same subset, field by field
with :mod:`lava_models.netx.fields` (the readers netx's ``NetDict`` implies). The
integer semantics come from the netx datasets alone; the ``stllr_*`` attributes
(:mod:`lava_models.netx.layout`) restore what netx does not store. Anything malformed
or outside the subset raises :class:`~lava_models.errors.NetxFileError` naming the
layer and field. Only numpy is imported at module level (h5py, torch and
:mod:`quantization` inside functions).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lava_models.errors import NetxFileError, NetxInexactError, UnsupportedNodeError
from lava_models.netx.fields import (
    attr_field,
    bias_field,
    delay_field,
    int_field,
    ints_field,
    neuron_fields,
    pair_field,
    string_field,
)
from lava_models.netx.layout import (
    CONV_PARAM_MAX,
    CONV_WEIGHT_MAX,
    CONV_WEIGHT_MIN,
    I_DECAY_NONE,
    NETX_BIAS_EXP,
    NETX_FORMAT,
    NETX_NOT_IMPLEMENTED,
    READOUT_NO_MEMORY,
    conv_out_hw,
)
from lava_models.netx.synapse import check_netx_dense, check_sum_bound

if TYPE_CHECKING:  # the module imports only numpy at top level (docs/lava.md §7, pitfall 4)
    from quantization.network import QNetwork


def _dense_layer(g, where: str, rec: bool, in_shape, attrs: dict, dv: int, vth: int):
    import torch

    from quantization.network import SpikingLayer

    for key in ("weight/real", "weight/imag"):
        if key in g:
            raise NetxFileError(f"{where}: field {key!r} (complex weights) is not supported")
    if not rec and "weight_rec" in g:
        raise NetxFileError(f"{where}: type 'dense' has 'weight_rec', which netx ignores")
    n_out = int(np.prod(ints_field(g, "shape", where)))
    n_in = int(np.prod(in_shape))
    mats = []
    for key in ("weight", "weight_rec") if rec else ("weight",):
        w = ints_field(g, key, where)
        if w.ndim == 1:  # netx reshapes a flat weight to [out, −1] (hdf5.py:396-399)
            if n_out == 0 or w.size % n_out:
                raise NetxFileError(f"{where} field {key!r}: {w.size} values for {n_out} outputs")
            w = w.reshape(n_out, -1)
        cols = n_in if key == "weight" else n_out
        if w.shape != (n_out, cols):
            raise NetxFileError(
                f"{where} field {key!r}: shape {list(w.shape)}, expected [{n_out}, {cols}]"
            )
        mats.append(w)
    for key, value in (("outFeatures", n_out), ("inFeatures", n_in)):
        if key in g and int_field(g, key, where) != value:
            raise NetxFileError(f"{where}: {key} = {int_field(g, key, where)}, expected {value}")
    try:
        check_netx_dense(*mats)
    except NetxInexactError as e:
        raise NetxFileError(f"{where}: {e}") from None
    _check_bound_file(where, *mats)
    bias, bias_exp = bias_field(g, where, n_out, attrs["bias_exp"])
    delay = delay_field(g, where, n_out, n_in) if "delay" in g else None
    if delay is not None and rec:
        raise NetxFileError(f"{where}: field 'delay' on a recurrent layer is not supported")
    return SpikingLayer(
        attrs["name"], (attrs["input"],), "dense", torch.as_tensor(mats[0]), attrs["weight_exp"],
        dv, vth, "hard", None if bias is None else torch.as_tensor(bias), bias_exp,
        torch.as_tensor(mats[1]) if rec else None,
        weight_bits=attrs["weight_bits"] or _bits_for(*mats), gain=attrs.get("gain", 1.0),
        delay=None if delay is None else torch.as_tensor(delay),
    ), (n_out,)  # fmt: skip


def _average_layer(g, where: str, in_shape, name: str, prev: str):
    """slayer's ``average`` output layer (``AbstractAverage``: the mean over ``K`` contiguous
    equal groups of the previous layer's neurons, each step) as a readout without memory
    whose weights are 1 on each group: its logits are the group *sums*, ``n/K`` times
    slayer's average (the same class wins). netx itself cannot run this layer."""
    import torch

    from quantization.network import Readout

    k = int(np.prod(ints_field(g, "shape", where)))
    n = int(np.prod(in_shape))
    if k < 1 or n % k:
        raise NetxFileError(
            f"{where} field 'shape': {k} groups do not divide the previous layer's {n} neurons"
        )
    w = np.kron(np.eye(k, dtype=np.int64), np.ones((1, n // k), dtype=np.int64))
    return Readout(name, (prev,), torch.as_tensor(w), 0, READOUT_NO_MEMORY, weight_bits=2)


def _conv_layer(g, where: str, in_shape, attrs: dict, dv: int, vth: int):
    import torch

    from quantization.network import SpikingLayer

    if "delay" in g:
        raise NetxFileError(
            f"{where}: field 'delay' on a conv layer: netx ignores it (only dense layers get "
            "DelayDense), so the file would run without its delays; remove the field or the layer"
        )
    for key in ("weight/real", "weight/imag"):
        if key in g:
            raise NetxFileError(f"{where}: field {key!r} (complex weights) is not supported")
    if len(in_shape) != 3:
        raise NetxFileError(
            f"{where}: a conv layer needs a [C, H, W] input; it reads shape {list(in_shape)} "
            "(an input layer with a 3-D shape must come first; no conv after dense)"
        )
    w = ints_field(g, "weight", where)
    if w.ndim == 5 and w.shape[4] == 1:
        w = w[..., 0]
    if w.ndim != 4 or w.size == 0:
        raise NetxFileError(
            f"{where} field 'weight': shape {list(w.shape)}, expected [C_out, C_in/groups, kH, kW"
            "(, 1)]"
        )
    # netx indexes these four (hdf5.py:507-510): a file without them does not load
    stride = pair_field(g, "stride", where)
    padding = pair_field(g, "padding", where)
    dilation = pair_field(g, "dilation", where)
    groups = int_field(g, "groups", where)
    params = (*stride, *padding, *dilation, groups, *w.shape[2:])
    if min(params) < 0 or min(*stride, *dilation, groups) < 1 or max(params) > CONV_PARAM_MAX:
        raise NetxFileError(
            f"{where}: kernel {list(w.shape[2:])}, stride {list(stride)}, padding "
            f"{list(padding)}, dilation {list(dilation)}, groups {groups}: invalid or beyond "
            f"Lava's int8 ({CONV_PARAM_MAX})"
        )
    if w.shape[1] * groups != in_shape[0] or w.shape[0] % groups:
        raise NetxFileError(
            f"{where} field 'weight': shape {list(w.shape)} with groups = {groups} does not fit "
            f"{in_shape[0]} input channels"
        )
    for key, value in (
        ("inChannels", in_shape[0]),
        ("outChannels", w.shape[0]),
    ):
        if key in g and int_field(g, key, where) != value:
            raise NetxFileError(f"{where}: {key} = {int_field(g, key, where)}, expected {value}")
    if "kernelSize" in g and pair_field(g, "kernelSize", where) != tuple(w.shape[2:]):
        raise NetxFileError(
            f"{where}: kernelSize {list(pair_field(g, 'kernelSize', where))} does not match the "
            f"weight's {list(w.shape[2:])}"
        )
    hw = conv_out_hw(w.shape, in_shape[1:], stride, padding, dilation)
    out_shape = (int(w.shape[0]), *hw)
    shape = tuple(int(v) for v in ints_field(g, "shape", where).reshape(-1))
    if shape != out_shape:
        raise NetxFileError(
            f"{where} field 'shape': {list(shape)}, but the convolution gives {list(out_shape)} "
            "(C, H, W)"
        )
    lo, hi = int(w.min()), int(w.max())
    if lo < CONV_WEIGHT_MIN or hi > CONV_WEIGHT_MAX:
        raise NetxFileError(
            f"{where} field 'weight': values span [{lo}, {hi}], beyond "
            f"[{CONV_WEIGHT_MIN}, {CONV_WEIGHT_MAX}]"
        )
    _check_bound_file(where, w)
    bias, bias_exp = bias_field(g, where, out_shape[0], attrs["bias_exp"])
    return SpikingLayer(
        attrs["name"], (attrs["input"],), "conv", torch.as_tensor(w), attrs["weight_exp"], dv,
        vth, "hard", None if bias is None else torch.as_tensor(bias), bias_exp, None, stride,
        padding, dilation, groups, attrs["weight_bits"] or _bits_for(w),
        gain=attrs.get("gain", 1.0),
    ), out_shape  # fmt: skip


def _check_bound_file(where: str, *mats) -> None:
    try:
        check_sum_bound(where, *mats)
    except UnsupportedNodeError as e:
        raise NetxFileError(str(e)) from None


def _bits_for(*mats) -> int:
    """The fewest signed bits (≥ 2) that hold every weight."""
    lo = min(int(np.min(m)) for m in mats)
    hi = max(int(np.max(m)) for m in mats)
    bits = 2
    while lo < -(1 << (bits - 1)) or hi > (1 << (bits - 1)) - 1:
        bits += 1
    return bits


def read_netx(path: str | Path, num_layers: int | None = None) -> QNetwork:
    """Read a netx hdf5 file (the subset :func:`write_netx` writes) into a ``QNetwork``.

    ``num_layers`` reads only the file's first layers (netx's ``Network(num_layers=…)``:
    input and flatten layers count), e.g. to drop a trailing layer the toolkit cannot map.
    Dense layers may carry synaptic delays (``delay``); a last ``average`` layer becomes a
    group-sum readout (:func:`_average_layer`).

    The integer semantics come from the netx datasets alone (what netx would run); the
    ``stllr_*`` attributes, when present, restore the names, weight exponents, bias
    exponents, weight bits, input format, ``num_classes`` and ``meta``. Without them:
    nodes ``layer<i>``, weight exponent 0, ``bias_exp = 6``, the fewest weight bits,
    binary input spikes (``InputFormat(0, 0, 1)``), ``num_classes`` = the last layer's
    size. Raises :class:`NetxFileError` naming the layer and field for anything
    malformed or outside the subset.
    """
    import h5py

    from quantization.network import InputFormat, QNetwork

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise NetxFileError(f"{path}: not an hdf5 file ({e})") from None
    with f:
        if "layer" not in f or not isinstance(f["layer"], h5py.Group):
            raise NetxFileError(f"{path}: missing group 'layer'")
        top = f["layer"]
        keys = sorted(top.keys(), key=lambda k: (len(k), k))
        if not keys or keys != [str(i) for i in range(len(keys))]:
            raise NetxFileError(
                f"{path}: 'layer' must hold groups '0' … '{len(keys) - 1}' (netx reads them by "
                f"index), found {keys[:10]}"
            )
        if num_layers is not None:
            if num_layers < 1:
                raise NetxFileError(f"{path}: num_layers = {num_layers}, expected ≥ 1")
            keys = keys[:num_layers]
        ours = attr_field(f, "stllr_format", f"{path}", str, None) == NETX_FORMAT
        nodes, shape, in_shape = [], None, None
        flatten_next, prev = False, "input"
        for i in range(len(keys)):
            where = f"{path}: layer {i}"
            g = top[str(i)]
            if not isinstance(g, h5py.Group):
                raise NetxFileError(f"{where}: is a dataset, expected a group")
            kind = string_field(g, "type", where)
            where = f"{where} ({kind})"
            if kind == "input":
                if i != 0:
                    raise NetxFileError(f"{where}: an input layer must be layer 0")
                if "neuron" in g:
                    raise NetxFileError(
                        f"{where}: has a neuron (netx's Input block: a LIF driven by its "
                        "bias); only a plain input layer (type and shape) is supported"
                    )
                shape = in_shape = tuple(int(v) for v in ints_field(g, "shape", where).reshape(-1))
                if len(shape) not in (1, 3) or min(shape) < 1:
                    raise NetxFileError(
                        f"{where} field 'shape': {list(shape)} is not [N] or [C, H, W]"
                    )
                continue
            if kind == "flatten":
                if shape is None or len(shape) == 1:
                    raise NetxFileError(
                        f"{where}: flatten must follow a conv layer or a [C, H, W] input"
                    )
                if "shape" in g and int(np.prod(ints_field(g, "shape", where))) != int(
                    np.prod(shape)
                ):
                    raise NetxFileError(
                        f"{where} field 'shape': does not hold {int(np.prod(shape))} values"
                    )
                flatten_next = True
                continue
            if kind == "average":
                if i != len(keys) - 1 or not nodes or flatten_next:
                    raise NetxFileError(
                        f"{where}: an 'average' layer is supported only as the last layer, after "
                        f"a dense or conv layer (read the layers before it with num_layers={i})"
                    )
                name = attr_field(g, "stllr_name", where, str, f"layer{i}")
                nodes.append(_average_layer(g, where, shape, name, prev))
                shape = (nodes[-1].weight.shape[0],)
                continue
            if kind in NETX_NOT_IMPLEMENTED or kind == "dense_comp":
                raise NetxFileError(
                    f"{where}: layer type {kind!r} is not supported (netx: NotImplementedError "
                    f"or complex neurons); read the layers before it with num_layers={i}"
                )
            if kind not in ("dense", "dense_rec", "conv"):
                raise NetxFileError(f"{where}: unknown layer type {kind!r}")
            attrs = {
                "name": attr_field(g, "stllr_name", where, str, f"layer{i}"),
                "weight_exp": attr_field(g, "stllr_weight_exp", where, int, 0),
                "bias_exp": attr_field(g, "stllr_bias_exp", where, int, NETX_BIAS_EXP),
                "weight_bits": attr_field(g, "stllr_weight_bits", where, int, 0),
                "gain": attr_field(g, "stllr_gain", where, float, 1.0),
                "input": prev,
            }
            du, dv, vth = neuron_fields(g, where)
            if kind == "conv":
                if flatten_next:
                    raise NetxFileError(f"{where}: a flatten layer must be followed by a dense")
                if shape is None:
                    raise NetxFileError(
                        f"{where}: no input layer gives the input shape (netx needs one)"
                    )
                node, out = _conv_layer(g, where, shape, attrs, dv, vth)
            else:
                if shape is None:  # no input layer: the weights give the input size
                    w = ints_field(g, "weight", where)
                    if w.ndim != 2:
                        raise NetxFileError(
                            f"{where}: without an input layer the weight must be [out, in]"
                        )
                    shape = in_shape = (int(w.shape[1]),)
                elif len(shape) == 3 and not flatten_next:
                    if nodes:  # netx would connect a (W, H, C) port to a flat one
                        raise NetxFileError(
                            f"{where}: reads a [C, H, W] tensor {list(shape)} without a "
                            "flatten layer before it"
                        )
                    if shape[1] * shape[2] == 1:  # an [N, 1, 1] input: N features
                        shape = in_shape = (int(shape[0]),)
                node, out = _dense_layer(g, where, kind == "dense_rec", shape, attrs, dv, vth)
                flatten_next = False
            if du != I_DECAY_NONE - 1:  # a current-based LIF (CuLIF)
                node = dataclasses.replace(node, du=du)
            if node.name in {n.name for n in nodes} or node.name == "input":
                raise NetxFileError(f"{where}: duplicate node name {node.name!r}")
            nodes.append(node)
            prev, shape = node.name, out
        if flatten_next:
            raise NetxFileError(f"{path}: the last layer is a flatten layer")
        if not nodes:
            raise NetxFileError(f"{path}: no dense or conv layer")
        where = f"{path}"
        num_classes = int(np.prod(shape))
        fmt, meta = InputFormat(0, 0, 1), {"source": "netx"}
        if ours:
            num_classes = attr_field(f, "stllr_num_classes", where, int, num_classes)
            try:
                fmt = InputFormat(
                    **json.loads(attr_field(f, "stllr_input_format", where, str, "{}"))
                )
                meta = json.loads(attr_field(f, "stllr_meta", where, str, "{}"))
            except (TypeError, ValueError) as e:
                raise NetxFileError(f"{where}: malformed stllr attributes ({e})") from None
        return QNetwork(tuple(nodes), tuple(in_shape), num_classes, fmt, meta)
