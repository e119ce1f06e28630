"""Writing: :func:`write_netx` puts a planned network into a netx hdf5 file.

The layers come from :func:`~lava_models.netx.plan.plan_netx` (nothing is written if
it refuses the network), are laid out as :mod:`lava_models.netx.layout` describes,
and go to ``<path>.tmp`` first, renamed to ``path`` once complete. Only numpy is
imported at module level (h5py inside the function).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lava_models.netx.layout import NETX_FORMAT
from lava_models.netx.plan import plan_netx

if TYPE_CHECKING:  # the module imports only numpy at top level (docs/lava.md §7, pitfall 4)
    from quantization.network import QNetwork


def _write_type(g, value: str) -> None:
    g.create_dataset("type", (1,), "S10", [value.encode("ascii")])


def write_netx(qnet: QNetwork, path: str | Path, *, t_sample: int = 1) -> None:
    """Write ``qnet`` as a netx hdf5 file (layout: :mod:`lava_models.netx.layout`;
    exactness: :mod:`lava_models.netx`).

    ``t_sample`` goes to ``simulation/tSample`` (informational; netx ignores it).
    Raises :class:`UnsupportedNodeError` naming the node before anything is written.
    """
    import h5py

    layers = plan_netx(qnet)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["stllr_format"] = NETX_FORMAT
        f.attrs["stllr_num_classes"] = int(qnet.num_classes)
        fmt = qnet.input_format
        f.attrs["stllr_input_format"] = json.dumps(dataclasses.asdict(fmt))
        f.attrs["stllr_meta"] = json.dumps(qnet.meta, default=str)
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=np.int64(1))
        sim.create_dataset("tSample", data=np.int64(t_sample))
        top = f.create_group("layer")
        for i, layer in enumerate(layers):
            g = top.create_group(str(i))
            _write_type(g, layer["type"])
            g.create_dataset("shape", data=np.asarray(layer["shape"], dtype=np.int64))
            if layer["type"] == "average":  # slayer's layer: type and shape only
                g.attrs["stllr_name"] = layer["node"].name
            elif "node" in layer:
                _write_node(g, layer)
    tmp.replace(path)


def _write_node(g, layer: dict) -> None:
    n = layer["node"]
    m = layer["weight"]
    if layer["type"] == "conv":
        g.create_dataset("inChannels", data=np.int64(m.shape[1] * n.groups))
        g.create_dataset("outChannels", data=np.int64(m.shape[0]))
        g.create_dataset("kernelSize", data=np.asarray(m.shape[2:], dtype=np.int64))
        for key in ("stride", "padding", "dilation"):
            g.create_dataset(key, data=np.asarray(getattr(n, key), dtype=np.int64))  # [H, W]
        g.create_dataset("groups", data=np.int64(n.groups))
        g.create_dataset("weight", data=m[..., None].astype(np.int32))
    else:
        g.create_dataset("inFeatures", data=np.int64(m.shape[1]))
        g.create_dataset("outFeatures", data=np.int64(m.shape[0]))
        g.create_dataset("weight", data=m.astype(np.int32))
        if "weight_rec" in layer:
            g.create_dataset("weight_rec", data=layer["weight_rec"].astype(np.int32))
        if "delay" in layer:  # [out] (slayer's per-neuron delay) or [out, in]
            g.create_dataset("delay", data=layer["delay"].astype(np.float32))
    if "bias" in layer:
        g.create_dataset("bias", data=layer["bias"].astype(np.int32))
    neuron = g.create_group("neuron")
    neuron.create_dataset("type", data="CUBA")  # variable-length string, as slayer writes it
    neuron.create_dataset("iDecay", data=np.int64(n.du + 1))  # netx: du = iDecay − 1
    neuron.create_dataset("vDecay", data=np.int64(n.dv))
    neuron.create_dataset("vThMant", data=np.int64(n.vth))
    neuron.create_dataset("refDelay", data=np.int64(1))
    neuron.create_dataset("gradedSpike", data=np.bool_(False))
    g.attrs["stllr_name"] = n.name
    g.attrs["stllr_weight_exp"] = int(n.weight_exp)
    g.attrs["stllr_bias_exp"] = int(n.bias_exp)
    g.attrs["stllr_weight_bits"] = int(n.weight_bits)
    if n.gain != 1.0:  # PTQ's non-power-of-two scale (documentation only: no run-time effect)
        g.attrs["stllr_gain"] = float(n.gain)
