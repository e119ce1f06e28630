"""Lava Processes for quantized S-TLLR networks: one per QNetwork node kind (ports and Vars only).

Every Process computes its output **in the same time step** as its input arrives: the
synapses are fused into the neuron process, so a chain of processes has no per-layer
delay and reproduces :class:`quantization.emulator.IntegerEmulator` with ``delay=0``
(Lava's own ``Dense`` would add one step per layer). The ``fixed_pt`` models are in
:mod:`lava_models.processes.models`; :mod:`lava_models.exporter` builds these Processes
from a :class:`~quantization.network.QNetwork`.

Layout: ports and Vars keep the toolkit's per-sample layout, ``[C, H, W]`` for feature
maps (Lava's own ``Conv`` uses ``(W, H, C)``) and ``[N]`` for dense vectors; weights are
``[out, in]`` (dense), ``[C_out, C_in/groups, kH, kW]`` (conv) or ``[C_in, C_out/groups, kH,
kW]`` (deconv, a transposed convolution; a float deconv keeps stllr's ``[C_out, C_in, kH,
kW]``, without output padding).

Fixed or float: by default a Process holds integers (int64 Vars) for its ``fixed_pt``
model. ``STLLRLayer(lif=LIFParams)`` and ``ReadoutProcess(gamma=γ)`` make a float node
instead (float64 Vars, the float graph of :func:`quantization.convert.to_float_graph`)
for the ``floating_pt`` models of :mod:`lava_models.processes.float_models`; the
weightless processes are the same for both (``PoolProcess(mode="avg")`` and
``GlobalSumPoolProcess(average=True)`` exist only in float). A float node run with
``fixed_pt``, or an integer node with ``floating_pt``, raises when the model is built.

Per step, ``x`` the input received on ``s_in`` (integer semantics: docs/fixed_point.md)::

    STLLRLayer   a = W·x (dense or conv) + W_rec·s[t−1];  integer LIF (du = 4095) → s[t]
                 (float: stllr's ``lif_step``); send s[t]; then, if plastic: traces P, Q
                 (R) advance; if ``ls_in`` is connected, receive L[t] and apply the
                 S-TLLR weight update
    ReadoutProcess   o[t] = clip24(decay(o[t−1], dv) + (W·x << 6) + bias)
                 (float: γ·o[t−1] + W·x + b); send o[t]; plastic like the emulator's
                 readout (Ψ ≡ 1, no post trace)
    PoolProcess      max, sum (or, float only, average) over k×k windows
    GlobalSumPoolProcess  sum (or, float only, ``average=True``: mean) over H, W
    AddProcess       (a_in << shifts[0]) + (b_in << shifts[1])
    ConcatProcess    [a_in << shifts[0], b_in << shifts[1]] along channels
    UpsampleProcess  round_shift(16 × bilinear×2(x), shift)   (float: bilinear×2(x))
    FlattenProcess   [C, H, W] → [C·H·W], row-major

Common keyword arguments (``proc_params``): ``node_index`` (keys the random streams:
``node_index·10 + quantity``), ``step_offset`` (the emulator's global step counter at
Lava's ``time_step == 1``; the global step is ``step_offset + time_step − 1``),
``reset_interval`` (0: never; else the state and traces are zeroed at the start of
every ``reset_interval``-th step, the emulator's ``reset()`` between samples; weights
keep learning), ``record_dir``/``record_steps`` (if set, the model writes its output
of every step and its final state to ``record_dir/<node_index>.npz`` at time step
``record_steps``; far faster than ``Var.get()``, docs/lava.md §6) and ``node`` (the
:class:`~quantization.network.QNetwork` node a ``fixed_pt`` model steps with its kind,
:mod:`quantization.nodes`; the float models do not use it).

This module imports only numpy and Lava (Lava's model discovery executes it,
docs/lava.md §7, pitfall 4).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


def _common(kw: dict) -> dict:
    out = {
        "node_index": 0,
        "step_offset": 0,
        "reset_interval": 0,
        "record_dir": None,
        "record_steps": 0,
        "node": None,
    }
    unknown = set(kw) - set(out) - {"name"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    out.update(kw)
    return out


def _int_array(x, shape=None) -> np.ndarray:
    a = np.asarray(x, dtype=np.int64)
    return a if shape is None else a.reshape(shape)


def _float_array(x, shape=None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("non-finite parameter value")
    return a if shape is None else a.reshape(shape)


class STLLRLayer(AbstractProcess):
    """Spiking layer: dense or conv synapses fused with the LIF neuron (fixed or float).

    Parameters (integers as in :class:`quantization.network.SpikingLayer`):
    ``in_shape``/``out_shape``; ``weight``; ``kind`` ``"dense" | "conv"`` with
    ``stride, padding, dilation, groups``; ``dv``, ``vth``, ``reset`` (``"soft" | "hard"``);
    ``bias`` (``bias_mant << bias_exp``, one per output channel); ``weight_rec``
    (``[out, out]``, recurrent dense weights, optional). Plastic layers also take
    ``learning`` (a :class:`~quantization.learning_formats.LearningSpec`-like object with
    integer fields) and ``psi`` = ``(table, shift, half, frac)``.

    Float layer (``floating_pt``, :class:`quantization.convert.FloatSpiking`): pass
    ``lif`` (a :class:`stllr.neuron.LIFParams`: γ, θ_eff, reset; ``dv``/``vth``/``reset``
    are then unused), float ``weight``/``bias``/``weight_rec`` (Ŵ after weight
    standardisation), ``psi`` the surrogate's name (``"a"``–``"d"``) and, if plastic,
    ``learning`` a :class:`lava_models.float_ops.FloatLearning` (lr, S-TLLR factors).
    A float current-based (CuLIF) layer also takes ``current_decay`` β and ``lambda_syn``
    (the decay of its current traces P^i, R^i; docs/neurons.md §1, §3b).

    Ports: ``s_in`` (``in_shape``), ``s_out`` (``out_shape``, spikes 0/1), ``ls_in``
    (``out_shape``, the third factor L: 8-bit signed integers, or floats; leave
    unconnected for no learning). Vars: ``weights``, ``weight_rec`` (zeros ``[out, out]``
    if not recurrent), ``bias``, ``u`` (the synaptic current of the last step), ``v``
    (the membrane after reset, stllr's ũ), ``s`` (last spikes), ``psi`` (last Ψ), ``p``
    (pre-trace, ``in_shape``), ``q`` (post-trace), ``r`` (recurrent pre-trace), ``pi``,
    ``ri`` (the current traces of a current-based node, ``in_shape``/``out_shape``); int64,
    or float64 for a float layer.
    """

    def __init__(self, *, in_shape, out_shape, weight, kind="dense", stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), groups=1, dv=0, vth=1, reset="soft",
                 bias=None, weight_rec=None, learning=None, psi=None, lif=None,
                 current_decay=None, lambda_syn=None, **kw):  # fmt: skip
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        channels = out_shape[0]
        floating = lif is not None
        array, dtype = (_float_array, np.float64) if floating else (_int_array, np.int64)
        bias = np.zeros(channels, dtype) if bias is None else array(bias, (channels,))
        if kind not in ("dense", "conv", "deconv"):
            raise ValueError(f"STLLRLayer: kind must be 'dense', 'conv' or 'deconv', got "
                             f"{kind!r}")  # fmt: skip
        if floating:
            reset = lif.reset
        if reset not in ("soft", "hard"):
            raise ValueError(f"STLLRLayer: reset must be 'soft' or 'hard', got {reset!r}")
        if learning is not None and psi is None:
            raise ValueError("STLLRLayer: a plastic layer needs its Ψ (psi=...)")
        recurrent = weight_rec is not None
        if recurrent and kind != "dense":
            raise ValueError("STLLRLayer: recurrent weights need a dense layer")
        psi_arg = None
        if floating:
            if psi is not None and not isinstance(psi, str):
                raise ValueError(f"STLLRLayer: a float layer's psi is a name, got {psi!r}")
            psi_arg = psi
        elif psi is not None:
            table, shift, half, frac = psi
            psi_arg = (_int_array(table), int(shift), int(half), int(frac))
        super().__init__(
            in_shape=in_shape, out_shape=out_shape, kind=kind, stride=tuple(stride),
            padding=tuple(padding), dilation=tuple(dilation), groups=int(groups), dv=int(dv),
            vth=int(vth), reset=reset, recurrent=recurrent, learning=learning, psi=psi_arg,
            lif=lif, current_decay=current_decay, lambda_syn=lambda_syn, **_common(kw),
        )  # fmt: skip
        w = array(weight)
        w_rec = array(weight_rec) if recurrent else np.zeros((channels,) * 2, dtype)
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)
        self.ls_in = InPort(shape=out_shape)
        self.weights = Var(shape=w.shape, init=w)
        self.weight_rec = Var(shape=w_rec.shape, init=w_rec)
        self.bias = Var(shape=(channels,), init=bias)
        for name, shape in (("u", out_shape), ("v", out_shape), ("s", out_shape),
                            ("psi", out_shape), ("p", in_shape), ("q", out_shape),
                            ("r", out_shape), ("pi", in_shape), ("ri", out_shape)):  # fmt: skip
            setattr(self, name, Var(shape=shape, init=np.zeros(shape, dtype)))


class ReadoutProcess(AbstractProcess):
    """Non-spiking integrator whose state is the logit (``quantization.network.Readout``).

    ``o[t] = clip24(decay(o[t−1], dv) + (W·x << 6) + bias)``; ``dv = 4096`` keeps no memory.
    Float (``gamma`` given, :class:`quantization.convert.FloatReadout`): ``o[t] = γ·o[t−1]
    + W·x + b`` (stllr's ``AccumulateStep``; ``dv`` unused, ``learning`` a
    :class:`lava_models.float_ops.FloatLearning`).
    Ports: ``s_in`` (``[in]``), ``s_out`` (``[K]``, ``o`` of every step), ``ls_in``
    (``[K]``, L). Vars: ``weights`` ``[K, in]``, ``bias`` ``[K]``, ``v`` (``o``), ``p``.
    Plastic with ``learning`` (Ψ ≡ 1, no post trace). A 1×1-conv readout (a flow head):
    ``weight`` ``[K, C, 1, 1]``, ``s_in`` ``[C, H, W]``, ``s_out``/``ls_in``/``v``
    ``[K, H, W]``, one integrator per pixel; fixed_pt shifts ``W·x`` by the node's
    ``a_shift`` instead of 6.
    """

    def __init__(self, *, in_shape, out_shape, weight, dv=4096, bias=None, learning=None,
                 gamma=None, **kw):  # fmt: skip
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        floating = gamma is not None
        array, dtype = (_float_array, np.float64) if floating else (_int_array, np.int64)
        # one bias per output channel (a dense readout: per output; a 1×1 conv: per map)
        bias = np.zeros(out_shape[:1], dtype) if bias is None else array(bias, out_shape[:1])
        super().__init__(in_shape=in_shape, out_shape=out_shape, dv=int(dv), learning=learning,
                         gamma=None if gamma is None else float(gamma),
                         **_common(kw))  # fmt: skip
        w = array(weight)
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)
        self.ls_in = InPort(shape=out_shape)
        self.weights = Var(shape=w.shape, init=w)
        self.bias = Var(shape=out_shape[:1], init=bias)
        self.v = Var(shape=out_shape, init=np.zeros(out_shape, dtype))
        self.p = Var(shape=in_shape, init=np.zeros(in_shape, dtype))


class PoolProcess(AbstractProcess):
    """Max, sum or (float models only) average over non-overlapping ``kernel × kernel``
    windows of ``[C, H, W]`` (``mode`` ``"max" | "sum" | "avg"``)."""

    def __init__(self, *, in_shape, out_shape, mode, kernel, **kw):
        if mode not in ("max", "sum", "avg"):
            raise ValueError(f"PoolProcess: mode must be 'max', 'sum' or 'avg', got {mode!r}")
        super().__init__(in_shape=tuple(in_shape), out_shape=tuple(out_shape), mode=mode,
                         kernel=int(kernel), **_common(kw))  # fmt: skip
        self.s_in = InPort(shape=tuple(in_shape))
        self.s_out = OutPort(shape=tuple(out_shape))


class GlobalSumPoolProcess(AbstractProcess):
    """Sum over every spatial position, ``[C, H, W] → [C]``; ``average=True`` (float models
    only) divides by ``H·W`` (global average pooling)."""

    def __init__(self, *, in_shape, average=False, **kw):
        in_shape = tuple(in_shape)
        super().__init__(in_shape=in_shape, out_shape=in_shape[:1], average=bool(average),
                         **_common(kw))  # fmt: skip
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=in_shape[:1])


class AddProcess(AbstractProcess):
    """``(a_in << shifts[0]) + (b_in << shifts[1])``, elementwise (a residual connection)."""

    def __init__(self, *, shape, shifts=(0, 0), **kw):
        shape, shifts = tuple(shape), tuple(int(k) for k in shifts)
        if len(shifts) != 2 or min(shifts) < 0:
            raise ValueError(f"AddProcess: shifts must be two non-negative ints, got {shifts}")
        super().__init__(shape=shape, shifts=shifts, **_common(kw))
        self.a_in = InPort(shape=shape)
        self.b_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class ConcatProcess(AbstractProcess):
    """``[a_in << shifts[0], b_in << shifts[1]]`` along the channel axis of ``[C, H, W]``
    (a skip connection into a decoder)."""

    def __init__(self, *, a_shape, b_shape, shifts=(0, 0), **kw):
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        shifts = tuple(int(k) for k in shifts)
        if len(a_shape) != 3 or a_shape[1:] != b_shape[1:]:
            raise ValueError(f"ConcatProcess: inputs must be [C, H, W] of one H, W, got "
                             f"{a_shape} and {b_shape}")  # fmt: skip
        if len(shifts) != 2 or min(shifts) < 0:
            raise ValueError(f"ConcatProcess: shifts must be two non-negative ints, got {shifts}")
        out_shape = (a_shape[0] + b_shape[0], *a_shape[1:])
        super().__init__(a_shape=a_shape, b_shape=b_shape, shifts=shifts, **_common(kw))
        self.a_in = InPort(shape=a_shape)
        self.b_in = InPort(shape=b_shape)
        self.s_out = OutPort(shape=out_shape)


class UpsampleProcess(AbstractProcess):
    """Fixed ×2 bilinear up-sampling of ``[C, H, W]`` → ``[C, 2H, 2W]``; fixed_pt:
    ``round_shift(16 × bilinear(x), shift)`` (:mod:`quantization.nodes.upsample`)."""

    def __init__(self, *, in_shape, shift=0, **kw):
        in_shape = tuple(in_shape)
        if len(in_shape) != 3 or int(shift) < 0:
            raise ValueError(f"UpsampleProcess: needs a [C, H, W] input and a shift ≥ 0, got "
                             f"{in_shape}, {shift}")  # fmt: skip
        out_shape = (in_shape[0], 2 * in_shape[1], 2 * in_shape[2])
        super().__init__(in_shape=in_shape, out_shape=out_shape, shift=int(shift),
                         **_common(kw))  # fmt: skip
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)


class FlattenProcess(AbstractProcess):
    """``[C, H, W] → [C·H·W]``, row-major (a dense layer after convolutions; the values as
    they are, so one process serves fixed and float models)."""

    def __init__(self, *, in_shape, **kw):
        in_shape = tuple(in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"FlattenProcess: needs a [C, H, W] input, got {in_shape}")
        out_shape = (int(np.prod(in_shape)),)
        super().__init__(in_shape=in_shape, out_shape=out_shape, **_common(kw))
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)


__all__ = [
    "AddProcess",
    "ConcatProcess",
    "FlattenProcess",
    "GlobalSumPoolProcess",
    "PoolProcess",
    "ReadoutProcess",
    "STLLRLayer",
    "UpsampleProcess",
]


class AdaptiveProcess(AbstractProcess):
    """Integer AdLIF layer ``[in] → [out]`` (spikes). Vars: ``weights`` ``[out, in]``,
    ``weight_rec`` ``[out, out]`` (zeros if not recurrent), ``bias`` ``[out]`` (membrane
    units), and the state after the last step: ``u``, ``v`` (after reset), ``w`` (the
    adaptation ω), ``h`` (voltage before reset), ``s``. The node itself (``node=``) carries
    the 12-bit decays and couplings.

    Float layer (``floating_pt``, :class:`quantization.float_nodes.FloatAdaptive`): pass
    ``adlif`` (a :class:`stllr.neurons.dynamics.AdLIFParams` of float64 ``[out]`` arrays
    or floats) and float ``weight``/``bias``/``weight_rec`` (Ŵ); the Vars are float64 and
    ``u`` holds the step's input ``c``. A plastic float layer also takes ``psi`` (the
    surrogate's name) and ``learning`` (a :class:`lava_models.float_ops.FloatLearning`).

    On-device S-TLLR (a plastic node, or a float layer with ``learning``): the third factor
    arrives on ``ls_in`` (``out_shape``; leave it unconnected for no learning) and the Vars
    ``psi`` (last Ψ), ``p`` (pre-trace, ``in_shape``), ``q`` (post-trace) and ``r``
    (recurrent pre-trace) hold the traces, and ``pi``, ``ri`` the current traces of a
    current-based (CuAdLIF) node."""

    def __init__(self, *, in_shape, out_shape, weight, bias=None, weight_rec=None, adlif=None,
                 psi=None, learning=None, **kw):  # fmt: skip
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        (n,) = out_shape
        array, dtype = (_float_array, np.float64) if adlif is not None else (_int_array, np.int64)
        if adlif is not None and learning is not None and psi is None:
            raise ValueError("AdaptiveProcess: a plastic float layer needs its Ψ (psi=...)")
        super().__init__(in_shape=in_shape, out_shape=out_shape,
                         recurrent=weight_rec is not None, adlif=adlif, psi=psi,
                         learning=learning, **_common(kw))  # fmt: skip
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)
        self.ls_in = InPort(shape=out_shape)
        for name, shape in (("psi", out_shape), ("p", in_shape), ("q", out_shape),
                            ("r", out_shape), ("pi", in_shape), ("ri", out_shape)):  # fmt: skip
            setattr(self, name, Var(shape=shape, init=np.zeros(shape, dtype)))
        w = array(weight)
        w_rec = np.zeros((n, n), dtype) if weight_rec is None else array(weight_rec)
        self.weights = Var(shape=w.shape, init=w)
        self.weight_rec = Var(shape=w_rec.shape, init=w_rec)
        self.bias = Var(shape=(n,), init=np.zeros(n, dtype) if bias is None
                        else array(bias, (n,)))  # fmt: skip
        for name in ("u", "v", "w", "h", "s"):
            setattr(self, name, Var(shape=out_shape, init=np.zeros(out_shape, dtype)))
