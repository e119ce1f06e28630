"""Batched integer emulator of a :class:`~quantization.network.QNetwork` (torch, CPU or GPU).

Runs the integer kernels of :mod:`quantization.loihi` and :mod:`quantization.kernels`
(the same functions the Lava ``fixed_pt`` models call) on ``[B, ...]`` int64 tensors,
one time step at a time. Per step, for every node in order::

    SpikingLayer   a = W·x (conv or dense) [+ W_rec·s[t−1]];  (s, v_c, state) = LIF(a)
    Readout        o = decay(o, dv) + (W·x << 6) + bias       (clipped to 24 bits)
    Pool / GlobalSumPool / Add                                  integer sums and maxima

``delay=1`` reproduces Lava's built-in ``Dense``: a feed-forward current computed from
the input at step t reaches the neuron at step t + 1 (recurrent currents already
arrive one step later in both conventions). ``delay=0`` matches the float model.

The products are computed in float32 or float64 only where that is exact (a static
bound per node, :func:`quantization.backend.exact_float_dtype`).

On-device learning (:meth:`IntegerEmulator.step` with ``signals``) follows
:mod:`quantization.learning_formats` for every node that carries a ``LearningSpec``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from quantization.backend import (
    exact_float_dtype,
    int_conv2d,
    int_linear,
    int_max_pool2d,
    int_outer_sum,
    int_sum_pool2d,
)
from quantization.kernels import (
    STREAM_W,
    STREAM_WREC,
    add_shifted,
    global_sum_pool,
    node_stream_key,
    psi_lookup,
    readout_int_step,
    stllr_eligibility_terms,
    stllr_trace_step,
    stllr_weight_step,
    synapse_correlation,
)
from quantization.loihi import (
    ACT_SHIFT,
    UV_LIMIT,
    LIFFixedParams,
    LIFFixedState,
    lif_int_step,
)
from quantization.network import Add, GlobalSumPool, Pool, QNetwork, Readout, SpikingLayer
from quantization.ptq import quantize_input
from quantization.qformat import SaturationCounter


@dataclass
class LearnState:
    """Traces of one plastic node (int64, batched)."""

    p: torch.Tensor  # pre-trace of the input, [B, *in]
    q: torch.Tensor  # post-trace, [B, *out]
    r: torch.Tensor | None = None  # pre-trace of the recurrent input, [B, out]


@dataclass
class EmulatorResult:
    """Summed integer logits ``[B, K]`` (float value: ``× logit_scale``) and statistics."""

    logits_sum: torch.Tensor
    logit_scale: float
    spike_counts: dict[str, int]
    neurons: dict[str, int]
    saturation: dict
    records: dict[str, list[torch.Tensor]] | None = None

    def predictions(self) -> torch.Tensor:
        return self.logits_sum.argmax(dim=1)


class IntegerEmulator:
    """Stateful runner of a quantized network (see module doc)."""

    def __init__(self, qnet: QNetwork, delay: int = 0, device: str | torch.device = "cpu"):
        if delay not in (0, 1):
            raise ValueError(f"delay must be 0 (float-model timing) or 1 (Lava Dense), got {delay}")
        self.qnet = qnet
        self.delay = delay
        self.device = torch.device(device)
        self.counter = SaturationCounter()
        self.step_count = 0  # steps taken (keys the random bits; not reset per sample)
        self.t = 0  # index of the current (last forward) step
        self._last_outs: dict[str, torch.Tensor] | None = None
        self._weights: dict[str, dict[str, torch.Tensor]] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._bound: dict[str, int] = {}  # largest |value| each node can output
        self._wfloat: dict[tuple, torch.Tensor] = {}
        self._pending: dict[str, list] = {}
        self.state: dict[str, object] = {}
        self.learn: dict[str, LearnState] = {}
        for n in qnet.nodes:
            if isinstance(n, (SpikingLayer, Readout)):
                self._load_weights(n)

    # --- weights -------------------------------------------------------------------
    def _load_weights(self, n) -> None:
        w = {"w": n.weight.to(self.device)}
        if getattr(n, "weight_rec", None) is not None:
            w["w_rec"] = n.weight_rec.to(self.device)
        if n.bias_mant is not None:
            w["bias"] = n.bias_mant.to(self.device) << n.bias_exp
        self._weights[n.name] = w
        self._dtypes.pop(n.name, None)

    def weights(self, name: str) -> dict[str, torch.Tensor]:
        """Current integer weights of node ``name`` (changed by on-device learning)."""
        return self._weights[name]

    def to_qnetwork(self) -> QNetwork:
        """The network with the current (possibly learned) weights."""
        q = self.qnet
        for n in q.nodes:
            if isinstance(n, (SpikingLayer, Readout)):
                w = self._weights[n.name]
                kw = {"weight": w["w"].cpu()}
                if "w_rec" in w:
                    kw["weight_rec"] = w["w_rec"].cpu()
                q = q.replace_node(dataclasses.replace(n, **kw))
        return q

    # --- running ---------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new sample: zero neuron states, delay buffers and traces."""
        self.state = {}
        self.learn = {}

    @property
    def logit_scale(self) -> float:
        """Float value of one unit of the output node (a readout's membrane LSB)."""
        return 2.0 ** self.qnet.nodes[-1].weight_exp / 2**ACT_SHIFT

    def forward(self, x_int: torch.Tensor) -> dict[str, torch.Tensor]:
        """One time step on integer input ``[B, *input_shape]``: every node's output.

        Advances neurons and, for plastic nodes, their traces and Ψ. Learning from this
        step needs its signal: call :meth:`apply_signals` before the next ``forward``.
        """
        self.t = self.step_count
        self.step_count += 1
        outs = {"input": x_int.to(self.device)}
        fmt = self.qnet.input_format
        self._bound.setdefault("input", max(abs(fmt.lo), abs(fmt.hi)))
        for i, n in enumerate(self.qnet.nodes):
            ins = [outs[k] for k in n.inputs]
            outs[n.name] = _KERNELS[type(n)](self, i, n, ins)
            if n.name not in self._bound:
                self._bound[n.name] = _value_bound(n, [self._bound[k] for k in n.inputs], ins)
        self._last_outs = outs
        return outs

    def apply_signals(self, signals: dict[str, torch.Tensor]) -> None:
        """On-device S-TLLR update of the last step from third factors ``L`` (integers).

        ``signals`` maps plastic node names to ``L`` ``[B, *out]``, e.g. a host-computed
        error made integer with :func:`quantization.learning.quantize_signal`; nodes not
        named do not learn at this step.
        """
        if self._last_outs is None:
            raise RuntimeError("apply_signals needs a forward step first")
        for name, sig in signals.items():
            self._learn(name, self._last_outs, sig.to(self.device))

    def step(self, x_int: torch.Tensor, signals: dict[str, torch.Tensor] | None = None):
        """:meth:`forward`, then :meth:`apply_signals` with ``signals`` known in advance."""
        outs = self.forward(x_int)
        if signals:
            self.apply_signals(signals)
        return outs

    def run(self, frames: torch.Tensor, record: tuple[str, ...] = ()) -> EmulatorResult:
        """Inference on float frames ``[T, B, *input_shape]`` (quantized with the input format)."""
        x = quantize_input(frames, self.qnet.input_format)
        out_name = self.qnet.nodes[-1].name
        self.reset()
        logits = None
        counts = {n.name: 0 for n in self.qnet.nodes if isinstance(n, SpikingLayer)}
        sizes: dict[str, int] = {}
        records = {k: [] for k in record}
        for t in range(x.shape[0]):
            outs = self.step(x[t])
            logits = outs[out_name] if logits is None else logits + outs[out_name]
            for k in counts:
                counts[k] += int(outs[k].sum())
                sizes[k] = outs[k][0].numel()
            for k in record:
                records[k].append(outs[k].cpu())
        return EmulatorResult(
            logits_sum=logits.cpu(),
            logit_scale=self.logit_scale,
            spike_counts=counts,
            neurons=sizes,
            saturation=self.saturation(),
            records=records or None,
        )

    # --- helpers for the kernels -------------------------------------------------------
    def _dtype(self, n, x: torch.Tensor) -> torch.dtype:
        """float32 where every partial sum of this node's products stays below 2^24."""
        if n.name not in self._dtypes:
            w = self._weights[n.name]
            bound = self._bound[n.inputs[0]] * int(w["w"].abs().max()) * w["w"][0].numel()
            if "w_rec" in w:
                bound += int(w["w_rec"].abs().max()) * w["w_rec"].shape[1]
            self._dtypes[n.name] = exact_float_dtype(bound)
        return self._dtypes[n.name]

    def _float_weight(self, name: str, key: str, dtype: torch.dtype) -> torch.Tensor:
        """The integer weights as ``dtype`` (cached until on-device learning changes them)."""
        k = (name, key, dtype)
        if k not in self._wfloat:
            self._wfloat[k] = self._weights[name][key].to(dtype)
        return self._wfloat[k]

    def _synapse(self, n, x: torch.Tensor) -> torch.Tensor:
        dtype = self._dtype(n, x)
        w = self._float_weight(n.name, "w", dtype)
        if getattr(n, "kind", "dense") == "conv":
            return int_conv2d(x, w, n.stride, n.padding, n.dilation, n.groups, dtype)
        return int_linear(x.flatten(1), w, dtype)  # a dense layer after a conv flattens C·H·W

    def _delayed(self, name: str, a: torch.Tensor) -> torch.Tensor:
        if self.delay == 0:
            return a
        prev = self.state.get(name + "/a", torch.zeros_like(a))
        self.state[name + "/a"] = a
        return prev

    def _count(self, name: str, values: torch.Tensor, limit: int) -> None:
        """Count values at or beyond ``limit`` (kept on the device; see :meth:`saturation`)."""
        over = (values.abs() >= limit).sum()
        if name in self._pending:
            self._pending[name][0] += over
            self._pending[name][1] += values.numel()
        else:
            self._pending[name] = [over, values.numel()]

    def saturation(self) -> dict:
        """Per quantity: values that saturated or wrapped, out of how many (since creation)."""
        for name, (over, total) in self._pending.items():
            self.counter.add(name, int(over), total)
        self._pending = {}
        return self.counter.as_dict()

    # --- learning --------------------------------------------------------------------
    def _learn(self, name: str, outs, signal: torch.Tensor) -> None:
        idx = next(i for i, n in enumerate(self.qnet.nodes) if n.name == name)
        n = self.qnet.nodes[idx]
        spec = n.learning
        if spec is None:
            raise ValueError(f"node {name!r} has no LearningSpec: it is not plastic")
        x = outs[n.inputs[0]]
        st = self.learn[name]
        if isinstance(n, SpikingLayer):
            psi, q_prev = self.state[name + "/psi"], self.state[name + "/q_prev"]
            g, h = stllr_eligibility_terms(signal, psi, q_prev, n.psi.frac - spec.q_frac)
            h = h if spec.a_post else None
        else:  # a readout: Ψ ≡ 1, no post trace
            g, h = signal, None
        w = self._weights[name]
        key = node_stream_key(spec.seed, self.t, idx, STREAM_W)
        w["w"] = self._apply_update(name + "/weight", w["w"], g, h, st.p, x, spec, key,
                                    _correlate(n, w["w"].shape))  # fmt: skip
        if "w_rec" in w and st.r is not None:
            s_prev = self.state[name + "/s_prev_learn"]
            key = node_stream_key(spec.seed, self.t, idx, STREAM_WREC)
            w["w_rec"] = self._apply_update(name + "/weight_rec", w["w_rec"], g, h, st.r, s_prev,
                                            spec, key, int_outer_sum)  # fmt: skip
        self._dtypes.pop(name, None)
        self._wfloat = {k: v for k, v in self._wfloat.items() if k[0] != name}

    def _apply_update(self, label: str, w, g, h, pre_trace, pre_input, spec, key, correlate):
        new, dw = stllr_weight_step(w, g, h, pre_trace, pre_input, spec, key, correlate)
        raw = w + dw
        self.counter.add(label, int(((raw > spec.w_max) | (raw < spec.w_min)).sum()), w.numel())
        return new

    def _update_traces(self, i: int, n, x, psi, s_prev) -> None:
        """Advance P (and R, Q) of a plastic node at this step (after its forward)."""
        spec = n.learning
        st = self.learn.get(n.name)
        if st is None:
            out_shape = psi.shape if psi is not None else None
            st = LearnState(
                p=torch.zeros_like(x),
                q=torch.zeros(out_shape, dtype=torch.int64, device=x.device)
                if out_shape is not None
                else None,
                r=torch.zeros_like(s_prev) if s_prev is not None else None,
            )
            self.learn[n.name] = st

        rec = s_prev is not None and st.r is not None
        if rec:
            self.state[n.name + "/s_prev_learn"] = s_prev
        if psi is not None:
            self.state[n.name + "/q_prev"] = st.q
        psi_frac = n.psi.frac if psi is not None else 0
        st.p, q, r = stllr_trace_step(st.p, st.q if psi is not None else None,
                                      st.r if rec else None, x, psi, s_prev, spec, psi_frac,
                                      self.t, i)  # fmt: skip
        top = (1 << spec.trace_bits) - 1
        self._count(n.name + "/trace_pre", st.p, top)
        if rec:
            st.r = r
        if psi is not None:
            st.q = q
            self._count(n.name + "/trace_post", st.q, top)


def _value_bound(n, in_bounds: list[int], ins) -> int:
    """Largest |output| of node ``n`` given its inputs' bounds (static, for exact dtypes)."""
    if isinstance(n, SpikingLayer):
        return 1
    if isinstance(n, Readout):
        return UV_LIMIT
    if isinstance(n, Pool):
        return in_bounds[0] * (n.kernel**2 if n.mode == "sum" else 1)
    if isinstance(n, GlobalSumPool):
        return in_bounds[0] * ins[0].shape[2] * ins[0].shape[3]
    return sum(b << k for b, k in zip(in_bounds, n.shifts or (0,) * len(in_bounds), strict=True))


def _correlate(n, w_shape) -> Callable:
    """:func:`~quantization.kernels.synapse_correlation` bound to node ``n``'s synapses."""
    kind = getattr(n, "kind", "dense")
    conv = (n.stride, n.padding, n.dilation, n.groups) if kind == "conv" else ()
    return lambda a, x: synapse_correlation(kind, a, x, w_shape, *conv)


# --- node kernels ----------------------------------------------------------------------

Kernel = Callable[[IntegerEmulator, int, object, list], torch.Tensor]
_KERNELS: dict[type, Kernel] = {}


def register_kernel(node_cls: type, fn: Kernel) -> None:
    """Make the emulator run nodes of ``node_cls`` (``fn(emu, index, node, inputs)``)."""
    _KERNELS[node_cls] = fn


def _spiking(emu: IntegerEmulator, i: int, n: SpikingLayer, ins) -> torch.Tensor:
    (x,) = ins
    a = emu._delayed(n.name, emu._synapse(n, x))
    w = emu._weights[n.name]
    s_prev = emu.state.get(n.name + "/s")
    if "w_rec" in w and s_prev is not None:
        dtype = emu._dtype(n, x)
        a = a + int_linear(s_prev, emu._float_weight(n.name, "w_rec", dtype), dtype)
    st = emu.state.get(n.name)
    if st is None:
        zeros = torch.zeros_like(a)
        st = LIFFixedState(zeros, zeros)
    emu._count(n.name + "/current", a << ACT_SHIFT, UV_LIMIT)
    p = LIFFixedParams(4095, n.dv, n.vth, w.get("bias", torch.zeros((), dtype=torch.int64)),
                       0, n.reset)  # fmt: skip
    p = p._replace(bias_mant=_channel(p.bias_mant, a))
    s, v_c, st = lif_int_step(st, a, p)
    emu._count(n.name + "/membrane", st.v, UV_LIMIT - 1)
    emu.state[n.name] = st
    s = s.to(torch.int64)
    if n.learning is not None:
        psi = psi_lookup(v_c, n.psi.table.to(a.device), n.psi.shift, n.psi.half)
        emu.state[n.name + "/psi"] = psi
        rec_in = (s_prev if s_prev is not None else torch.zeros_like(s)) if "w_rec" in w else None
        emu._update_traces(i, n, x, psi, rec_in)
    emu.state[n.name + "/s"] = s
    return s


def _channel(bias: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel bias over ``[B, C, H, W]`` (dense ``[B, C]`` as is)."""
    if bias.dim() == 1 and like.dim() == 4:
        return bias.view(1, -1, 1, 1)
    return bias


def _readout(emu: IntegerEmulator, i: int, n: Readout, ins) -> torch.Tensor:
    (x,) = ins
    a = emu._delayed(n.name, emu._synapse(n, x))
    new = readout_int_step(emu.state.get(n.name), a, n.dv, emu._weights[n.name].get("bias"))
    emu._count(n.name + "/membrane", new, UV_LIMIT - 1)
    emu.state[n.name] = new
    if n.learning is not None:
        emu._update_traces(i, n, x, None, None)
    return new


def _pool(emu, i, n: Pool, ins) -> torch.Tensor:
    (x,) = ins
    return int_max_pool2d(x, n.kernel) if n.mode == "max" else int_sum_pool2d(x, n.kernel)


def _gsum(emu, i, n: GlobalSumPool, ins) -> torch.Tensor:
    (x,) = ins
    return global_sum_pool(x)


def _add(emu, i, n: Add, ins) -> torch.Tensor:
    return add_shifted(ins, n.shifts)


register_kernel(SpikingLayer, _spiking)
register_kernel(Readout, _readout)
register_kernel(Pool, _pool)
register_kernel(GlobalSumPool, _gsum)
register_kernel(Add, _add)


def evaluate(
    qnet: QNetwork, batches, device="cpu", delay: int = 0, progress=None
) -> tuple[float, SaturationCounter]:
    """Accuracy of the integer network over ``(frames [T, B, ...], labels [B])`` batches."""
    emu = IntegerEmulator(qnet, delay=delay, device=device)
    correct = total = 0
    for x, y in batches:
        res = emu.run(x)
        correct += int((res.predictions() == y).sum())
        total += int(y.numel())
        if progress is not None:
            progress(1)
    emu.saturation()  # flush the device-side counts into emu.counter
    return correct / max(total, 1), emu.counter
