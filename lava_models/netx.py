"""lava-dl netx hdf5 files for inference networks, written and read with h5py (no lava-dl).

:func:`write_netx` writes a :class:`~quantization.network.QNetwork` in the layout that
``lava.lib.dl.netx.hdf5.Network`` loads; :func:`read_netx` reads such a file (ours or
another writer's, in the same subset) back into a ``QNetwork`` for
:class:`~quantization.emulator.IntegerEmulator` or :mod:`lava_models.builtin`. Only
h5py, numpy, torch and :mod:`quantization` are used, all imported lazily: at module
level this file needs only numpy (it lives beside Lava processes, LAVA.md §7 pitfall 4).

Supported subset: a sequential chain of :class:`~quantization.network.SpikingLayer`
nodes with ``reset == "hard"`` and no learning spec, of kind ``"dense"`` (netx
``dense``; ``dense_rec`` with ``weight_rec``) or ``"conv"`` (netx ``conv``), a conv
never after a dense layer. Readouts, pools, global pools, adds, soft reset and learning
specs raise :class:`~lava_models.builtin.UnsupportedNodeError` naming the node: netx
has no readout, raises ``NotImplementedError`` for ``pool``/``average``/``concat``
(``hdf5.py:546-564, 625-683``), and its LIF resets ``v`` to 0.

File layout (``shape`` always C, H, W — netx reverses it to Lava's W, H, C)::

    simulation/{Ts = 1, tSample}                    int64 scalars (netx ignores them)
    layer/0          type 'input', shape [C, H, W] or [N]           (no neuron: no Input block)
    layer/<i>        type 'flatten', shape [C·H·W, 1, 1]            (before a dense reading C, H, W)
    layer/<i>        type 'dense' | 'dense_rec', shape [out], inFeatures, outFeatures,
                     weight [out, in] (weight_rec [out, out]), bias [out] (if any)
    layer/<i>        type 'conv', shape [C_out, H', W'], inChannels, outChannels,
                     kernelSize, stride, padding, dilation [H, W], groups,
                     weight [C_out, C_in/groups, kH, kW, 1], bias [C_out] (if any)
    layer/<i>/neuron type 'CUBA', iDecay 4096, vDecay dv, vThMant vth, refDelay 1,
                     gradedSpike False

``type`` is ``S10`` of shape (1,) and ``neuron/type`` a variable-length string, as
slayer writes them; weights and biases are int32, the other numbers int64 scalars or
vectors. Fields netx does not have (node names, the weight exponent, the split of the
bias into mantissa and exponent, weight bits, the input format, ``num_classes``,
``meta``) are HDF5 *attributes* (``stllr_*``), which netx never reads (its ``NetDict``
only indexes datasets and groups, ``utils.py:53-74``), so our round trip is lossless.
Ψ tables and S-TLLR factors (learning metadata) are not written.

Why netx then computes exactly what the emulator does (lava-dl 0.6.0 = the ``HEAD``
read, with lava-nc 0.10.0; ``hdf5.py``, ``utils.py``, ``blocks/process.py`` are netx's
files)::

    neuron   hdf5.py:144-159  LIF(vth = vThMant, du = iDecay − 1, dv = vDecay,
                              bias_mant = bias, bias_exp = 6). iDecay = 4096 gives
                              du = 4095, Lava's full current decay (ds_offset 1):
                              u = a << 6, our du. vth and dv are ours unchanged.
    bias     utils.py:68 casts it to int; blocks/process.py:53-72 broadcasts a
             per-channel bias over (W, H, C). Lava adds bias << 6, ours adds
             bias_mant << bias_exp, so we write (bias_mant << bias_exp) / 64 and
             refuse biases that are not multiples of 64 membrane units (see
             :func:`snap_bias_to_netx`) or beyond 13 signed bits.
    dense    utils.py:68 casts the weights to int; utils.py:80-158 (optimize_weight_bits)
             picks a sign mode from min/max, shift = floor(log2(scale)) (+1 if mixed)
             with scale = 127/max ∧ −128/min (mixed), 255/max (excitatory) or
             −256/min (inhibitory), multiplies the weights by 2^shift, and sets
             weight_exp = −shift and num_weight_bits = 8 − shift − n, n being the
             number of trailing zero bits all weights share (−1 if mixed).
             blocks/process.py:157-162 passes these to Lava's Dense *without* a sign
             mode, so Lava (dense/models.py:82-107) re-detects it on the shifted
             weights (weightutils.py:21-43), clips them (MIXED [−256, 255],
             EXCITATORY [0, 255], INHIBITORY [−255, 0], weightutils.py:250-295),
             truncates 8 − num_weight_bits (+1 if MIXED) low bits (204-247) and
             computes a = (Σ w·s) >> shift. If the clipped and truncated weights still
             equal m·2^shift, a = Σ m·s exactly. :func:`netx_dense_synapse` repeats
             this arithmetic and the writer refuses weights for which it fails:
             in practice an all-zero matrix (netx takes log2(∞) and fails) or a
             matrix with no positive weight whose most negative one is a power of two
             (netx scales it to −256, Lava's INHIBITORY clip makes it −255).
    rec      hdf5.py:401-407 optimises [W | W_rec] jointly (one shift), and
             blocks/process.py:249-262 gives each half its own Dense (each with its
             own auto-detected sign mode); 302-304 wire s_out → Dense → a_in, so the
             recurrent current at t is W_rec·s[t−1], as in the emulator.
    conv     hdf5.py:505-506 flips the stored kernel in both spatial axes and
             transposes (out, in, kH, kW) to Lava's (out, kW, kH, in); 507-509 reverse
             stride/padding/dilation to (W, H). Lava convolves (conv/utils.py:221-296,
             scipy convolve2d flips the kernel back), so the layer correlates like
             torch's conv2d. No optimize_weight_bits, no weight_exp
             (blocks/process.py:451-459); the fixed Conv uses the int32 weights as they
             are and wraps its output to 24 bits (conv/models.py:45-51, 76-79).
    flatten  hdf5.py:634-663: the next dense reads out.transpose([2, 1, 0]).flatten(),
             i.e. (W, H, C) → (C, H, W) → row-major: our C·H·W column order.
    timing   every Dense/Conv sends last step's sum: IntegerEmulator(qnet, delay=1).
    range    Lava's LIF wraps u once past ±2^23 (lif/models.py:143-170), as ours
             does, from (a << 6) in int32; the conv's 24-bit wrap of a comes first.
             Both equal ours while |a| < 2^23, which the writer guarantees statically
             (Σ|w| over every neuron's synapses < 2^23).

Not representable (the writer refuses, the reader reports): synaptic delays, graded
spikes (``messageBits``), a current decay (iDecay ≠ 4096), an ``input`` layer with a
neuron (netx's Input block), complex weights, sigma-delta / resonate-and-fire
neurons. netx's runtime options (``reset_interval``, ``input_message_bits``) are not
in the file: load with the defaults (no reset; binary input spikes, or
``input_message_bits > 0`` for graded integer input).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lava_models.builtin import UnsupportedNodeError

if TYPE_CHECKING:  # the module imports only numpy at top level (LAVA.md §7, pitfall 4)
    from quantization.network import QNetwork, SpikingLayer

#: Marks files written by :func:`write_netx` (a root attribute; netx ignores it).
NETX_FORMAT = "stllr-netx/1"
#: netx maps ``du = iDecay − 1``; 4096 gives Lava's du = 4095 (no current memory).
I_DECAY_NONE = 4096
#: netx's fixed bias exponent (``hdf5.py:158``).
NETX_BIAS_EXP = 6
#: Loihi's 13-bit signed bias mantissa.
BIAS_MIN, BIAS_MAX = -(1 << 12), (1 << 12) - 1
#: 17-bit threshold mantissa; 12-bit voltage decay.
VTH_MAX = (1 << 17) - 1
DV_MAX = 4095
#: Conv weights go to Lava unchanged; kept within Loihi's signed 8-bit-magnitude range.
CONV_WEIGHT_MIN, CONV_WEIGHT_MAX = -256, 255
#: Lava's ``Conv`` stores kernel size, stride, padding, dilation and groups as int8.
CONV_PARAM_MAX = 127
#: Bound on Σ|w| per neuron below which no synaptic sum can wrap (module doc, "range").
SYNAPSE_SUM_LIMIT = 1 << 23
#: netx layer types that netx itself cannot load (``hdf5.py:546-564, 625-683``).
NETX_NOT_IMPLEMENTED = ("pool", "convT", "unpool", "average", "concat")


class NetxFileError(ValueError):
    """A netx file that is malformed or outside the supported subset (names layer and field)."""


class NetxInexactError(ValueError):
    """netx's weight processing would change the weights (see :func:`netx_dense_synapse`)."""


# --- what netx + Lava make of dense weights -------------------------------------------------


@dataclass(frozen=True)
class NetxSynapse:
    """The dense synapses Lava runs after netx's ``optimize_weight_bits``.

    ``weights``: one integer matrix per input matrix, after netx's shift and Lava's clip
    and truncation; Lava computes ``a = (Σ w·s) >> shift``. ``num_weight_bits`` and
    ``shift`` (``weight_exp = −shift``) are netx's; ``netx_sign_mode`` is netx's choice
    and ``lava_sign_modes`` Lava's own detection per matrix.
    """

    weights: tuple[np.ndarray, ...]
    shift: int
    num_weight_bits: int
    netx_sign_mode: str
    lava_sign_modes: tuple[str, ...]

    def exact_for(self, mats) -> bool:
        """Whether ``a = Σ m·s`` exactly for every binary ``s`` (``w == m << shift``)."""
        return all(
            np.array_equal(w, np.asarray(m, dtype=np.int64) << self.shift)
            for w, m in zip(self.weights, mats, strict=True)
        )


def _trailing_zero_bits(w: np.ndarray) -> int:
    """netx's ``n`` before the sign correction: the largest n ≤ 8 with 2^n | every w."""
    g = int(np.gcd.reduce(np.abs(w).ravel())) if w.size else 0
    if g == 0:
        return 8
    return min(8, (g & -g).bit_length() - 1)


def _lava_sign_mode(w: np.ndarray) -> str:
    if w.min() >= 0:
        return "EXCITATORY"
    if w.max() <= 0:
        return "INHIBITORY"
    return "MIXED"


def netx_dense_synapse(*mats) -> NetxSynapse:
    """What netx (``utils.py:80-158``) and Lava's fixed Dense make of integer ``mats``.

    ``mats``: ``W`` (``dense``) or ``W, W_rec`` (``dense_rec``, optimised jointly,
    ``hdf5.py:401-407``). Raises :class:`NetxInexactError` where netx would clip the
    weights, fail (all zero), shift right, or Lava would truncate a negative bit count.
    """
    arrs = [np.asarray(m, dtype=np.int64) for m in mats]
    joint = np.concatenate([a.reshape(a.shape[0], -1) for a in arrs], axis=1)
    hi, lo = int(joint.max()), int(joint.min())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        raise NetxInexactError(f"netx clips mixed-sign weights [{lo}, {hi}] to [-256, 254]")
    if hi < 0:
        mode, signed, scale = "INHIBITORY", 0, -256 / lo
    elif lo >= 0:
        if hi == 0:
            raise NetxInexactError(
                "all weights are zero: netx's optimize_weight_bits takes log2(inf) and fails"
            )
        mode, signed, scale = "EXCITATORY", 0, 255 / hi
    else:
        mode, signed = "MIXED", 1
        scale = min(127 / hi if hi > 0 else math.inf, -128 / lo)
    shift = int(np.floor(np.log2(scale))) + signed
    if shift < 0:
        raise NetxInexactError(f"weights [{lo}, {hi}] exceed {mode} 8-bit range (netx shift < 0)")
    n = _trailing_zero_bits(joint) - signed
    num_weight_bits = 8 - shift - n
    out, lava_modes = [], []
    for a in arrs:
        w = a << shift
        lava_mode = _lava_sign_mode(w)
        if not w.any():  # zeros stay zeros under any clip and truncation
            out.append(w)
            lava_modes.append(lava_mode)
            continue
        if lava_mode == "MIXED":
            w = np.clip(w, -256, 255)
        elif lava_mode == "EXCITATORY":
            w = np.clip(w, 0, 255)
        else:
            w = np.clip(w, -255, 0)
        trunc = 8 - num_weight_bits + int(lava_mode == "MIXED")
        if trunc < 0:
            raise NetxInexactError(
                f"Lava would truncate {trunc} bits ({lava_mode}, num_weight_bits = "
                f"{num_weight_bits}): undefined"
            )
        if lava_mode == "INHIBITORY":
            w = -(((-w) >> trunc) << trunc)
        else:
            w = (w >> trunc) << trunc
        out.append(w)
        lava_modes.append(lava_mode)
    return NetxSynapse(tuple(out), shift, int(num_weight_bits), mode, tuple(lava_modes))


def check_netx_dense(*mats) -> int:
    """The shift netx applies to ``mats`` if Lava then computes ``Σ m·s`` exactly.

    Raises :class:`NetxInexactError` (with the reason) otherwise.
    """
    syn = netx_dense_synapse(*mats)
    if not syn.exact_for(mats):
        bad = [
            i
            for i, (w, m) in enumerate(zip(syn.weights, mats, strict=True))
            if not np.array_equal(w, np.asarray(m, dtype=np.int64) << syn.shift)
        ]
        lo = int(min(np.asarray(mats[i]).min() for i in bad))
        raise NetxInexactError(
            f"netx scales the weights by 2^{syn.shift} and Lava's "
            f"{syn.lava_sign_modes[bad[0]]} clip/truncation (num_weight_bits = "
            f"{syn.num_weight_bits}) changes them (most negative weight {lo}; an all "
            "non-positive matrix whose minimum is a power of two becomes −255, not −256)"
        )
    return syn.shift


# --- bias ---------------------------------------------------------------------------------


def _membrane_bias(n: SpikingLayer) -> np.ndarray | None:
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

    from quantization.network import SpikingLayer

    nodes = []
    for n in qnet.nodes:
        if isinstance(n, SpikingLayer) and n.bias_mant is not None:
            b = torch.as_tensor(_membrane_bias(n), dtype=torch.float64)
            mant = torch.round(b / (1 << NETX_BIAS_EXP)).to(torch.int64)
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


# --- writing ------------------------------------------------------------------------------


def _conv_out_hw(weight_shape, in_hw, stride, padding, dilation) -> tuple[int, int]:
    kh, kw = (int(v) for v in weight_shape[2:4])
    h, w = in_hw
    return (
        (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
        (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1,
    )


def _unsupported_kind(n) -> str:
    kind = type(n).__name__
    reasons = {
        "Readout": "a non-spiking readout has no netx layer type",
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
    if min(_conv_out_hw(w.shape, in_shape[1:], n.stride, n.padding, n.dilation)) < 1:
        raise UnsupportedNodeError(f"{where}: empty output for input {list(in_shape)}")


def _check_sum_bound(where: str, *mats) -> None:
    rows = [np.abs(np.asarray(m, dtype=np.int64)).reshape(np.shape(m)[0], -1).sum(1) for m in mats]
    worst = int(np.sum(rows, axis=0).max())
    if worst >= SYNAPSE_SUM_LIMIT:
        raise UnsupportedNodeError(
            f"{where}: a neuron's Σ|w| = {worst} ≥ 2^23: its synaptic sum could wrap "
            "differently in Lava and in the emulator"
        )


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
        _check_sum_bound(where, *mats)
        layer["type"] = "dense_rec" if n.weight_rec is not None else "dense"
        layer["shape"] = (m.shape[0],)
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
        _check_sum_bound(where, m)
        hw = _conv_out_hw(m.shape, in_shape[1:], n.stride, n.padding, n.dilation)
        layer["type"] = "conv"
        layer["shape"] = (m.shape[0], *hw)
    else:
        raise UnsupportedNodeError(f"{where}: kind {n.kind!r} is not supported")
    b = _membrane_bias(n)
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


def plan_netx(qnet: QNetwork) -> list[dict]:
    """Validate ``qnet`` for netx and list its layers (``type``, ``shape``, arrays, node).

    Raises :class:`UnsupportedNodeError` naming the first node netx cannot represent
    exactly. Used by :func:`write_netx`; handy to check a network without writing it.
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
    from quantization.network import SpikingLayer

    for n in qnet.nodes:
        where = f"node {getattr(n, 'name', '?')!r} ({type(n).__name__})"
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


def _write_type(g, value: str) -> None:
    g.create_dataset("type", (1,), "S10", [value.encode("ascii")])


def write_netx(qnet: QNetwork, path: str | Path, *, t_sample: int = 1) -> None:
    """Write ``qnet`` as a netx hdf5 file (module doc: layout and exactness).

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
            if "node" in layer:
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
    if "bias" in layer:
        g.create_dataset("bias", data=layer["bias"].astype(np.int32))
    neuron = g.create_group("neuron")
    neuron.create_dataset("type", data="CUBA")  # variable-length string, as slayer writes it
    neuron.create_dataset("iDecay", data=np.int64(I_DECAY_NONE))
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


# --- reading ------------------------------------------------------------------------------


def _get(g, key: str, where: str):
    if key not in g:
        raise NetxFileError(f"{where}: missing field {key!r}")
    return g[key]


def _dataset(g, key: str, where: str):
    import h5py

    obj = _get(g, key, where)
    if not isinstance(obj, h5py.Dataset):
        raise NetxFileError(f"{where}: field {key!r} is a group, expected a dataset")
    return obj


def _string(g, key: str, where: str) -> str:
    """A string field the way netx's NetDict reads it: 0-d or the first element."""
    ds = _dataset(g, key, where)
    value = ds[()]
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise NetxFileError(f"{where}: field {key!r} is empty")
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise NetxFileError(f"{where}: field {key!r} is not an ASCII string") from None
    if isinstance(value, str):
        return value
    raise NetxFileError(f"{where}: field {key!r} = {value!r} is not a string")


def _ints(g, key: str, where: str) -> np.ndarray:
    """A numeric field whose values are integers (int64 array, any shape)."""
    ds = _dataset(g, key, where)
    a = np.asarray(ds[()])
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iuf":
        raise NetxFileError(f"{where}: field {key!r} has dtype {a.dtype}, expected numbers")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise NetxFileError(
                f"{where}: field {key!r} holds non-integer values (netx would truncate them)"
            )
        if a.size and np.abs(a).max() >= 2**62:
            raise NetxFileError(f"{where}: field {key!r} holds values beyond int64")
    return a.astype(np.int64)


def _int(g, key: str, where: str) -> int:
    a = _ints(g, key, where)
    if a.size != 1:
        raise NetxFileError(f"{where}: field {key!r} has shape {list(a.shape)}, expected a scalar")
    return int(a.reshape(-1)[0])


def _pair(g, key: str, where: str) -> tuple[int, int]:
    """A conv parameter in file order (H, W): scalar, [v] or [h, w] (netx ``expand``)."""
    a = _ints(g, key, where).reshape(-1)
    if a.size == 1:
        return (int(a[0]), int(a[0]))
    if a.size != 2:
        raise NetxFileError(f"{where}: field {key!r} has {a.size} values, expected 1 or 2")
    return (int(a[0]), int(a[1]))


def _attr(g, key: str, where: str, kind: type, default):
    if key not in g.attrs:
        return default
    value = g.attrs[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not an integer")
        return int(value)
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, np.floating)):
            raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not a float")
        return float(value)
    if not isinstance(value, str):
        raise NetxFileError(f"{where}: attribute {key!r} = {value!r} is not a string")
    return value


def _neuron(g, where: str) -> tuple[int, int]:
    """``(dv, vth)`` of a layer's CUBA neuron; errors for anything netx maps differently."""
    import h5py

    where = f"{where} neuron"
    if "neuron" not in g:
        raise NetxFileError(
            f"{where}: missing; netx then builds a non-leaky integrator (iDecay 0), which "
            "the toolkit's neurons cannot represent"
        )
    nrn = g["neuron"]
    if not isinstance(nrn, h5py.Group):
        raise NetxFileError(f"{where}: 'neuron' is a dataset, expected a group")
    kind = _string(nrn, "type", where)
    if kind not in ("CUBA", "LOIHI"):
        raise NetxFileError(
            f"{where}: type {kind!r} is not supported (only CUBA/LOIHI map to Lava's LIF)"
        )
    i_decay = _int(nrn, "iDecay", where)
    if i_decay != I_DECAY_NONE:
        raise NetxFileError(
            f"{where}: iDecay = {i_decay}; the toolkit's neurons have no current memory, which "
            f"is iDecay = {I_DECAY_NONE} (Lava du = 4095)"
        )
    dv = _int(nrn, "vDecay", where)
    if not 0 <= dv <= DV_MAX:
        raise NetxFileError(f"{where}: vDecay = {dv} is not a 12-bit decay (0 … {DV_MAX})")
    vth = _int(nrn, "vThMant", where)
    if not 0 <= vth <= VTH_MAX:
        raise NetxFileError(f"{where}: vThMant = {vth} is beyond 17 bits (0 … {VTH_MAX})")
    if "messageBits" in nrn and _int(nrn, "messageBits", where) != 0:
        raise NetxFileError(f"{where}: messageBits > 0 (graded spikes) is not supported")
    return dv, vth


def _bias(g, where: str, n_out: int, bias_exp: int):
    """``(bias_mant, bias_exp)`` from the netx ``bias`` (one per channel) or ``(None, 0)``."""
    if "bias" not in g:
        return None, bias_exp
    b = _ints(g, "bias", where).reshape(-1)
    if b.size == 1 and n_out != 1:
        b = np.full(n_out, int(b[0]), dtype=np.int64)
    if b.size != n_out:
        raise NetxFileError(
            f"{where} field 'bias': {b.size} values for {n_out} channels (only one bias per "
            "neuron of a dense layer or per channel of a conv layer is supported)"
        )
    if b.min() < BIAS_MIN or b.max() > BIAS_MAX:
        raise NetxFileError(
            f"{where} field 'bias': values span [{int(b.min())}, {int(b.max())}], beyond 13 bits"
        )
    total = b << NETX_BIAS_EXP
    if bias_exp < 0 or np.any(total % (1 << bias_exp)):
        raise NetxFileError(
            f"{where}: attribute stllr_bias_exp = {bias_exp} does not divide the bias"
        )
    return total >> bias_exp, bias_exp


def _dense_layer(g, where: str, rec: bool, in_shape, attrs: dict, dv: int, vth: int):
    import torch

    from quantization.network import SpikingLayer

    for key in ("delay", "weight/real", "weight/imag"):
        if key in g:
            raise NetxFileError(
                f"{where}: field {key!r} (synaptic delays / complex weights) is not supported"
            )
    if not rec and "weight_rec" in g:
        raise NetxFileError(f"{where}: type 'dense' has 'weight_rec', which netx ignores")
    n_out = int(np.prod(_ints(g, "shape", where)))
    n_in = int(np.prod(in_shape))
    mats = []
    for key in ("weight", "weight_rec") if rec else ("weight",):
        w = _ints(g, key, where)
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
        if key in g and _int(g, key, where) != value:
            raise NetxFileError(f"{where}: {key} = {_int(g, key, where)}, expected {value}")
    try:
        check_netx_dense(*mats)
    except NetxInexactError as e:
        raise NetxFileError(f"{where}: {e}") from None
    _check_bound_file(where, *mats)
    bias, bias_exp = _bias(g, where, n_out, attrs["bias_exp"])
    return SpikingLayer(
        attrs["name"], (attrs["input"],), "dense", torch.as_tensor(mats[0]), attrs["weight_exp"],
        dv, vth, "hard", None if bias is None else torch.as_tensor(bias), bias_exp,
        torch.as_tensor(mats[1]) if rec else None,
        weight_bits=attrs["weight_bits"] or _bits_for(*mats), gain=attrs.get("gain", 1.0),
    ), (n_out,)  # fmt: skip


def _conv_layer(g, where: str, in_shape, attrs: dict, dv: int, vth: int):
    import torch

    from quantization.network import SpikingLayer

    for key in ("delay", "weight/real", "weight/imag"):
        if key in g:
            raise NetxFileError(
                f"{where}: field {key!r} (synaptic delays / complex weights) is not supported"
            )
    if len(in_shape) != 3:
        raise NetxFileError(
            f"{where}: a conv layer needs a [C, H, W] input; it reads shape {list(in_shape)} "
            "(an input layer with a 3-D shape must come first; no conv after dense)"
        )
    w = _ints(g, "weight", where)
    if w.ndim == 5 and w.shape[4] == 1:
        w = w[..., 0]
    if w.ndim != 4 or w.size == 0:
        raise NetxFileError(
            f"{where} field 'weight': shape {list(w.shape)}, expected [C_out, C_in/groups, kH, kW"
            "(, 1)]"
        )
    # netx indexes these four (hdf5.py:507-510): a file without them does not load
    stride = _pair(g, "stride", where)
    padding = _pair(g, "padding", where)
    dilation = _pair(g, "dilation", where)
    groups = _int(g, "groups", where)
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
        if key in g and _int(g, key, where) != value:
            raise NetxFileError(f"{where}: {key} = {_int(g, key, where)}, expected {value}")
    if "kernelSize" in g and _pair(g, "kernelSize", where) != tuple(w.shape[2:]):
        raise NetxFileError(
            f"{where}: kernelSize {list(_pair(g, 'kernelSize', where))} does not match the "
            f"weight's {list(w.shape[2:])}"
        )
    hw = _conv_out_hw(w.shape, in_shape[1:], stride, padding, dilation)
    out_shape = (int(w.shape[0]), *hw)
    shape = tuple(int(v) for v in _ints(g, "shape", where).reshape(-1))
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
    bias, bias_exp = _bias(g, where, out_shape[0], attrs["bias_exp"])
    return SpikingLayer(
        attrs["name"], (attrs["input"],), "conv", torch.as_tensor(w), attrs["weight_exp"], dv,
        vth, "hard", None if bias is None else torch.as_tensor(bias), bias_exp, None, stride,
        padding, dilation, groups, attrs["weight_bits"] or _bits_for(w),
        gain=attrs.get("gain", 1.0),
    ), out_shape  # fmt: skip


def _check_bound_file(where: str, *mats) -> None:
    try:
        _check_sum_bound(where, *mats)
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


def read_netx(path: str | Path) -> QNetwork:
    """Read a netx hdf5 file (the subset :func:`write_netx` writes) into a ``QNetwork``.

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
        ours = _attr(f, "stllr_format", f"{path}", str, None) == NETX_FORMAT
        nodes, shape, in_shape = [], None, None
        flatten_next, prev = False, "input"
        for i in range(len(keys)):
            where = f"{path}: layer {i}"
            g = top[str(i)]
            if not isinstance(g, h5py.Group):
                raise NetxFileError(f"{where}: is a dataset, expected a group")
            kind = _string(g, "type", where)
            where = f"{where} ({kind})"
            if kind == "input":
                if i != 0:
                    raise NetxFileError(f"{where}: an input layer must be layer 0")
                if "neuron" in g:
                    raise NetxFileError(
                        f"{where}: has a neuron (netx's Input block: a LIF driven by its "
                        "bias); only a plain input layer (type and shape) is supported"
                    )
                shape = in_shape = tuple(int(v) for v in _ints(g, "shape", where).reshape(-1))
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
                if "shape" in g and int(np.prod(_ints(g, "shape", where))) != int(np.prod(shape)):
                    raise NetxFileError(
                        f"{where} field 'shape': does not hold {int(np.prod(shape))} values"
                    )
                flatten_next = True
                continue
            if kind in NETX_NOT_IMPLEMENTED or kind == "dense_comp":
                raise NetxFileError(
                    f"{where}: layer type {kind!r} is not supported (netx: NotImplementedError "
                    "or complex neurons)"
                )
            if kind not in ("dense", "dense_rec", "conv"):
                raise NetxFileError(f"{where}: unknown layer type {kind!r}")
            attrs = {
                "name": _attr(g, "stllr_name", where, str, f"layer{i}"),
                "weight_exp": _attr(g, "stllr_weight_exp", where, int, 0),
                "bias_exp": _attr(g, "stllr_bias_exp", where, int, NETX_BIAS_EXP),
                "weight_bits": _attr(g, "stllr_weight_bits", where, int, 0),
                "gain": _attr(g, "stllr_gain", where, float, 1.0),
                "input": prev,
            }
            dv, vth = _neuron(g, where)
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
                    w = _ints(g, "weight", where)
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
            num_classes = _attr(f, "stllr_num_classes", where, int, num_classes)
            try:
                fmt = InputFormat(**json.loads(_attr(f, "stllr_input_format", where, str, "{}")))
                meta = json.loads(_attr(f, "stllr_meta", where, str, "{}"))
            except (TypeError, ValueError) as e:
                raise NetxFileError(f"{where}: malformed stllr attributes ({e})") from None
        return QNetwork(tuple(nodes), tuple(in_shape), num_classes, fmt, meta)
