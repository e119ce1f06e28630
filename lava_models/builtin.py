"""Inference of a quantized network on Lava's built-in ``Dense``/``Conv`` + ``LIF`` processes.

Covers the :class:`~quantization.network.QNetwork` s whose neurons *are* Lava's LIF:
every node a :class:`~quantization.network.SpikingLayer` of kind ``"dense"`` or
``"conv"`` with ``reset == "hard"``, no recurrent weights, ``weight_bits ≤ 8`` and one
input (``"input"`` or another such layer). A dense layer may read a conv layer (or an
image input): the flatten between them is implied, as in the toolkit. Anything else
(pools, adds, readouts, soft reset, recurrence, a conv after a dense layer) raises
:class:`~lava_models.errors.UnsupportedNodeError` naming the node, before Lava is imported.

Mapping per node (docs/lava.md §4, §5; integer semantics of :mod:`quantization.loihi`)::

    dense: Dense(weights = m << 1, weight_exp = −1, num_weight_bits = 8, sign_mode = MIXED)
    conv:  Conv(weight = lava_layout(m, "conv_weight"), weight_exp = 0, num_weight_bits = 8,
                input_shape = (W, H, C_in), padding/stride/dilation as (W, H), groups)
    both:  LIF(shape, du = 4095, dv = node.dv, vth = node.vth,
               bias_mant = node.bias_mant (per channel, broadcast), bias_exp = node.bias_exp)

Dense: Lava's fixed ``Dense`` clips MIXED weights to [−256, 255] and truncates their
``8 − num_weight_bits + 1 = 1`` lowest bit; storing the signed ≤ 8-bit mantissa ``m``
as ``2m`` (even, in [−256, 254]) loses nothing, and ``weight_exp = −1`` halves the
(even) sum back, so ``a = Σ_j m_ij s_j`` exactly. ``sign_mode`` is forced to MIXED:
auto-detection makes an all-non-positive matrix INHIBITORY, which clips ``−2m`` to
[0, 255]: ``2·(−128)`` becomes −255 and a step with two such inputs active is off by
one (an all-non-negative matrix, auto-detected EXCITATORY, would happen to stay exact).

Synaptic delays (``node.delay``, dense only): Lava's ``DelayDense`` with the same
weights and ``delays``; it shifts each delay group's sum by ``weight_exp`` separately,
still exact for even ``2m``, and a delay ``d`` arrives ``d`` steps after ``Dense`` would
(quantization/synaptic_delay.py).

Conv: Lava's fixed ``Conv`` (``PyConvModelFixed``) neither clips nor truncates its
weights and ignores ``weight_exp`` and ``num_weight_bits``: ``a = conv(s, w)`` wrapped to
24 bits, the same wrap that ``u = a << 6`` gets in the LIF. The mantissas go in as
they are (``weight_exp = 0``, correct whether or not a model applies it). Layouts
(:func:`lava_layout`): Lava's neurons are ``(W, H, C)`` where ours are ``[C, H, W]``;
its kernel is ``(C_out, kW, kH, C_in/groups)`` where ours is ``[C_out, C_in/groups,
kH, kW]``, and it computes a true convolution (scipy ``convolve2d``) where torch
correlates, so the kernel is also flipped in both spatial axes. Padding, stride and
dilation are given in (W, H) order. A dense layer that reads a ``(W, H, C)`` tensor
connects through ``s_out.flatten()`` (row-major over W, H, C), and its weight columns
are permuted from our ``C·H·W`` order to Lava's ``W·H·C`` order.

Timing: each ``Dense``/``Conv`` sends the previous step's sum, so layer ``k``
(1-based) sees the input of step ``t`` at step ``t + k``;
:class:`quantization.emulator.IntegerEmulator` with ``delay=1`` reproduces this. ``s``,
``u`` and ``v`` are read at the end of every step (``v`` after the reset).

Lava (through :func:`lava_models.runtime.import_lava`) and the toolkit (torch) are
imported lazily: at module level this file needs only numpy, so it stays cheap to
import and harmless when Lava's model discovery executes it as a sibling of a Process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lava_models.errors import UnsupportedNodeError
from quantization.formats import BIAS_MANT_MAX, BIAS_MANT_MIN, DU_NONE, DV_MAX, VTH_MAX

if TYPE_CHECKING:  # the module imports only numpy at top level (docs/lava.md §7, pitfall 4)
    from quantization.network import QNetwork, SpikingLayer

#: Signed mantissa range that ``m << 1`` keeps inside Lava's MIXED clip [−256, 255]
#: (conv weights are not clipped by Lava; the same 8-bit range is kept for Loihi).
WEIGHT_MIN, WEIGHT_MAX = -128, 127
#: Lava LIF register ranges (``PyLifModelBitAcc`` docstring) and ``DU_NONE`` (no current
#: memory) come from :mod:`quantization.formats` (imported above).
#: Export of the weight mantissas (see the module docstring).
EXPORT_SHIFT = 1
NUM_WEIGHT_BITS = 8
#: Lava's ``Conv`` stores kernel size, padding, stride, dilation and groups as int8.
CONV_PARAM_MAX = 127


# --- layouts -----------------------------------------------------------------------------


def lava_layout(array, what: str, *, inverse: bool = False, in_shape=None) -> np.ndarray:
    """Convert ``array`` between the toolkit's layout and Lava's (``inverse``: Lava → ours).

    ``what`` selects the quantity:

    ``"neurons"``        ``[..., C, H, W]`` ↔ ``[..., W, H, C]`` (any leading axes, e.g.
                         time): the last three axes reversed. Self-inverse.
    ``"conv_weight"``    ``[C_out, C_in/g, kH, kW]`` ↔ ``(C_out, kW, kH, C_in/g)``, flipped
                         in both spatial axes (Lava convolves, torch correlates).
    ``"dense_columns"``  the columns of a dense weight ``[out, C·H·W]`` (our flatten of an
                         ``in_shape = (C, H, W)`` tensor) ↔ ``[out, W·H·C]`` (the row-major
                         flatten of Lava's ``(W, H, C)``).
    """
    a = np.asarray(array)
    if what == "neurons":
        if a.ndim < 3:
            raise ValueError(f"lava_layout('neurons'): need [..., C, H, W], got {list(a.shape)}")
        return np.ascontiguousarray(np.swapaxes(a, -1, -3))
    if what == "conv_weight":
        if a.ndim != 4:
            raise ValueError(f"lava_layout('conv_weight'): need 4 axes, got {list(a.shape)}")
        # ours → Lava: L[o, i, j, c] = W[o, c, kH−1−j, kW−1−i] (reverse axes 1–3, flip kH, kW)
        if inverse:
            return np.ascontiguousarray(a.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1])
        return np.ascontiguousarray(a[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    if what == "dense_columns":
        if in_shape is None or len(in_shape) != 3:
            raise ValueError("lava_layout('dense_columns'): in_shape = (C, H, W) is required")
        c, h, w = (int(v) for v in in_shape)
        if a.ndim != 2 or a.shape[1] != c * h * w:
            raise ValueError(
                f"lava_layout('dense_columns'): weight {list(a.shape)} does not read "
                f"{c}·{h}·{w} = {c * h * w} inputs"
            )
        cols = a.reshape(a.shape[0], w, h, c) if inverse else a.reshape(a.shape[0], c, h, w)
        return np.ascontiguousarray(cols.transpose(0, 3, 2, 1).reshape(a.shape[0], -1))
    raise ValueError(f"lava_layout: unknown quantity {what!r}")


def to_lava_shape(shape) -> tuple[int, ...]:
    """Lava's shape of a per-sample tensor: ``(W, H, C)`` for ``[C, H, W]``, else flat."""
    shape = tuple(int(v) for v in shape)
    return shape[::-1] if len(shape) == 3 else (int(np.prod(shape)),)


def _conv_out_hw(n: SpikingLayer, h: int, w: int) -> tuple[int, int]:
    kh, kw = (int(v) for v in n.weight.shape[2:])
    (sh, sw), (ph, pw), (dh, dw) = n.stride, n.padding, n.dilation
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def node_shapes(qnet: QNetwork) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every node in the toolkit's layout (``"input"`` too).

    Assumes :func:`check_builtin_supported` passed (it calls this on validated nodes).
    """
    shapes = {"input": tuple(int(v) for v in qnet.input_shape)}
    for n in qnet.nodes:
        shapes[n.name] = _out_shape(n, shapes[n.inputs[0]])
    return shapes


def _out_shape(n: SpikingLayer, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of one validated node for input shape ``in_shape`` (toolkit layout)."""
    if n.kind == "conv":
        return (n.out_channels, *_conv_out_hw(n, *in_shape[1:]))
    return (n.out_channels,)


# --- validation ---------------------------------------------------------------------------


def _check_synapse_shape(n: SpikingLayer, where: str, in_shape: tuple[int, ...]) -> None:
    w = n.weight
    if n.kind == "dense":
        if w.dim() != 2 or w.numel() == 0:
            raise UnsupportedNodeError(f"{where}: weight shape {tuple(w.shape)} is not [out, in]")
        if int(w.shape[1]) != int(np.prod(in_shape)):
            raise UnsupportedNodeError(
                f"{where}: weight reads {int(w.shape[1])} inputs, its input has shape "
                f"{list(in_shape)}"
            )
        return
    if w.dim() != 4 or w.numel() == 0:
        raise UnsupportedNodeError(
            f"{where}: weight shape {tuple(w.shape)} is not [C_out, C_in/groups, kH, kW]"
        )
    if len(in_shape) != 3:
        raise UnsupportedNodeError(
            f"{where}: a conv layer needs a [C, H, W] input, got {list(in_shape)} "
            "(a conv after a dense layer is not supported)"
        )
    params = (*n.stride, *n.padding, *n.dilation, n.groups, *w.shape[2:])
    if min(params) < 0 or min(*n.stride, *n.dilation, n.groups) < 1:
        raise UnsupportedNodeError(f"{where}: invalid stride/padding/dilation/groups")
    if max(params) > CONV_PARAM_MAX:
        raise UnsupportedNodeError(
            f"{where}: kernel/stride/padding/dilation/groups beyond Lava's int8 ({CONV_PARAM_MAX})"
        )
    g = int(n.groups)
    if int(w.shape[1]) * g != in_shape[0] or n.out_channels % g:
        raise UnsupportedNodeError(
            f"{where}: weight {tuple(w.shape)} with groups = {g} does not fit "
            f"{in_shape[0]} input channels"
        )
    if min(_conv_out_hw(n, *in_shape[1:])) < 1:
        raise UnsupportedNodeError(f"{where}: empty output for input {list(in_shape)}")


def check_builtin_supported(qnet: QNetwork) -> None:
    """Raise :class:`UnsupportedNodeError` unless every node maps onto Dense/Conv + LIF."""
    from quantization.network import SpikingLayer

    if not qnet.nodes:
        raise UnsupportedNodeError("QNetwork has no nodes")
    shapes = {"input": tuple(int(v) for v in qnet.input_shape)}
    for n in qnet.nodes:
        where = f"node {n.name!r} ({type(n).__name__})"
        if not isinstance(n, SpikingLayer):
            raise UnsupportedNodeError(
                f"{where}: Lava's built-in LIF runs only dense and conv spiking layers; "
                "readouts, pools and adds need the toolkit's own processes"
            )
        if n.kind not in ("dense", "conv"):
            raise UnsupportedNodeError(f"{where}: kind {n.kind!r} is not supported")
        if n.weight_rec is not None:
            raise UnsupportedNodeError(f"{where}: recurrent weights are not supported")
        if n.reset != "hard":
            raise UnsupportedNodeError(
                f"{where}: reset {n.reset!r} is not supported (Lava's LIF resets v to 0: 'hard')"
            )
        if n.weight_bits > 8:
            raise UnsupportedNodeError(
                f"{where}: weight_bits = {n.weight_bits}; Lava's Dense/Conv hold at most 8 bits"
            )
        if len(n.inputs) != 1 or n.inputs[0] not in shapes:
            raise UnsupportedNodeError(
                f"{where}: inputs {n.inputs} must be one earlier spiking layer or 'input'"
            )
        _check_synapse_shape(n, where, shapes[n.inputs[0]])
        w = n.weight
        lo, hi = int(w.min()), int(w.max())
        if lo < WEIGHT_MIN or hi > WEIGHT_MAX:
            raise UnsupportedNodeError(
                f"{where}: weight mantissas span [{lo}, {hi}], beyond [{WEIGHT_MIN}, {WEIGHT_MAX}]"
            )
        if not 0 <= n.dv <= DV_MAX:
            raise UnsupportedNodeError(f"{where}: dv = {n.dv} is not a 12-bit decay (0 … 4095)")
        if not 0 <= n.vth <= VTH_MAX:
            raise UnsupportedNodeError(f"{where}: vth = {n.vth} is beyond 17 bits")
        if n.du != DU_NONE and n.bias_mant is not None and bool(n.bias_mant.any()):
            raise UnsupportedNodeError(
                f"{where}: a current-based layer (du = {n.du}) with a bias: its bias enters the "
                "current, Lava's LIF adds bias to the voltage (export it without a bias, or run "
                "it with the toolkit's processes)"
            )
        if n.bias_mant is not None:
            if n.bias_mant.numel() != n.out_channels:
                raise UnsupportedNodeError(
                    f"{where}: {n.bias_mant.numel()} biases for {n.out_channels} channels"
                )
            b_lo, b_hi = int(n.bias_mant.min()), int(n.bias_mant.max())
            if b_lo < BIAS_MANT_MIN or b_hi > BIAS_MANT_MAX:
                raise UnsupportedNodeError(
                    f"{where}: bias mantissas span [{b_lo}, {b_hi}], beyond 13 bits signed"
                )
            if n.bias_exp < 0:
                raise UnsupportedNodeError(f"{where}: bias_exp = {n.bias_exp} is negative")
        shapes[n.name] = _out_shape(n, shapes[n.inputs[0]])
    first = qnet.nodes[0]
    if first.inputs[0] != "input":
        raise UnsupportedNodeError(f"node {first.name!r}: the first node must read 'input'")


# --- process arguments --------------------------------------------------------------------


def export_dense_weights(node: SpikingLayer, in_shape: tuple[int, ...] | None = None) -> dict:
    """Keyword arguments of Lava's ``Dense`` for ``node`` (exact ``Σ m·s``, see module doc).

    ``in_shape``: the per-sample shape of the node's input in the toolkit's layout; a
    ``(C, H, W)`` input arrives flattened from Lava's ``(W, H, C)``, so the weight
    columns are permuted (:func:`lava_layout` ``"dense_columns"``).
    """
    from lava.utils.weightutils import SignMode

    m = node.weight.detach().cpu().numpy().astype(np.int64)
    if in_shape is not None and len(in_shape) == 3:
        m = lava_layout(m, "dense_columns", in_shape=in_shape)
    kwargs = {
        "weights": (m << EXPORT_SHIFT).astype(np.int32),
        "weight_exp": -EXPORT_SHIFT,
        "num_weight_bits": NUM_WEIGHT_BITS,
        "sign_mode": SignMode.MIXED,
    }
    if node.delay is not None:  # DelayDense: shifted per delay group, still exact (m << 1 >> 1)
        d = node.delay.detach().cpu().numpy().astype(np.int64)
        if in_shape is not None and len(in_shape) == 3:
            d = lava_layout(d, "dense_columns", in_shape=in_shape)
        kwargs["delays"] = d.astype(int)  # DelayDense refuses any dtype but int (int64)
    return kwargs


def export_conv_weights(node: SpikingLayer, in_shape: tuple[int, ...]) -> dict:
    """Keyword arguments of Lava's ``Conv`` for ``node`` reading ``in_shape = (C, H, W)``."""
    m = node.weight.detach().cpu().numpy().astype(np.int64)
    return {
        "weight": lava_layout(m, "conv_weight").astype(np.int32),
        "weight_exp": 0,  # ignored by PyConvModelFixed; 0 is right either way
        "num_weight_bits": NUM_WEIGHT_BITS,
        "input_shape": to_lava_shape(in_shape),
        "padding": tuple(int(v) for v in node.padding[::-1]),  # Lava: (W, H)
        "stride": tuple(int(v) for v in node.stride[::-1]),
        "dilation": tuple(int(v) for v in node.dilation[::-1]),
        "groups": int(node.groups),
    }


def lif_kwargs(node: SpikingLayer, out_shape: tuple[int, ...] | None = None) -> dict:
    """Keyword arguments of Lava's ``LIF`` for ``node`` (output shape in our layout).

    ``out_shape`` defaults to ``(out,)`` (a dense layer); a conv layer's ``(C, H, W)``
    becomes Lava's ``(W, H, C)`` with the per-channel bias broadcast over positions.
    """
    n_out = node.out_channels
    shape = to_lava_shape(out_shape if out_shape is not None else (n_out,))
    if node.bias_mant is None:
        bias = np.zeros(n_out, dtype=np.int32)
    else:
        bias = node.bias_mant.detach().cpu().numpy().astype(np.int32).reshape(n_out)
    return {
        "shape": shape,
        "du": int(node.du),  # 4095: no current memory; smaller: a current-based LIF
        "dv": int(node.dv),
        "vth": int(node.vth),
        "bias_mant": np.ascontiguousarray(np.broadcast_to(bias, shape)),  # C is last in Lava
        "bias_exp": np.full(shape, int(node.bias_exp), dtype=np.int32),
    }


# --- building and running -----------------------------------------------------------------


def build_builtin_network(qnet: QNetwork):
    """Lava processes for ``qnet``: ``(synapses, lifs, connect_input)``, in node order.

    Each node's ``Dense``/``Conv.a_out`` is connected to its ``LIF.a_in``, and every
    layer's ``s_in`` to its input layer's ``LIF.s_out`` (through ``flatten()`` for a dense
    layer reading a conv layer). ``connect_input(out_port)`` connects a source of shape
    ``to_lava_shape(qnet.input_shape)`` to every layer that reads ``"input"`` (again
    flattened for a dense layer on an image). Process names are ``dense_<node>`` /
    ``conv_<node>`` and ``lif_<node>``.
    """
    check_builtin_supported(qnet)
    from lava_models.runtime import import_lava

    import_lava()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.lif.process import LIF

    shapes = node_shapes(qnet)
    synapses, lifs, readers, by_name = [], [], [], {}
    for n in qnet.nodes:
        in_shape = shapes[n.inputs[0]]
        if n.kind == "conv":
            syn = Conv(name=f"conv_{n.name}", **export_conv_weights(n, in_shape))
        else:
            kwargs = export_dense_weights(n, in_shape)
            make = DelayDense if "delays" in kwargs else Dense
            syn = make(name=f"dense_{n.name}", **kwargs)
        lif = LIF(name=f"lif_{n.name}", **lif_kwargs(n, shapes[n.name]))
        syn.a_out.connect(lif.a_in)
        flatten = n.kind == "dense" and len(in_shape) == 3  # (W, H, C) → W·H·C, row-major
        if n.inputs[0] == "input":
            readers.append((syn.s_in, flatten))
        else:
            src = by_name[n.inputs[0]].s_out
            (src.flatten() if flatten else src).connect(syn.s_in)
        by_name[n.name] = lif
        synapses.append(syn)
        lifs.append(lif)

    def connect_input(out_port) -> None:
        for port, flat in readers:
            (out_port.flatten() if flat else out_port).connect(port)

    return synapses, lifs, connect_input


def build_builtin_dense_network(qnet: QNetwork):
    """``(synapses, lifs)`` of :func:`build_builtin_network` (its dense-only-era name).

    The layers that read ``"input"`` are left unconnected: their ``s_in`` are for the
    caller to drive.
    """
    synapses, lifs, _ = build_builtin_network(qnet)
    return synapses, lifs


def _input_to_lava(qnet: QNetwork, spikes_int) -> np.ndarray:
    """Binary spikes ``[T, *input_shape]`` (or ``[T, prod]``) → RingBuffer data ``(*lava, T)``."""
    x = np.asarray(spikes_int)
    shape = tuple(int(v) for v in qnet.input_shape)
    n_in = int(np.prod(shape))
    dims = ", ".join(str(v) for v in shape)
    if x.ndim < 2 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != n_in:
        alt = f" (or [T, {n_in}])" if len(shape) > 1 else ""
        raise ValueError(f"run_builtin: spikes must be [T, {dims}]{alt}, got {list(x.shape)}")
    if x.ndim > 2 and tuple(x.shape[1:]) != shape:
        raise ValueError(f"run_builtin: spikes must be [T, {dims}], got {list(x.shape)}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("run_builtin: input must be binary spikes (0/1); Dense/Conv read s != 0")
    x = x.reshape(x.shape[0], *shape)
    if len(shape) == 3:
        x = lava_layout(x, "neurons")
    else:
        x = x.reshape(x.shape[0], n_in)
    return np.moveaxis(x, 0, -1).astype(np.int32)  # Lava's RingBuffer layout: [*shape, T]


def run_builtin(
    qnet: QNetwork, spikes_int, timeout_s: float = 120.0
) -> dict[str, dict[str, np.ndarray]]:
    """Run ``qnet`` in Lava (``fixed_pt``) on binary input spikes ``[T, *input_shape]``.

    Returns ``{node name: {"s": …, "u": …, "v": …}}`` (int64), the values at the end of
    every step, shaped ``[T, out]`` for a dense layer and ``[T, C, H, W]`` (our layout)
    for a conv layer. The run has the runner's deadline (``timeout_s``; a hung or failed
    run raises ``LavaRunError``) and the runtime is always stopped.
    """
    check_builtin_supported(qnet)
    data = _input_to_lava(qnet, spikes_int)
    steps = int(data.shape[-1])
    shapes = node_shapes(qnet)
    _, lifs, connect_input = build_builtin_network(qnet)

    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    from lava_models.session import LavaSession

    src = RingBuffer(data=data)
    connect_input(src.s_out)
    monitors = []
    for lif in lifs:
        mons = {}
        for key, target in (("s", lif.s_out), ("u", lif.u), ("v", lif.v)):
            mons[key] = Monitor()
            mons[key].probe(target, steps)
        monitors.append(mons)
    out: dict[str, dict[str, np.ndarray]] = {}
    with LavaSession(src, Loihi2SimCfg(select_tag="fixed_pt"), steps, timeout_s):
        for n, lif, mons in zip(qnet.nodes, lifs, monitors, strict=True):
            shape = shapes[n.name]
            rec = {}
            for key, mon in mons.items():
                var = "s_out" if key == "s" else key
                data = np.asarray(mon.get_data()[lif.name][var]).astype(np.int64)
                data = data.reshape(steps, *to_lava_shape(shape))
                if len(shape) == 3:
                    data = lava_layout(data, "neurons", inverse=True)
                rec[key] = data
            out[n.name] = rec
    return out
