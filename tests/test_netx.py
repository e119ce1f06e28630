"""netx hdf5 files: lossless round trip, netx's layout and semantics, clear errors.

Networks are built like ``hw_tests/test_emulator_vs_lava_builtin.py`` builds them
(S-TLLR layers with hard reset in a ``stllr.models.chain.SpikingChain``, PTQ), their
biases snapped to netx's grid, written with :func:`write_netx` and
checked three ways:

* :func:`read_netx` gives back identical integer tensors and parameters, and the
  integer emulator runs both networks bit-identically;
* an independent reader (:class:`_NetxLike`, written from netx's ``hdf5.py``,
  ``utils.py`` and ``blocks/process.py`` and lava-nc's Dense/Conv/LIF fixed models,
  in Lava's (W, H, C) layout with its own numpy convolution) runs the *file* and must
  equal ``IntegerEmulator(qnet, delay=1)`` on the original network for s, u and v;
* keys, dtypes and shape orders are checked against docs/lava.md §5.

The emulator has no flatten between a conv and a dense node, so conv networks are
emulated node by node (:func:`emulate_lockstep`), which equals the full emulator on
dense chains (checked).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from lava_models.builtin import UnsupportedNodeError
from lava_models.netx import (
    I_DECAY_NONE,
    NETX_FORMAT,
    NetxFileError,
    NetxInexactError,
    check_netx_dense,
    netx_dense_synapse,
    plan_netx,
    read_netx,
    snap_bias_to_netx,
    write_netx,
)
from quantization.emulator import IntegerEmulator
from quantization.learning_formats import LearningSpec
from quantization.network import (
    Add,
    GlobalSumPool,
    InputFormat,
    Pool,
    QNetwork,
    Readout,
    SpikingLayer,
)
from quantization.ptq import PTQConfig, quantize_model
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.chain import SpikingChain
from stllr.neuron import LIFParams

T = 25
LIMIT = 1 << 23


# --- float models -------------------------------------------------------------------------


def _hard(leak, threshold):
    return LIFParams(leak=leak, threshold=threshold, reset="hard")


def _layers(case: str):
    if case == "dense":
        return (30,), [
            LinearSTLLR(30, 20, lif=_hard(2.0, 0.6)),
            LinearSTLLR(20, 10, lif=_hard(0.5, 0.8)),
        ]
    if case == "dense_rec":
        return (24,), [
            RecurrentLinearSTLLR(24, 16, lif=_hard(1.0, 0.6)),
            LinearSTLLR(16, 8, lif=_hard(0.5, 0.7)),
        ]
    if case == "conv":  # asymmetric kernel, stride, padding, dilation; groups; C, H, W all differ
        c1 = Conv2dSTLLR(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                         lif=_hard(1.5, 0.6))  # fmt: skip
        c2 = Conv2dSTLLR(4, 4, 3, padding=1, groups=2, lif=_hard(1.0, 0.6))
        h, w = c2.output_shape(*c1.output_shape(7, 9))
        return (2, 7, 9), [c1, c2, LinearSTLLR(4 * h * w, 6, lif=_hard(0.5, 0.7))]
    if case == "image_dense":  # a dense layer reading a [C, H, W] input directly
        return (2, 4, 5), [
            LinearSTLLR(40, 12, lif=_hard(1.0, 0.6)),
            LinearSTLLR(12, 5, lif=_hard(0.5, 0.7)),
        ]
    raise KeyError(case)


def build_network(case: str, seed: int = 0, bits: int = 8, steps: int = T, rate: float = 0.35):
    """``(qnet, x)``: the PTQ network of ``case`` (biases as PTQ made them) and binary
    input spikes ``[steps, *input_shape]`` (int64)."""
    torch.manual_seed(seed)
    shape, layers = _layers(case)
    model = SpikingChain(shape, layers, prefix="l")
    with torch.no_grad():
        for layer in model.layers:  # non-zero biases and a gain that drives the next layer
            layer.bias.uniform_(-0.7, 0.4)
            layer.gain.fill_(2.0)
    g = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(steps, 1, *shape, generator=g) < rate).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, x[:, 0].numpy().astype(np.int64)


# --- emulation ----------------------------------------------------------------------------


def emulate_lockstep(qnet: QNetwork, x: np.ndarray, delay: int = 1) -> dict:
    """s, u, v of every node at every step, from one single-node emulator per node
    stepped together (a dense node reading [C, H, W] gets its input flattened)."""
    shapes = {"input": tuple(int(v) for v in qnet.input_shape)}
    parts = []
    for n in qnet.nodes:
        in_shape = shapes[n.inputs[0]]
        flat = n.kind == "dense" and len(in_shape) == 3
        sub_in = (int(np.prod(in_shape)),) if flat else in_shape
        sub = QNetwork((dataclasses.replace(n, inputs=("input",)),), sub_in, 1)
        zero = torch.zeros(1, *sub_in, dtype=torch.int64)
        shapes[n.name] = tuple(IntegerEmulator(sub).step(zero)[n.name].shape[1:])
        parts.append((n, IntegerEmulator(sub, delay=delay), flat))
    rec = {n.name: {"s": [], "u": [], "v": []} for n in qnet.nodes}
    for t in range(x.shape[0]):
        outs = {"input": torch.as_tensor(x[t])[None]}
        for n, emu, flat in parts:
            inp = outs[n.inputs[0]]
            outs[n.name] = emu.step(inp.flatten(1) if flat else inp)[n.name]
            st = emu.state[n.name]
            for key, val in (("s", outs[n.name]), ("u", st.u), ("v", st.v)):
                rec[n.name][key].append(val[0].numpy().astype(np.int64))
    return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}


def emulate_full(qnet: QNetwork, x: np.ndarray, delay: int = 1) -> dict:
    emu = IntegerEmulator(qnet, delay=delay)
    rec = {n.name: {"s": [], "u": [], "v": []} for n in qnet.nodes}
    for t in range(x.shape[0]):
        outs = emu.step(torch.as_tensor(x[t])[None])
        for n in qnet.nodes:
            st = emu.state[n.name]
            for key, val in (("s", outs[n.name]), ("u", st.u), ("v", st.v)):
                rec[n.name][key].append(val[0].numpy().astype(np.int64))
    return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}


def assert_records_equal(a: dict, b: dict, label: str) -> None:
    assert a.keys() == b.keys(), label
    for name in a:
        for key in ("s", "u", "v"):
            np.testing.assert_array_equal(
                a[name][key], b[name][key], err_msg=f"{label}: {name}.{key}"
            )


# --- an independent reader + simulator following netx and lava-nc --------------------------


def _netdict_str(g) -> str:
    """utils.py:59-66: 'type' is the first element of a 1-D array, or the scalar."""
    value = g["type"]
    value = value[0] if len(value.shape) > 0 else value[()]
    return value.decode("ascii")


def _netx_optimize_weight_bits(weight):
    """utils.py:101-158, statement by statement (without the prints)."""
    max_weight, min_weight = np.max(weight), np.min(weight)
    if max_weight > 254 and min_weight < 0:
        weight = np.clip(weight, -256, 254)
        max_weight = np.max(weight)
    if min_weight < -256 and max_weight > 0:
        weight = np.clip(weight, -256, 254)
        min_weight = np.min(weight)
    if max_weight < 0:
        sign_mode, is_signed = "INHIBITORY", 0
    elif min_weight >= 0:
        sign_mode, is_signed = "EXCITATORY", 0
    else:
        sign_mode, is_signed = "MIXED", 1
    with np.errstate(divide="ignore"):
        if sign_mode == "MIXED":
            scale = np.min([127 / max_weight, -128 / min_weight])
        elif sign_mode == "INHIBITORY":
            scale = -256 / min_weight
        else:
            scale = 255 / max_weight
    scale_bits = np.floor(np.log2(scale)) + is_signed
    precision_found, n = False, 8
    while (precision_found is False) and (n > 0):
        if np.sum(np.abs(weight / (2**n) - np.round(weight / (2**n)))) == 0:
            precision_found = True
        else:
            n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight = np.left_shift(weight.astype(np.int32), int(scale_bits))
    return weight.astype(int), int(num_weight_bits), int(-scale_bits)


def _lava_dense_fixed_weights(w, num_weight_bits):
    """lava-nc dense/models.py:82-90 with weightutils.py determine/clip/truncate."""
    w = np.asarray(w).astype(np.int32)
    if np.min(w) >= 0:
        mode = "EXCITATORY"
    elif np.max(w) <= 0:
        mode = "INHIBITORY"
    else:
        mode = "MIXED"
    sign = -1 if mode == "INHIBITORY" else 1
    w = sign * w
    w = np.clip(w, -256 if mode == "MIXED" else 0, 255)
    k = 8 - num_weight_bits + int(mode == "MIXED")
    w = (w >> k) << k
    return (sign * w).astype(np.int64)


def _convolve2d_valid(a, k):
    """scipy.signal.convolve2d(a, k, 'valid'): a true convolution (the kernel flipped)."""
    win = np.lib.stride_tricks.sliding_window_view(a, k.shape)
    return np.einsum("xyij,ij->xy", win, k[::-1, ::-1])


def _lava_conv(x, w, stride, padding, dilation, groups):
    """lava-nc conv/utils.py conv_scipy, in Lava's (W, H, C) layout."""
    kx, ky = w.shape[1:3]
    dil = np.zeros((w.shape[0], dilation[0] * (kx - 1) + 1, dilation[1] * (ky - 1) + 1, w.shape[3]))
    dil[:, :: dilation[0], :: dilation[1], :] = w
    xp = np.pad(x, ((padding[0], padding[0]), (padding[1], padding[1]), (0, 0)))
    ox = (x.shape[0] + 2 * padding[0] - dil.shape[1]) // stride[0] + 1
    oy = (x.shape[1] + 2 * padding[1] - dil.shape[2]) // stride[1] + 1
    out = np.zeros((ox, oy, w.shape[0]), dtype=np.int64)
    k_grp, c_grp = w.shape[0] // groups, x.shape[2] // groups
    for g in range(groups):
        for k in range(k_grp):
            for c in range(c_grp):
                full = _convolve2d_valid(xp[:, :, c + g * c_grp], dil[k + g * k_grp, :, :, c])
                out[:, :, k + g * k_grp] += full[:: stride[0], :: stride[1]].astype(np.int64)
    return (out + LIMIT) % (2 * LIMIT) - LIMIT  # utils.signed_clamp(x, 24): a wrap


def _decay(x, d):
    x = x * (4096 - d)
    return np.sign(x) * (np.abs(x) >> 12)


class _NetxLike:
    """What ``hdf5.Network(path)`` builds, as numpy (Lava's layout, fixed_pt models)."""

    def __init__(self, path):
        self.layers = []
        input_shape, flatten_next = None, False
        with h5py.File(path, "r") as f:
            cfg = f["layer"]
            for i in range(len(cfg)):  # hdf5.py:574-580
                g = cfg[f"{i}"]
                kind = _netdict_str(g)
                if kind == "input":
                    assert "neuron" not in g  # else netx builds an Input block
                    input_shape = tuple(g["shape"][()][::-1])  # hdf5.py:597
                elif kind == "flatten":
                    flatten_next = True  # hdf5.py:634-636
                elif kind in ("dense", "dense_rec", "conv"):
                    layer = self._neuron(g)
                    if kind == "conv":
                        in_shape = self.layers[-1]["shape"] if self.layers else input_shape
                        layer.update(self._conv(g, in_shape))
                    else:
                        layer.update(self._dense(g, kind == "dense_rec"))
                        layer["flatten"], flatten_next = flatten_next, False
                    layer["name"] = g.attrs.get("stllr_name", f"layer{i}")
                    self.layers.append(layer)
                else:
                    raise AssertionError(f"unexpected layer type {kind}")

    @staticmethod
    def _neuron(g):
        nrn = g["neuron"]
        assert _netdict_str(nrn) in ("CUBA", "LOIHI")
        p = {  # hdf5.py:151-159 → LIF(du = iDecay − 1, dv = vDecay, vth = vThMant, bias_exp = 6)
            "du": int(nrn["iDecay"][()]) - 1,
            "dv": int(nrn["vDecay"][()]),
            "vth": int(nrn["vThMant"][()]),
            "bias_exp": 6,
        }
        p["bias"] = g["bias"][()].astype(int).copy() if "bias" in g else None  # utils.py:68
        return p

    @staticmethod
    def _dense(g, rec):
        shape = (int(np.prod(g["shape"][()])),)  # hdf5.py:346
        weight = g["weight"][()].astype(int).copy()
        weight_rec = g["weight_rec"][()].astype(int).copy() if rec else None
        if weight.ndim == 1:
            weight = weight.reshape(shape[0], -1)
            if rec:
                weight_rec = weight_rec.reshape(shape[0], -1)
        if rec:  # hdf5.py:401-407: one optimisation for [W | W_rec]
            joint, nwb, wexp = _netx_optimize_weight_bits(np.hstack((weight, weight_rec)))
            weight, weight_rec = joint[:, : weight.shape[1]], joint[:, weight.shape[1] :]
        else:
            weight, nwb, wexp = _netx_optimize_weight_bits(weight)
        out = {"kind": "dense", "shape": shape, "wexp": wexp,
               "w": _lava_dense_fixed_weights(weight, nwb)}  # fmt: skip
        if rec:
            out["w_rec"] = _lava_dense_fixed_weights(weight_rec, nwb)
        return out

    @staticmethod
    def _conv(g, in_shape):
        def expand(x):  # hdf5.py:496-499
            return np.array([x, x]) if np.isscalar(x) else x[::-1]

        weight = g["weight"][()].astype(int)[:, :, ::-1, ::-1]  # hdf5.py:505-506
        weight = weight.reshape(weight.shape[:4]).transpose((0, 3, 2, 1))
        shape = tuple(g["shape"][()][::-1])
        conv = {
            "kind": "conv",
            "shape": shape,
            "w": weight,
            "stride": expand(g["stride"][()]),
            "padding": expand(g["padding"][()]),
            "dilation": expand(g["dilation"][()]),
            "groups": int(g["groups"][()]),
        }
        probe = np.zeros(in_shape, dtype=np.int64)
        out = _lava_conv(probe, weight, conv["stride"], conv["padding"], conv["dilation"],
                         conv["groups"])  # fmt: skip
        assert out.shape == shape  # blocks/process.py:461-465
        return conv

    def run(self, x_lava):
        """s, u, v (Lava layout) per layer for input spikes ``[T, *input (W, H, C)]``."""
        st = []
        for L in self.layers:
            z = np.zeros(L["shape"], dtype=np.int64)
            bias = np.zeros(L["shape"], dtype=np.int64)
            if L["bias"] is not None:  # blocks/process.py:57-64: neuron-wise or channel-wise
                bias[...] = L["bias"]
            st.append({"u": z, "v": z, "a": z, "a_rec": z, "bias": bias})
        rec = {L["name"]: {"s": [], "u": [], "v": []} for L in self.layers}
        for t in range(x_lava.shape[0]):
            inp = x_lava[t]
            for L, S in zip(self.layers, st, strict=True):
                a = S["a"] + S["a_rec"]  # every Dense/Conv sends last step's sum first
                if L["kind"] == "conv":
                    S["a"] = _lava_conv(inp, L["w"], L["stride"], L["padding"], L["dilation"],
                                        L["groups"])  # fmt: skip
                else:
                    if L["flatten"]:  # hdf5.py:657: out.transpose([2, 1, 0]).flatten()
                        inp = inp.transpose(2, 1, 0).reshape(-1)
                    S["a"] = self._dense_sum(L["w"], inp, L["wexp"])
                u = _decay(S["u"], L["du"] + 1) + (a << 6)  # lif/models.py:143-171
                u = np.where(u > LIMIT, u - 2 * LIMIT, u)
                u = np.where(u <= -LIMIT, u + 2 * LIMIT, u)
                v = _decay(S["v"], L["dv"]) + u + (S["bias"] << L["bias_exp"])
                v = np.clip(v, -LIMIT + 1, LIMIT - 1)
                s = v > (L["vth"] << 6)
                v = np.where(s, 0, v)
                S["u"], S["v"] = u, v
                if "w_rec" in L:  # blocks/process.py:302-304: s_out → Dense → a_in
                    S["a_rec"] = self._dense_sum(L["w_rec"], s, L["wexp"])
                inp = s.astype(np.int64)
                for key, val in (("s", inp), ("u", u), ("v", v)):
                    rec[L["name"]][key].append(val)
        return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}

    @staticmethod
    def _dense_sum(w, s, wexp):
        acc = w[:, s.astype(bool)].sum(axis=1)  # dense/models.py:101-107
        return acc << wexp if wexp > 0 else acc >> -wexp


def run_netx_like(path, qnet: QNetwork, x: np.ndarray) -> dict:
    """The independent simulation of the file, converted back to our [C, H, W] layout."""
    net = _NetxLike(path)
    xl = x.reshape(x.shape[0], *qnet.input_shape)
    if xl.ndim == 4:
        xl = xl.transpose(0, 3, 2, 1)
    out = net.run(xl)
    for rec in out.values():
        for key, val in rec.items():
            if val.ndim == 4:
                rec[key] = val.transpose(0, 3, 2, 1)
    return out


# --- round trip and semantics ---------------------------------------------------------------

INFERENCE_FIELDS = ("name", "inputs", "kind", "weight_exp", "dv", "vth", "reset", "bias_exp",
                    "stride", "padding", "dilation", "groups", "weight_bits",
                    "learning")  # fmt: skip


def assert_same_network(a: QNetwork, b: QNetwork) -> None:
    assert tuple(a.input_shape) == tuple(b.input_shape)
    assert (a.num_classes, a.input_format, a.meta) == (b.num_classes, b.input_format, b.meta)
    assert len(a.nodes) == len(b.nodes)
    for m, n in zip(a.nodes, b.nodes, strict=True):
        for f in INFERENCE_FIELDS:
            assert getattr(m, f) == getattr(n, f), (m.name, f)
        for f in ("weight", "weight_rec", "bias_mant"):
            x, y = getattr(m, f), getattr(n, f)
            assert (x is None) == (y is None), (m.name, f)
            if x is not None:
                assert y.dtype == torch.int64 and torch.equal(x, y), (m.name, f)


CASES = [("dense", 0, 8), ("dense", 1, 4), ("dense_rec", 0, 8), ("dense_rec", 2, 6),
         ("conv", 0, 8), ("conv", 1, 4), ("image_dense", 0, 6)]  # fmt: skip


@pytest.mark.parametrize("case,seed,bits", CASES)
def test_round_trip_and_netx_semantics(tmp_path, case, seed, bits):
    raw, x = build_network(case, seed, bits)
    with pytest.raises(UnsupportedNodeError, match="snap_bias_to_netx"):
        write_netx(raw, tmp_path / "raw.net")  # PTQ biases are not multiples of 64
    assert not (tmp_path / "raw.net").exists()
    qnet = snap_bias_to_netx(raw)
    path = tmp_path / f"{case}.net"
    write_netx(qnet, path, t_sample=T)
    back = read_netx(path)
    assert_same_network(qnet, back)

    ref = emulate_lockstep(qnet, x)
    for n in qnet.nodes:  # a non-trivial run in every layer
        s = ref[n.name]["s"]
        assert 0 < s.sum() < s.size, f"{n.name}: {int(s.sum())} spikes of {s.size}"
    assert_records_equal(emulate_lockstep(back, x), ref, "re-read network")
    if all(n.kind == "dense" for n in qnet.nodes) and len(qnet.input_shape) == 1:
        assert_records_equal(emulate_full(qnet, x), ref, "full emulator vs lockstep")
        assert_records_equal(emulate_full(back, x, delay=0), emulate_full(qnet, x, delay=0), "d0")
    assert_records_equal(run_netx_like(path, qnet, x), ref, "netx-like simulation of the file")


def test_recurrence_reaches_the_file(tmp_path):
    """dense_rec's weight_rec changes the dynamics (so the tests above exercise it)."""
    qnet = snap_bias_to_netx(build_network("dense_rec", 0, 8)[0])
    x = build_network("dense_rec", 0, 8)[1]
    path = tmp_path / "rec.net"
    write_netx(qnet, path)
    with h5py.File(path, "r") as f:
        assert f["layer/1/type"][0] == b"dense_rec" and "weight_rec" in f["layer/1"]
    no_rec = qnet.replace_node(dataclasses.replace(qnet.nodes[0], weight_rec=None))
    a, b = emulate_lockstep(qnet, x), emulate_lockstep(no_rec, x)
    assert not np.array_equal(a["l0"]["s"], b["l0"]["s"])


def test_file_layout_matches_lava_md(tmp_path):
    """Keys, dtypes and shape orders of docs/lava.md §5 / netx's hdf5.py, field by field."""
    qnet = snap_bias_to_netx(build_network("conv", 0, 8)[0])
    path = tmp_path / "conv.net"
    write_netx(qnet, path, t_sample=17)
    c1, c2, fc = qnet.nodes
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"layer", "simulation"}
        assert f["simulation/Ts"][()] == 1 and f["simulation/tSample"][()] == 17
        assert f.attrs["stllr_format"] == NETX_FORMAT
        layer = f["layer"]
        assert sorted(layer.keys(), key=int) == ["0", "1", "2", "3", "4"]
        types = []
        for i in range(5):
            t = layer[f"{i}/type"]
            assert t.dtype == np.dtype("S10") and t.shape == (1,)
            types.append(t[0].decode())
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert list(layer["0"].keys()) == ["shape", "type"]  # no neuron: no Input block
        assert list(layer["0/shape"][()]) == [2, 7, 9]  # C, H, W
        g = layer["1"]
        assert set(g.keys()) == {"type", "shape", "inChannels", "outChannels", "kernelSize",
                                 "stride", "padding", "dilation", "groups", "weight", "bias",
                                 "neuron"}  # fmt: skip
        assert list(g["shape"][()]) == [4, 4, 7]  # C_out, H', W'
        assert g["weight"].dtype == np.int32 and g["weight"].shape == (4, 2, 3, 2, 1)
        np.testing.assert_array_equal(g["weight"][()][..., 0], c1.weight.numpy())
        assert list(g["kernelSize"][()]) == [3, 2]  # kH, kW
        assert list(g["stride"][()]) == [2, 1] and list(g["padding"][()]) == [1, 0]
        assert list(g["dilation"][()]) == [1, 2] and g["groups"][()] == 1
        assert (g["inChannels"][()], g["outChannels"][()]) == (2, 4)
        assert layer["2/groups"][()] == 2 and list(layer["2/shape"][()]) == [4, 4, 7]
        assert list(layer["3/shape"][()]) == [4 * 4 * 7, 1, 1]
        d = layer["4"]
        assert list(d["shape"][()]) == [6]
        assert (d["inFeatures"][()], d["outFeatures"][()]) == (112, 6)
        assert d["weight"].dtype == np.int32 and d["weight"].shape == (6, 112)
        np.testing.assert_array_equal(d["weight"][()], fc.weight.numpy())
        for key, node in (("1", c1), ("2", c2), ("4", fc)):
            nrn = layer[f"{key}/neuron"]
            assert set(nrn.keys()) == {"type", "iDecay", "vDecay", "vThMant", "refDelay",
                                       "gradedSpike"}  # fmt: skip
            assert nrn["type"][()] == b"CUBA" and nrn["type"].dtype.kind == "O"  # vlen str
            for k in ("iDecay", "vDecay", "vThMant", "refDelay"):
                assert nrn[k].shape == () and nrn[k].dtype == np.int64
            assert nrn["iDecay"][()] == I_DECAY_NONE == 4095 + 1  # Lava du = iDecay − 1
            assert (nrn["vDecay"][()], nrn["vThMant"][()]) == (node.dv, node.vth)
            b = layer[f"{key}/bias"]
            assert b.dtype == np.int32 and b.shape == (node.out_channels,)
            np.testing.assert_array_equal(  # netx adds bias << 6; ours bias_mant << bias_exp
                b[()].astype(np.int64) << 6, node.bias_mant.numpy() << node.bias_exp
            )
            assert layer[key].attrs["stllr_name"] == node.name


def test_plan_lists_layers_without_writing():
    qnet = snap_bias_to_netx(build_network("image_dense", 0, 8)[0])
    plan = plan_netx(qnet)
    assert [p["type"] for p in plan] == ["input", "flatten", "dense", "dense"]
    assert plan[1]["shape"] == (40, 1, 1)


def test_snap_bias_rounds_to_netx_grid():
    raw = build_network("conv", 0, 8)[0]
    snapped = snap_bias_to_netx(raw)
    for a, b in zip(raw.nodes, snapped.nodes, strict=True):
        before = a.bias_mant << a.bias_exp
        assert b.bias_exp == 6 and b.bias_mant.dtype == torch.int64
        after = b.bias_mant << 6
        assert (after - before).abs().max() <= 32 and bool(b.bias_mant.any())
    again = snap_bias_to_netx(snapped)  # idempotent
    for x, y in zip(snapped.nodes, again.nodes, strict=True):
        assert torch.equal(x.bias_mant, y.bias_mant) and x.bias_exp == y.bias_exp


def test_module_imports_without_lava_torch_or_h5py():
    code = (
        "import sys, lava_models.netx\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lava', 'torch', 'h5py'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# --- netx's weight processing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "w,shift,bits,exact",
    [
        ([[127, -128, 3]], 1, 8, True),  # 8-bit mixed: ×2, weight_exp −1 (the builtin trick)
        ([[7, -8, 1]], 5, 4, True),  # 4-bit mixed: ×32, truncate 5 zero bits
        ([[6, -8, 2]], 5, 3, True),  # common trailing zero: one bit fewer
        ([[255, 0, 17]], 0, 8, True),  # excitatory, full 8 bits
        ([[100, 3]], 1, 7, True),
        ([[-100, -3]], 1, 7, True),  # inhibitory, no power of two at the bottom
        ([[-128, -3]], 1, 7, False),  # inhibitory: -256 clips to -255
        ([[-128, 0]], 1, 1, False),  # max 0: netx says MIXED, Lava INHIBITORY
        ([[-100, 0]], 1, 6, True),  # −100 = −4·25: two shared zero bits
    ],
)
def test_netx_dense_synapse_cases(w, shift, bits, exact):
    w = np.array(w)
    syn = netx_dense_synapse(w)
    assert (syn.shift, syn.num_weight_bits, syn.exact_for([w])) == (shift, bits, exact)
    if exact:
        assert check_netx_dense(w) == shift
    else:
        with pytest.raises(NetxInexactError, match="−256"):
            check_netx_dense(w)


@pytest.mark.parametrize(
    "w,match",
    [
        ([[0, 0]], "all weights are zero"),
        ([[255, -1]], "clips"),
        ([[-300, 2]], "clips"),
        ([[300, 2]], "shift < 0"),
    ],  # fmt: skip
)
def test_netx_dense_synapse_refuses(w, match):
    with pytest.raises(NetxInexactError, match=match):
        netx_dense_synapse(np.array(w))


def test_netx_dense_model_equals_netx_statements():
    """The module's model equals the statement-by-statement copy of netx's arithmetic."""
    rng = np.random.default_rng(0)
    checked = exact = 0
    for _ in range(3000):
        lo = int(rng.choice([-256, -255, -129, -128, -127, -64, -33, -1, 0, 1]))
        hi = int(rng.choice([-1, 0, 1, 64, 126, 127, 128, 200, 254]))
        lo, hi = min(lo, hi), max(lo, hi)
        w = rng.integers(lo, hi + 1, size=(int(rng.integers(1, 4)), int(rng.integers(1, 5))))
        w.flat[0], w.flat[-1] = lo, hi
        if rng.random() < 0.3:
            w = w - (w % (1 << int(rng.integers(1, 4))))
        mats = [w]
        if rng.random() < 0.4:
            r = rng.integers(lo, hi + 1, size=(w.shape[0], w.shape[0]))
            mats.append(np.minimum(r, 0) if rng.random() < 0.3 else r)
        joint = np.hstack(mats)
        if joint.max() == 0 and joint.min() == 0:
            continue
        try:
            syn = netx_dense_synapse(*mats)
        except NetxInexactError:
            continue
        ref, nwb, wexp = _netx_optimize_weight_bits(joint)
        assert (syn.shift, syn.num_weight_bits) == (-wexp, nwb)
        k = 0
        for m, ours in zip(mats, syn.weights, strict=True):
            part = _lava_dense_fixed_weights(ref[:, k : k + m.shape[1]], nwb)
            k += m.shape[1]
            np.testing.assert_array_equal(ours, part)
        checked += 1
        exact += syn.exact_for(mats)
    assert checked > 1500 and 0 < exact < checked


# --- writer errors -------------------------------------------------------------------------


def _dense(name="fc0", inputs=("input",), w=None, **kw):
    w = torch.tensor([[3, -2, 1], [0, 5, -7]]) if w is None else w
    return SpikingLayer(name, inputs, "dense", w, -4, 300, 6, kw.pop("reset", "hard"), **kw)


def _conv(name="c0", inputs=("input",), **kw):
    w = torch.tensor([[[[1, -2], [3, 0]]], [[[0, 4], [-1, 2]]]])  # [2, 1, 2, 2]
    return SpikingLayer(name, inputs, "conv", w, -3, 200, 5, "hard", **kw)


def _writer_cases():
    head = Readout("head", ("fc0",), torch.ones(2, 2, dtype=torch.int64), -3, 4096)
    spec = LearningSpec(lam_pre=4000, lam_post=4000, a_pre=64, a_post=64, a_frac=6, p_frac=4,
                        q_frac=4, l_exp=-7, lr_mant=100, lr_shift=10)  # fmt: skip
    d3 = (3,)
    yield "soft reset", (_dense(reset="soft"),), d3, "fc0", "reset 'soft'"
    yield "readout", (_dense(), head), d3, "head", "readout"
    yield "pool", (_conv(), Pool("p", ("c0",), "max", 2)), (1, 4, 4), "p", "pool"
    yield "avg", (_conv(), GlobalSumPool("g", ("c0",))), (1, 4, 4), "g", "average"
    yield "add", (_dense(), Add("a", ("fc0", "input"))), d3, "a", "residual"
    yield "learning", (_dense(learning=spec),), d3, "fc0", "LearningSpec"
    yield "skip", (_dense(), _dense("fc1", ("input",))), d3, "fc1", "sequential"
    yield "conv after dense", (_dense(), _conv("c1", ("fc0",))), d3, "c1", "no conv after"
    odd_bias = torch.tensor([65, -64])
    yield "bias grid", (_dense(bias_mant=odd_bias),), d3, "fc0", "multiple of 64"
    big = torch.tensor([4096, 0])
    yield "bias 13 bits", (_dense(bias_mant=big, bias_exp=6),), d3, "fc0", "13 bits"
    yield "neg bias_exp", (_dense(bias_mant=big, bias_exp=-1),), d3, "fc0", "negative"
    inhib = torch.tensor([[-128, -3, 0], [0, -5, -1]])
    yield "inhibitory", (_dense(w=inhib),), d3, "fc0", "−255"
    yield "zeros", (_dense(w=torch.zeros(2, 3, dtype=torch.int64)),), d3, "fc0", "all weights"
    yield "dv", (dataclasses.replace(_dense(), dv=4096),), d3, "fc0", "dv = 4096"
    wide = torch.tensor([[[[300]]]])
    yield "conv range", (dataclasses.replace(_conv(), weight=wide),), (1, 4, 4), "c0", "span"
    rec = torch.tensor([[1, 0, 0]])
    yield "rec shape", (_dense(weight_rec=rec),), d3, "fc0", "weight_rec shape"
    four = torch.ones(2, 4, dtype=torch.int64)
    yield "dense fan-in", (_dense(w=four),), d3, "fc0", "reads 4 inputs"


@pytest.mark.parametrize("label,nodes,shape,bad,match", list(_writer_cases()),
                         ids=lambda v: str(v)[:16])  # fmt: skip
def test_writer_names_unsupported_node(tmp_path, label, nodes, shape, bad, match):
    qnet = QNetwork(tuple(nodes), shape, 2)
    path = tmp_path / "x.net"
    with pytest.raises(UnsupportedNodeError, match=repr(bad)) as e:
        write_netx(qnet, path)
    assert match in str(e.value)
    assert not path.exists() and not (tmp_path / "x.net.tmp").exists()


def test_writer_refuses_two_dimensional_input(tmp_path):
    with pytest.raises(UnsupportedNodeError, match=r"\[N\] or \[C, H, W\]"):
        w = torch.ones(2, 6, dtype=torch.int64)
        write_netx(QNetwork((_dense(w=w),), (2, 3), 2), tmp_path / "x.net")


# --- reader errors -------------------------------------------------------------------------


@pytest.fixture
def small_file(tmp_path):
    """A valid conv → flatten → dense file (hand-built network)."""
    c = _conv(bias_mant=torch.tensor([1, -2]), bias_exp=6, stride=(1, 2))
    d = _dense("fc", ("c0",), w=torch.arange(-12, 12).reshape(2, 12) % 7 - 3)
    qnet = QNetwork((c, d), (1, 4, 5), 2, InputFormat(0, 0, 1), {"note": "small"})
    path = tmp_path / "small.net"
    write_netx(qnet, path)
    return path, qnet


def _set(key, value):
    def mutate(f):
        if key in f:
            del f[key]
        f[key] = value

    return mutate


def _delete(key):
    def mutate(f):
        del f[key]

    return mutate


def _set_type(key, value):
    def mutate(f):
        del f[key]
        f.create_dataset(key, (1,), "S10", [value.encode()])

    return mutate


def _set_attr(key, name, value):
    def mutate(f):
        f[key].attrs[name] = value

    return mutate


def _no_flatten(f):
    del f["layer/2"]
    f["layer"].move("3", "2")


def _reader_cases():
    yield "no layer", _delete("layer"), "missing group 'layer'"
    yield "gap", lambda f: f["layer"].move("3", "7"), "groups '0'"
    yield "no weight", _delete("layer/3/weight"), r"layer 3 \(dense\): missing field 'weight'"
    no_vth = r"layer 1 \(conv\) neuron: missing field 'vThMant'"
    yield "no vth", _delete("layer/1/neuron/vThMant"), no_vth
    yield "no neuron", _delete("layer/3/neuron"), r"layer 3 \(dense\) neuron: missing"
    yield "no stride", _delete("layer/1/stride"), "layer 1 .*missing field 'stride'"
    yield "str vth", _set("layer/1/neuron/vThMant", "25"), "field 'vThMant' has dtype"
    yield "float w", _set("layer/3/weight", np.full((2, 12), 0.5)), "layer 3 .*non-integer"
    yield "pool", _set_type("layer/1/type", "pool"), "layer 1 .*'pool' is not supported"
    yield "unknown", _set_type("layer/3/type", "foo"), "layer 3 .*unknown layer type 'foo'"
    yield "iDecay", _set("layer/3/neuron/iDecay", 0), r"layer 3 \(dense\) neuron: iDecay = 0 is not"
    yield "SDNN", _set("layer/3/neuron/type", "SDNN"), "neuron: type 'SDNN'"
    yield "graded", _set("layer/3/neuron/messageBits", 3), "messageBits"
    yield "vth", _set("layer/1/neuron/vThMant", 1 << 17), "vThMant = 131072"
    yield "vDecay", _set("layer/1/neuron/vDecay", -1), "vDecay = -1"
    yield "delay", _set("layer/3/delay", np.zeros(5)), "layer 3 .*'delay': shape \\[5\\]"
    yield "input neuron", lambda f: f.copy("layer/1/neuron", "layer/0/neuron"), "Input block"
    yield "no flatten", _no_flatten, r"layer 2 \(dense\): reads a \[C, H, W\] tensor"
    yield "bias size", _set("layer/3/bias", np.zeros(3)), "field 'bias': 3 values for 2"
    yield "bias range", _set("layer/1/bias", np.array([5000, 0])), "beyond 13 bits"
    yield "conv shape", _set("layer/1/shape", np.array([2, 4, 5])), r"field 'shape'.*\[2, 3, 2\]"
    yield "kernelSize", _set("layer/1/kernelSize", np.array([3, 3])), "kernelSize"
    yield "groups", _set("layer/1/groups", 2), "groups = 2 does not fit"
    yield "weight shape", _set("layer/3/weight", np.ones((2, 11))), r"expected \[2, 12\]"
    yield "rec in dense", _set("layer/3/weight_rec", np.eye(2)), "'weight_rec', which netx ignores"
    yield "inexact", _set("layer/3/weight", np.full((2, 12), -64)), "layer 3 .*−255"
    yield "zeros", _set("layer/3/weight", np.zeros((2, 12))), "all weights are zero"
    yield "inFeatures", _set("layer/3/inFeatures", 13), "inFeatures = 13, expected 12"
    yield "attr type", _set_attr("layer/1", "stllr_weight_exp", "x"), "stllr_weight_exp"
    yield "attr bias_exp", _set_attr("layer/1", "stllr_bias_exp", 9), "does not divide"


@pytest.mark.parametrize("label,mutate,match", list(_reader_cases()), ids=lambda v: str(v)[:14])
def test_reader_names_layer_and_field(small_file, label, mutate, match):
    path, qnet = small_file
    assert_same_network(read_netx(path), qnet)
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(NetxFileError, match=match):
        read_netx(path)


def test_reader_layer_order_errors(small_file, tmp_path):
    path, _ = small_file
    other = tmp_path / "other.net"
    other.write_bytes(path.read_bytes())
    with h5py.File(path, "a") as f:  # input, flatten, conv, dense
        f["layer"].move("1", "tmp")
        f["layer"].move("2", "1")
        f["layer"].move("tmp", "2")
        del f["layer/1/shape"]  # (its C·H·W would no longer match; netx ignores it)
    with pytest.raises(NetxFileError, match=r"layer 2 \(conv\): a flatten layer must be followed"):
        read_netx(path)
    with h5py.File(other, "a") as f:  # a trailing flatten after the dense layer
        f.copy("layer/2", "layer/4")
    with pytest.raises(NetxFileError, match=r"layer 4 \(flatten\): flatten must follow a conv"):
        read_netx(other)


def test_reader_rejects_non_hdf5(tmp_path):
    path = tmp_path / "junk.net"
    path.write_bytes(b"not hdf5")
    with pytest.raises(NetxFileError, match="not an hdf5 file"):
        read_netx(path)


# --- a file in the same subset from another writer --------------------------------------------


def _slayer_style_file(path):
    """Written the way lava-dl's slayer exports (float32 weights, vlen LOIHI neuron with
    its extra keys, [N, 1, 1] shapes, a flat weight for one output, no input layer)."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        f["simulation/Ts"] = np.int64(1)
        f["simulation/tSample"] = np.int64(50)

        def layer(i, n_in, n_out, weight, bias, vth):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", (1,), "S10", [b"dense"])
            g["shape"] = np.array([n_out, 1, 1])
            g["inFeatures"], g["outFeatures"] = n_in, n_out
            g["weight"] = weight.astype(np.float32)
            g["bias"] = bias.astype(np.float32)
            for key, value in (("type", "LOIHI"), ("iDecay", 4096), ("vDecay", 1024),
                               ("vThMant", vth), ("refDelay", 1), ("scaleRho", 1.0),
                               ("tauRho", 0.5), ("theta", 1600), ("wgtExp", 0)):  # fmt: skip
                g[f"neuron/{key}"] = value

        layer(0, 10, 16, rng.integers(-40, 41, (16, 10)) * 2, rng.integers(-5, 9, 16), 25)
        layer(1, 16, 1, rng.integers(-60, 61, 16), np.array([3]), 40)


def test_reads_a_slayer_style_file(tmp_path):
    path = tmp_path / "slayer.net"
    _slayer_style_file(path)
    qnet = read_netx(path)
    assert [n.name for n in qnet.nodes] == ["layer0", "layer1"]
    assert qnet.input_shape == (10,) and qnet.num_classes == 1
    assert qnet.input_format == InputFormat(0, 0, 1) and qnet.meta == {"source": "netx"}
    a, b = qnet.nodes
    assert (a.dv, a.vth, a.bias_exp, a.weight_exp, a.weight_bits) == (1024, 25, 6, 0, 8)
    assert b.weight.shape == (1, 16) and b.bias_mant.tolist() == [3]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(a.weight.numpy(), f["layer/0/weight"][()])
    x = (np.random.default_rng(1).random((40, 10)) < 0.4).astype(np.int64)
    ref = emulate_full(qnet, x)
    assert ref["layer0"]["s"].sum() > 0
    assert_records_equal(run_netx_like(path, qnet, x), ref, "slayer-style file")
    # and it writes back into our format with the same integer network
    write_netx(qnet, tmp_path / "again.net")
    assert_same_network(read_netx(tmp_path / "again.net"), qnet)
