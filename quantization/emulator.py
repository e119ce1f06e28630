"""Batched integer emulator of a :class:`~quantization.network.QNetwork` (torch, CPU or GPU).

Runs each node's kind (:mod:`quantization.nodes`: the same ``forward`` and ``learn`` the
Lava ``fixed_pt`` models call) on ``[B, ...]`` int64 tensors, one time step at a time;
the emulator itself batches, plans the exact dtypes and counts saturation (it is the
kinds' :class:`~quantization.nodes.Host`). Per step, for every node in order::

    SpikingLayer   a = W·x (conv or dense) [+ W_rec·s[t−1]];  (s, v_c, state) = LIF(a)
    Readout        o = decay(o, dv) + (W·x << 6) + bias       (clipped to 24 bits)
    Pool / GlobalSumPool / Add                                  integer sums and maxima

``delay=1`` reproduces Lava's built-in ``Dense``: a feed-forward current computed from
the input at step t reaches the neuron at step t + 1 (recurrent currents already
arrive one step later in both conventions). ``delay=0`` matches the float model.

The products are computed in float32 or float64 only where that is exact (a static
bound per node, :func:`quantization.backend.exact_float_dtype`). Bounds start from the
largest |input|: the input format's range for :meth:`IntegerEmulator.forward`, the
largest value in the frames for :meth:`IntegerEmulator.run`. A non-plastic spiking layer
whose synaptic sums provably stay below 2^17 (so ``a << 6`` cannot wrap) runs its LIF on
float32 tensors holding the same integers (every value below 2^24, so every operation is
exact; see :func:`quantization.loihi.lif_int_step`), which is several times faster than
int64 on CPUs; its outputs are int64 as everywhere else.

On-device learning (:meth:`IntegerEmulator.step` with ``signals``) follows
:mod:`quantization.learning_formats` for every node that carries a ``LearningSpec``.
``state[name]`` is the node's typed state (:class:`~quantization.nodes.SpikingState`,
:class:`~quantization.nodes.ReadoutState`; its S-TLLR traces in ``.traces``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from quantization.backend import exact_float_dtype, int_linear
from quantization.device_counts import DeviceCounts
from quantization.emulator_input import check_input, frames_bound, quantize_exact
from quantization.formats import ACT_SHIFT, DECAY_UNITY, DU_NONE, UV_LIMIT, VTH_SHIFT
from quantization.network import SPIKING_NODES, QNetwork, SpikingLayer
from quantization.nodes import SynapseWeights, kind_of, max_abs_fan_in
from quantization.ptq import quantize_input
from quantization.qformat import SaturationCounter
from stllr.errors import UserError
from stllr.functional.first_spike import fs_prediction
from stllr.padding import masked_step, step_mask
from stllr.spike_metrics import FirstSpikeTrack


@dataclass
class EmulatorResult:
    """Summed integer logits ``[B, K]`` (float value: ``× logit_scale``) and statistics.

    A network whose output node spikes (a first-spike-coded network, docs/first_spike.md)
    is read by its first spike: ``first_spike`` ``[B, K]`` holds the FS times of
    :func:`stllr.spike_metrics.fs_times` and :meth:`predictions` is their ``argmin``;
    ``logits_sum`` then holds the output spike counts."""

    logits_sum: torch.Tensor
    logit_scale: float
    spike_counts: dict[str, int]
    neurons: dict[str, int]
    saturation: dict
    records: dict[str, list[torch.Tensor]] | None = None
    first_spike: torch.Tensor | None = None

    def predictions(self) -> torch.Tensor:
        if self.first_spike is not None:
            return fs_prediction(self.first_spike)
        return self.logits_sum.argmax(dim=1)


class IntegerEmulator:
    """Stateful runner of a quantized network (see module doc)."""

    def __init__(self, qnet: QNetwork, delay: int = 0, device: str | torch.device = "cpu"):
        if delay not in (0, 1):
            raise ValueError(f"delay must be 0 (float-model timing) or 1 (Lava Dense), got {delay}")
        self.qnet = qnet
        self.delay = delay
        self.device = torch.device(device)
        self.counts = DeviceCounts()  # saturation, summed on the device
        self.counter = self.counts.counter
        self.step_count = 0  # steps taken (keys the random bits; not reset per sample)
        self.t = 0  # index of the current (last forward) step
        self._last_outs: dict[str, torch.Tensor] | None = None
        self._weights: dict[str, SynapseWeights] = {}
        self._kinds = [kind_of(n) for n in qnet.nodes]
        self._index = {n.name: i for i, n in enumerate(qnet.nodes)}
        self._psi: dict[str, torch.Tensor] = {}  # Ψ tables on the device
        # Static bounds, keyed by (input bound, node): run() uses the bound of its frames
        # for the duration of the call, forward() the input format's range.
        self._in_bound = self._format_bound()
        self._bound: dict[tuple[int, str], int] = {}  # largest |value| each node can output
        self._a_bounds: dict[tuple[int, str], int] = {}  # largest |synaptic sum a|
        self._dtypes: dict[tuple[int, str], torch.dtype] = {}
        self._fast: dict[tuple[int, str], bool] = {}  # LIF on exact float32 (see _fast_lif)
        self._row_sums: dict[tuple[str, str], int] = {}  # max over outputs of Σ|w|
        self._wfloat: dict[tuple, torch.Tensor] = {}
        self._exact: dict[str, torch.Tensor] = {}  # this step's outputs as exact floats
        self._int_input: bool | None = None  # whether a node needs the input as integers
        self.state: dict[str, object] = {}  # typed state per node (module doc)
        self._delay_buf: dict[str, torch.Tensor] = {}  # delay=1: last step's W·x per node
        for n, kind in zip(qnet.nodes, self._kinds, strict=True):
            if kind.has_weights:
                self._load_weights(n)

    # --- weights -------------------------------------------------------------------
    def _load_weights(self, n) -> None:
        w_rec = getattr(n, "weight_rec", None)
        self._weights[n.name] = SynapseWeights(
            n.weight.to(self.device),
            None if w_rec is None else w_rec.to(self.device),
            None if n.bias_mant is None else n.bias_mant.to(self.device) << n.bias_exp,
        )
        self._forget_bounds(n.name)

    def weights(self, name: str) -> dict[str, torch.Tensor]:
        """Current integer weights of node ``name`` (changed by on-device learning):
        ``{"w", "w_rec", "bias"}``, the ones it has."""
        return {k: v for k, v in self._weights[name]._asdict().items() if v is not None}

    def to_qnetwork(self) -> QNetwork:
        """The network with the current (possibly learned) weights."""
        q = self.qnet
        for n in q.nodes:
            if n.name in self._weights:
                w = self._weights[n.name]
                kw = {"weight": w.w.cpu()}
                if w.w_rec is not None:
                    kw["weight_rec"] = w.w_rec.cpu()
                q = q.replace_node(dataclasses.replace(n, **kw))
        return q

    # --- running ---------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new sample: zero neuron states, delay buffers and traces."""
        self.state = {}
        self._delay_buf = {}

    @property
    def logit_scale(self) -> float:
        """Float value of one unit of the output node (a readout's membrane LSB)."""
        last = self.qnet.nodes[-1]
        return getattr(last, "out_lsb", 2.0**last.weight_exp / 2**ACT_SHIFT)

    def forward(self, x_int: torch.Tensor) -> dict[str, torch.Tensor]:
        """One time step on integer input ``[B, *input_shape]``: every node's output.

        Advances neurons and, for plastic nodes, their traces and Ψ. Learning from this
        step needs its signal: call :meth:`apply_signals` before the next ``forward``.
        ``x_int`` may be a float tensor holding integers (|x| < 2^24 in float32); it is
        then passed on as it is unless a node needs integers. Input that the network's
        input format cannot hold (another shape, a non-numeric dtype, non-integers,
        integers outside ``[lo, hi]``) raises :class:`~stllr.errors.UserError`.
        """
        check_input(x_int, self.qnet, "IntegerEmulator.forward")
        return self._forward(x_int)

    def _forward(self, x_int: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward` on input known to fit the input format."""
        self.t = self.step_count
        self.step_count += 1
        x = x_int.to(self.device)
        if x.is_floating_point() and self._needs_int_input():
            x = x.to(torch.int64)
        outs = {"input": x}
        self._exact = {}
        ib = self._in_bound
        self._bound.setdefault((ib, "input"), ib)
        for i, (n, kind) in enumerate(zip(self.qnet.nodes, self._kinds, strict=True)):
            ins = [outs[k] for k in n.inputs]
            step = kind.forward(n, self.state.get(n.name), ins, self, self.t, i)
            outs[n.name] = step.out
            if step.state is not None:
                self.state[n.name] = step.state
            if step.exact is not None:  # the same integers as floats, for the next synapses
                self._exact[n.name] = step.exact
            if (ib, n.name) not in self._bound:
                in_bounds = [self._bound[ib, k] for k in n.inputs]
                shapes = [tuple(x.shape[1:]) for x in ins]
                self._bound[ib, n.name] = kind.value_bound(n, in_bounds, shapes)
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
            i = self._index[name]
            n = self.qnet.nodes[i]
            if n.learning is None:
                raise ValueError(f"node {name!r} has no LearningSpec: it is not plastic")
            self._weights[name] = self._kinds[i].learn(
                n, self._weights[name], self.state[name], sig.to(self.device), self, self.t, i
            )
            self._forget_bounds(name)
            self._wfloat = {k: v for k, v in self._wfloat.items() if k[0] != name}

    def step(self, x_int: torch.Tensor, signals: dict[str, torch.Tensor] | None = None):
        """:meth:`forward`, then :meth:`apply_signals` with ``signals`` known in advance."""
        outs = self.forward(x_int)
        if signals:
            self.apply_signals(signals)
        return outs

    def run(
        self,
        frames: torch.Tensor,
        record: tuple[str, ...] = (),
        lengths: torch.Tensor | None = None,
    ) -> EmulatorResult:
        """Inference on float frames ``[T, B, *input_shape]`` (quantized with the input format).

        Each step's frame is quantized as it is used (the same values as quantizing all
        frames at once). The largest |input| of these frames bounds every node's values
        during the call, which lets more nodes take the exact float32 path. Frames of
        another shape, or holding NaN, raise :class:`~stllr.errors.UserError`.

        ``lengths`` ``[B]``: the samples' steps before their zero padding. The logits, spike
        counts and saturation counts then take sample b's steps t < len_b only, exactly
        what it gives run alone (:mod:`stllr.padding`); ``records`` keep every step.
        """
        fmt = self.qnet.input_format
        out_name = self.qnet.nodes[-1].name
        shape = tuple(self.qnet.input_shape)
        if frames.ndim != len(shape) + 2 or tuple(frames.shape[2:]) != shape:
            raise UserError(
                f"IntegerEmulator.run: frames must be [T, B, {', '.join(map(str, shape))}], "
                f"got {list(frames.shape)}"
            )
        mask, n_active = self._padding(lengths, frames.shape[0], frames.shape[1])
        self.reset()
        bound = frames_bound(frames, fmt)
        self._in_bound = self._format_bound() if bound is None else bound
        try:
            logits = None
            counts: dict[str, torch.Tensor | int] = {
                n.name: 0 for n in self.qnet.nodes if isinstance(n, SPIKING_NODES)
            }
            sizes: dict[str, int] = {}
            records = {k: [] for k in record}
            # quantize_input's values, as exact floats in one reused buffer where no node
            # needs the input as int64 and nothing keeps it (not recorded)
            buf = (
                torch.empty_like(frames[0]) if bound is not None and "input" not in record else None
            )
            spiking_out = isinstance(self.qnet.nodes[-1], SpikingLayer)
            track = FirstSpikeTrack() if spiking_out else None
            for t in range(frames.shape[0]):
                f = frames[t]
                x = quantize_input(f, fmt) if buf is None else quantize_exact(f, fmt, buf)
                padded = mask is not None and n_active[t] < frames.shape[1]
                self.counts.set_active(*((mask[t], n_active[t]) if padded else (None, 0)))
                outs = self._forward(x)  # quantized: within the input format
                out = masked_step(outs[out_name], mask, t) if padded else outs[out_name]
                logits = out if logits is None else logits + out
                if track is not None:
                    track.add(t, outs[out_name], self.state[out_name].v,
                              mask[t] if mask is not None else None)  # fmt: skip
                for k in counts:  # summed on the device: no host sync per step
                    spikes = masked_step(outs[k], mask, t) if padded else outs[k]
                    counts[k] = counts[k] + spikes.sum()
                    sizes[k] = outs[k][0].numel()
                for k in record:
                    records[k].append(outs[k].cpu())
        finally:
            self._in_bound = self._format_bound()
            self.counts.set_active(None)
        return EmulatorResult(
            logits_sum=logits.cpu(),
            logit_scale=self.logit_scale,
            spike_counts={k: int(c) for k, c in counts.items()},
            neurons=sizes,
            saturation=self.saturation(),
            records=records or None,
            first_spike=None if track is None else track.times(
                torch.full((frames.shape[1],), frames.shape[0]) if lengths is None
                else torch.as_tensor(lengths)),
        )  # fmt: skip

    def _padding(self, lengths, steps: int, batch: int) -> tuple[torch.Tensor | None, list]:
        """:meth:`run`'s step mask ``[T, B]`` (int64, on the device) and the number of
        samples that count at each step (host ints: no device sync per step)."""
        if lengths is None:
            return None, []
        lengths = torch.as_tensor(lengths).cpu()
        if lengths.shape != (batch,):
            raise ValueError(f"{tuple(lengths.shape)} lengths for a batch of {batch} samples")
        mask = step_mask(lengths, steps, torch.int64)
        return mask.to(self.device), mask.sum(1).tolist()

    # --- the node kinds' Host (quantization.nodes.base.Host) ----------------------------
    def fast(self, n) -> bool:
        return isinstance(n, SpikingLayer) and self._fast_lif(n)

    def synapse(self, n, x: torch.Tensor, keep_float: bool) -> torch.Tensor:
        """``W·x`` in the node's exact dtype, through this emulator's ``delay``."""
        dtype = self._dtype(n)
        x = self._exact.get(n.inputs[0], x)  # the same integers, already as floats
        w = self._float_weight(n.name, "w", dtype)
        return self._delayed(n.name, self._kinds[self._index[n.name]].synapse(
            n, w, x, dtype, keep_float))  # fmt: skip

    def recurrent(self, n, s_prev: torch.Tensor, keep_float: bool) -> torch.Tensor:
        dtype = self._dtype(n)
        return int_linear(s_prev, self._float_weight(n.name, "w_rec", dtype), dtype, keep_float)

    def bias_of(self, n, like: torch.Tensor) -> torch.Tensor:
        return self._bias(n.name, like)

    def synaptic_delay(self) -> int:
        return self.delay

    def a_bound(self, n) -> int:
        return self._a_bound(n)

    def psi_table(self, n) -> torch.Tensor:
        if n.name not in self._psi:
            self._psi[n.name] = n.psi.table.to(self.device)
        return self._psi[n.name]

    def count(self, label: str, values: torch.Tensor, limit: int | None) -> None:
        if limit is None:
            self.counts.count_none(label, values)
        else:
            self.counts.count(label, values, limit)

    def count_range(self, label: str, raw: torch.Tensor, lo: int, hi: int) -> None:
        self.counter.add(label, int(((raw > hi) | (raw < lo)).sum()), raw.numel())

    # --- helpers for the host ------------------------------------------------------------
    def _needs_int_input(self) -> bool:
        """Whether a node reads the network input as integers (not only through synapses)."""
        if self._int_input is None:
            self._int_input = any(
                "input" in n.inputs and not (kind.has_weights and n.learning is None)
                for n, kind in zip(self.qnet.nodes, self._kinds, strict=True)
            )
        return self._int_input

    def _format_bound(self) -> int:
        fmt = self.qnet.input_format
        return max(abs(fmt.lo), abs(fmt.hi))

    def _forget_bounds(self, name: str) -> None:
        """Drop what was derived from node ``name``'s weights (they changed)."""
        self._row_sums = {k: v for k, v in self._row_sums.items() if k[0] != name}
        for cache in (self._a_bounds, self._dtypes, self._fast):
            for k in [k for k in cache if k[1] == name]:
                del cache[k]

    def _row_sum(self, name: str, key: str) -> int:
        """``max_i Σ_j |w_ij|`` of a weight (conv: per output channel; see max_abs_fan_in)."""
        if (name, key) not in self._row_sums:
            w = getattr(self._weights[name], key)
            geometry = getattr(self.qnet.nodes[self._index[name]], "kind", "dense")
            self._row_sums[name, key] = max_abs_fan_in(w, geometry if key == "w" else "dense")
        return self._row_sums[name, key]

    def _a_bound(self, n) -> int:
        """Largest |synaptic sum| of node ``n``, and of any partial sum of its products:
        input bound · max row Σ|w| (+ max row Σ|w_rec|, its input being spikes)."""
        k = (self._in_bound, n.name)
        if k not in self._a_bounds:
            bound = self._bound[self._in_bound, n.inputs[0]] * self._row_sum(n.name, "w")
            if self._weights[n.name].w_rec is not None:
                bound += self._row_sum(n.name, "w_rec")
            self._a_bounds[k] = bound
        return self._a_bounds[k]

    def _dtype(self, n) -> torch.dtype:
        """float32 where every partial sum of this node's products stays below 2^24."""
        k = (self._in_bound, n.name)
        if k not in self._dtypes:
            self._dtypes[k] = exact_float_dtype(self._a_bound(n))
        return self._dtypes[k]

    def _fast_lif(self, n) -> bool:
        """Whether spiking node ``n`` runs its LIF on exact float32 (the preconditions of
        :func:`~quantization.loihi.lif_int_step`'s float path; plastic nodes stay int64)."""
        k = (self._in_bound, n.name)
        if k not in self._fast:
            bias = self._weights[n.name].bias
            self._fast[k] = (
                n.learning is None
                and n.du == DU_NONE
                and (self._a_bound(n) << ACT_SHIFT) < UV_LIMIT
                and (bias is None or bias.numel() == 0 or int(bias.abs().max()) < 2 * UV_LIMIT)
                and abs(n.vth << VTH_SHIFT) < UV_LIMIT
                and 0 <= n.dv <= DECAY_UNITY
            )
        return self._fast[k]

    def _float_weight(self, name: str, key: str, dtype: torch.dtype) -> torch.Tensor:
        """The integer weights as ``dtype`` (cached until on-device learning changes them)."""
        k = (name, key, dtype)
        if k not in self._wfloat:
            self._wfloat[k] = getattr(self._weights[name], key).to(dtype)
        return self._wfloat[k]

    def _bias(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Node ``name``'s bias in ``like``'s dtype, broadcastable over it (0 if none)."""
        k = (name, "bias", like.dtype, like.dim())
        if k not in self._wfloat:
            bias = self._weights[name].bias
            if bias is None:
                bias = torch.zeros((), dtype=torch.int64, device=like.device)
            self._wfloat[k] = _channel(bias, like).to(like.dtype)
        return self._wfloat[k]

    def saturation(self) -> dict:
        """Per quantity: values that saturated or wrapped, out of how many (since creation)."""
        return self.counts.flush()

    def _delayed(self, name: str, a: torch.Tensor) -> torch.Tensor:
        if self.delay == 0:
            return a
        prev = self._delay_buf.get(name)
        self._delay_buf[name] = a
        if prev is None:
            return torch.zeros_like(a)
        return prev if prev.dtype == a.dtype else prev.to(a.dtype)


def _channel(bias: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel bias over ``[B, C, H, W]`` (dense ``[B, C]`` as is)."""
    if bias.dim() == 1 and like.dim() == 4:
        return bias.view(1, -1, 1, 1)
    return bias


def evaluate(
    qnet: QNetwork, batches, device="cpu", delay: int = 0, progress=None
) -> tuple[float, SaturationCounter]:
    """Accuracy of the integer network over ``(frames [T, B, ...], labels [B], lengths
    [B])`` batches (:func:`stllr.trainer.batches`): each sample scored over its own steps."""
    emu = IntegerEmulator(qnet, delay=delay, device=device)
    correct = total = 0
    for x, y, lengths in batches:
        res = emu.run(x, lengths=lengths)
        correct += int((res.predictions() == y).sum())
        total += int(y.numel())
        if progress is not None:
            progress(1)
    emu.saturation()  # flush the device-side counts into emu.counter
    return correct / max(total, 1), emu.counter
