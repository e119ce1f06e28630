"""S-TLLR layers: thin stateful wrappers around :mod:`stllr.functional.stllr_step`.

Each layer is called once per time step with ``x[t]`` (``[B, in]`` or
``[B, C, H, W]``) and returns the spikes ``s[t]``. Its state (ũ, P, Q and, for
the recurrent layer, s[t−1] and R) is stored detached; ``reset_state()`` (or a
change of batch size) starts a new sequence from zeros.

Ŵ = scaled weight standardisation of ``weight`` with the trainable ``gain``
(:mod:`stllr.weight_standardization`), recomputed in the graph at every step.
Leak and threshold are constants (``LIFParams``), never trained.

``weight_quantizer`` (default None) is an optional hook
(:data:`~stllr.weight_standardization.WeightQuantizer`) applied to the effective
weights where they are produced: the step multiplies by ``quantizer((Ŵ,))[0]``, and
the recurrent layer by ``quantizer((Ŵ, Ŵ_rec))``, both tensors in one call so that
they can share one scale. ``effective_weights()`` returns exactly what the step
multiplies by; ``standardized_weight(s)()`` return the float Ŵ before the hook.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from stllr.conv_events import sparse_input
from stllr.factors import STLLRFactors
from stllr.functional.stllr_step import (
    EventOperands,
    STLLRRecurrentStep,
    STLLRSpec,
    STLLRStep,
    feature_map_step_,
    needs_graph,
    recurrent_step_,
    step_constants,
)
from stllr.neuron import LIFParams
from stllr.sample_skip import skips_samples
from stllr.spike_events import EventInputSwitch
from stllr.surrogates import canonical_name, get_surrogate
from stllr.synapse_ops import Conv2dOps, ConvTranspose2dOps, DenseOps
from stllr.validation import check_float_tensor, check_shape
from stllr.weight_standardization import (
    StandardizedWeightCache,
    WeightQuantizer,
    apply_weight_quantizer,
    standardize_weight,
)


class STLLRState(NamedTuple):
    """Per-sequence state of a feed-forward S-TLLR layer (all detached)."""

    u: torch.Tensor  # membrane after reset ũ[t], [B, *out]
    p: torch.Tensor  # pre-trace P[t], [B, *in]
    q: torch.Tensor  # post-trace Q[t], [B, *out]


class STLLRRecurrentState(NamedTuple):
    """Per-sequence state of a recurrent S-TLLR layer (all detached)."""

    u: torch.Tensor  # [B, out]
    p: torch.Tensor  # [B, in]
    r: torch.Tensor  # recurrent pre-trace for the next step, [B, out]
    q: torch.Tensor  # [B, out]
    s: torch.Tensor  # last spikes s[t], the next recurrent input, [B, out]


class _STLLRBase(nn.Module):
    """Shared configuration of S-TLLR layers."""

    def __init__(self, lif: LIFParams, factors: STLLRFactors, psi: str, weight_std: bool):
        super().__init__()
        self.lif = lif
        self.factors = factors
        self.psi_name = canonical_name(psi)
        self.weight_std = weight_std
        self.state = None
        #: optional hook on the effective weights (see the module docstring)
        self.weight_quantizer: WeightQuantizer | None = None
        self._ws = StandardizedWeightCache(keep_graph=False)

    def reset_state(self) -> None:
        """Forget the sequence: the next call starts from zero state."""
        self.state = None
        self._ws.clear()

    def _weight_pairs(self) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """``(W, g)`` of every weight the layer multiplies by, in the hook's order."""
        return ((self.weight, self.gain),)

    def standardized_weight(self) -> torch.Tensor:
        """Ŵ (or the raw weight when weight standardisation is off), before the quantizer."""
        if not self.weight_std:
            return self.weight
        return standardize_weight(self.weight, self.gain)

    def effective_weights(self) -> tuple[torch.Tensor, ...]:
        """What the step multiplies by: ``weight_quantizer((Ŵ, ...))``, or ``(Ŵ, ...)``.

        Cached while the parameters are unchanged (see ``StandardizedWeightCache``).
        """
        pairs = self._weight_pairs()
        if self.weight_std:
            return self._ws.get_group(pairs, self.weight_quantizer)
        return apply_weight_quantizer(self.weight_quantizer, tuple(w for w, _ in pairs))

    def _init_dense(self, in_features: int, out_features: int, bias: bool) -> None:
        """Ŵ's weight ``[out, in]`` (kaiming-uniform), its gain ``[out, 1]`` and the bias."""
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.gain = nn.Parameter(torch.ones(out_features, 1)) if self.weight_std else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._ops = DenseOps()

    def _check_dense_input(self, x: torch.Tensor) -> None:
        check_float_tensor("x", x)
        check_shape("x", x, [None, self.in_features], "[B, in_features]")

    def _spec(self, ops, skip_zeros: bool = False) -> STLLRSpec:
        return STLLRSpec(ops, self.lif, self.factors, get_surrogate(self.psi_name), skip_zeros)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.lif.gamma:.4f}, theta={self.lif.threshold}, reset={self.lif.reset}, "
            f"factors={self.factors.as_list()}, psi={self.psi_name}, weight_std={self.weight_std}"
        )


class LinearSTLLR(EventInputSwitch, _STLLRBase):
    """Dense S-TLLR LIF layer, ``[B, in] → [B, out]`` spikes; ``event_inputs`` as
    :class:`RecurrentLinearSTLLR`'s (for x)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        lif: LIFParams | None = None,
        factors: STLLRFactors | None = None,
        psi: str = "a",
        weight_std: bool = True,
    ):
        super().__init__(lif or LIFParams(), factors or STLLRFactors(), psi, weight_std)
        self._init_dense(in_features, out_features, bias)
        self._init_event_inputs(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_dense_input(x)
        if self.state is None or self.state.u.shape[0] != x.shape[0]:
            self.state = _zeros_state(x, (self.out_features,))
        (w,) = self.effective_weights()
        st = self.state
        x_ev = self._events(x)
        ev = None if x_ev is None else EventOperands(x_ev, None, self._transposes[0].get(w))
        spec = self._spec(self._ops)
        s, u, p, q = STLLRStep.apply(x, w, self.bias, st.u, st.p, st.q, spec, ev)
        self.state = STLLRState(u, p, q)
        return s


class _FeatureMapSTLLR(EventInputSwitch, _STLLRBase):
    """The step of the S-TLLR layers on feature maps ``[B, C_in, H, W]``: the subclass
    gives ``_ops`` (its synapse), ``in_channels``, ``out_channels`` and ``output_shape``
    and calls ``_init_event_inputs(0)``.

    ``event_inputs`` (default ``"dense"``): with ``"sparse"``, or ``"auto"`` on the CPU,
    the step's products skip the samples whose input (and, for the causal half of the
    weight gradient, whose pre-trace) is all zero (:mod:`stllr.sample_skip`), take very
    sparse inputs and pre-traces as events (:mod:`stllr.conv_events`) and run the
    backward products of a δ on the even lattice with the stride doubled
    (:mod:`stllr.conv_backward`); the results are the dense step's up to float rounding.

    A step that needs no graph runs :func:`~stllr.functional.stllr_step.feature_map_step_`
    (bitwise equal to the Function) and updates ũ, P, Q **in place**, as the recurrent
    layer does (state tensors from a step with a graph, or from outside, are copied first).
    """

    _own_state: STLLRState | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self._own_state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x)
        check_shape("x", x, [None, self.in_channels, None, None], "[B, C_in, H, W]")
        if self.state is None or self.state.p.shape != x.shape:
            out = (self.out_channels, *self.output_shape(*x.shape[2:]))
            self.state = self._own_state = _zeros_state(x, out)
        (w,) = self.effective_weights()
        st = self.state
        rows = None
        skip = skips_samples(self._event_inputs, x)
        if skip:
            rows = sparse_input(x, self._ops, tuple(self.weight.shape[2:]))
        spec = self._spec(self._ops, skip)
        if not needs_graph(x, w, self.bias):
            if st is not self._own_state:
                st = STLLRState(st.u.clone(), st.p.clone(), st.q.clone())
            s = feature_map_step_(x, w, self.bias, st.u, st.p, st.q, spec, None, rows)
            self.state = self._own_state = st
            return s
        s, u, p, q = STLLRStep.apply(x, w, self.bias, st.u, st.p, st.q, spec, rows)
        self.state = STLLRState(u, p, q)
        return s


class Conv2dSTLLR(_FeatureMapSTLLR):
    """Convolutional S-TLLR LIF layer, ``[B, C_in, H, W] → [B, C_out, H', W']`` spikes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        lif: LIFParams | None = None,
        factors: STLLRFactors | None = None,
        psi: str = "b",
        weight_std: bool = True,
    ):
        super().__init__(lif or LIFParams(), factors or STLLRFactors(), psi, weight_std)
        self.in_channels = in_channels
        self.out_channels = out_channels
        k = _pair(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *k))
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1)) if weight_std else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._ops = Conv2dOps(_pair(stride), _pair(padding), _pair(dilation), groups)
        self._init_event_inputs(0)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an ``height × width`` input."""
        o = self._ops
        kh, kw = self.weight.shape[2:]
        h = (height + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) // o.stride[0] + 1
        w = (width + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) // o.stride[1] + 1
        return h, w


class ConvTranspose2dSTLLR(_FeatureMapSTLLR):
    """Transposed-convolution S-TLLR LIF layer (the FSFN decoder's up-sampling),
    ``[B, C_in, H, W] → [B, C_out, (H−1)·s − 2p + k + op, …]`` spikes.

    Ŵ is ``[C_out, C_in, k, k]`` (output channel first, standardised per output channel;
    :class:`~stllr.synapse_ops.ConvTranspose2dOps`); otherwise the step, traces and
    gradient are those of every S-TLLR layer (:mod:`stllr.functional.stllr_step`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 4,
        stride: int | tuple[int, int] = 2,
        padding: int | tuple[int, int] = 1,
        output_padding: int | tuple[int, int] = 0,
        bias: bool = True,
        lif: LIFParams | None = None,
        factors: STLLRFactors | None = None,
        psi: str = "b",
        weight_std: bool = True,
    ):
        super().__init__(lif or LIFParams(), factors or STLLRFactors(), psi, weight_std)
        self.in_channels = in_channels
        self.out_channels = out_channels
        k = _pair(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *k))
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1)) if weight_std else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._ops = ConvTranspose2dOps(_pair(stride), _pair(padding), _pair(output_padding))
        self._init_event_inputs(0)

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an ``height × width`` input."""
        o = self._ops
        kh, kw = self.weight.shape[2:]
        h = (height - 1) * o.stride[0] - 2 * o.padding[0] + kh + o.output_padding[0]
        w = (width - 1) * o.stride[1] - 2 * o.padding[1] + kw + o.output_padding[1]
        return h, w


class RecurrentLinearSTLLR(EventInputSwitch, _STLLRBase):
    """Recurrent dense S-TLLR LIF layer: ``I[t] = Ŵx[t] + b + Ŵ_rec s[t−1]``.

    ``weight_rec`` has its own gain ``gain_rec`` and no bias.

    A step that needs no graph (gradients disabled, as outside the learning window
    and in evaluation, or nothing requiring grad) runs without the autograd Function
    (:func:`~stllr.functional.stllr_step.recurrent_step_`, bitwise equal) and
    updates the state tensors ũ, P, R, Q **in place** (``self.state`` is replaced,
    its tensors are reused; copy them to keep a snapshot). State tensors that came
    from a step with a graph (possibly saved for its backward) or from outside are
    copied first, never overwritten.

    ``event_inputs`` (:data:`~stllr.spike_events.EVENT_INPUT_MODES`, default ``"dense"``)
    switches the products with x[t] and s[t−1] to the event-driven path
    (:mod:`stllr.spike_events`, docs/event_driven.md): ``"sparse"`` always, ``"auto"``
    for each operand whose density at this step is at most
    :data:`~stllr.spike_events.SPARSE_MAX_DENSITY`. The results are the dense path's up
    to float rounding.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        lif: LIFParams | None = None,
        factors: STLLRFactors | None = None,
        psi: str = "a",
        weight_std: bool = True,
    ):
        super().__init__(lif or LIFParams(), factors or STLLRFactors(), psi, weight_std)
        self._init_dense(in_features, out_features, bias)
        self.weight_rec = nn.Parameter(torch.empty(out_features, out_features))
        self.gain_rec = nn.Parameter(torch.ones(out_features, 1)) if weight_std else None
        nn.init.kaiming_uniform_(self.weight_rec, a=math.sqrt(5))
        # the state whose tensors no-graph steps may overwrite (they created them)
        self._own_state: STLLRRecurrentState | None = None
        self._init_event_inputs(2)

    def reset_state(self) -> None:
        super().reset_state()
        self._own_state = None

    def _event_operands(self, x, s_prev, w, w_rec) -> EventOperands | None:
        """The inputs the switch sends down the event-driven path (None: all dense)."""
        if self._event_inputs == "dense":
            return None
        x_ev = self._events(x)
        s_ev = self._events(s_prev, binary=True)
        if x_ev is None and s_ev is None:
            return None
        w_t, w_rec_t = self._transposes
        return EventOperands(
            x_ev,
            s_ev,
            None if x_ev is None else w_t.get(w),
            None if s_ev is None else w_rec_t.get(w_rec),
        )

    def _weight_pairs(self) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        return ((self.weight, self.gain), (self.weight_rec, self.gain_rec))

    def standardized_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ŵ, Ŵ_rec), before the quantizer."""
        if not self.weight_std:
            return self.weight, self.weight_rec
        return self.standardized_weight(), standardize_weight(self.weight_rec, self.gain_rec)

    def _current_state(self, x: torch.Tensor) -> STLLRRecurrentState:
        """The state to continue from with input ``x`` (zeros at a new sequence)."""
        if self.state is None or self.state.u.shape[0] != x.shape[0]:
            z = _zeros_state(x, (self.out_features,))
            self.state = STLLRRecurrentState(z.u, z.p, z.q.clone(), z.q, z.u.clone())
            self._own_state = self.state
        return self.state

    def _owned_state(self, x: torch.Tensor) -> STLLRRecurrentState:
        """The current state with tensors that no-graph steps may overwrite (copies of
        tensors that came from a step with a graph or from outside)."""
        st = self._current_state(x)
        if st is not self._own_state:
            st = STLLRRecurrentState(st.u.clone(), st.p.clone(), st.r.clone(), st.q.clone(), st.s)
        return st

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_dense_input(x)
        st = self._current_state(x)
        w, w_rec = self.effective_weights()
        spec = self._spec(self._ops)
        ev = self._event_operands(x, st.s, w, w_rec)
        if not needs_graph(x, w, w_rec, self.bias):
            st = self._owned_state(x)
            s = recurrent_step_(
                x, st.s, w, w_rec, self.bias, st.u, st.p, st.r, st.q, spec, None, ev
            )
            self.state = self._own_state = st._replace(s=s)
            return s
        s, u, p, r, q = STLLRRecurrentStep.apply(
            x, st.s, w, w_rec, self.bias, st.u, st.p, st.r, st.q, spec, ev
        )
        self.state = STLLRRecurrentState(u, p, r, q, s.detach())
        return s

    def no_graph_run(self, x: torch.Tensor) -> RecurrentNoGraphRun:
        """Steps without autograd for inputs like ``x`` ``[B, in]`` (checked here, once):
        see :class:`RecurrentNoGraphRun`."""
        self._check_dense_input(x)
        return RecurrentNoGraphRun(self, x)


class RecurrentNoGraphRun:
    """Consecutive steps of a :class:`RecurrentLinearSTLLR` that need no graph.

    ``step(x_t)`` gives what ``layer(x_t)`` gives under ``no_grad`` (the same
    operations, :func:`~stllr.functional.stllr_step.recurrent_step_`), with what is
    constant over the steps prepared once: Ŵ, Ŵ_rec (``effective_weights()``, read when
    the run starts: the weights must not change during it), the constants as tensors
    (:func:`~stllr.functional.stllr_step.step_constants`) and the state tensors,
    updated in place. ``close()`` stores the state in the layer; nothing else may use
    the layer in between. Inputs must have the shape checked at the start.
    """

    __slots__ = ("layer", "weights", "spec", "k", "state", "s")

    def __init__(self, layer: RecurrentLinearSTLLR, x: torch.Tensor):
        self.layer = layer
        self.state = layer._owned_state(x)
        self.s = self.state.s
        with torch.no_grad():
            w, w_rec = layer.effective_weights()
        self.weights = (w, w_rec, layer.bias)
        self.spec = layer._spec(layer._ops)
        self.k = step_constants(self.spec, like=self.state.u)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One step, ``x`` ``[B, in]``; returns the spikes s[t] (a new tensor)."""
        st = self.state
        w, w_rec, b = self.weights
        ev = self.layer._event_operands(x, self.s, w, w_rec)
        self.s = recurrent_step_(
            x, self.s, w, w_rec, b, st.u, st.p, st.r, st.q, self.spec, self.k, ev
        )
        return self.s

    def close(self) -> None:
        """Store the state reached in the layer."""
        self.layer.state = self.layer._own_state = self.state._replace(s=self.s)


def _zeros_state(x: torch.Tensor, out_shape: tuple[int, ...]) -> STLLRState:
    """Zero ũ and Q of shape ``[B, *out_shape]`` and zero P shaped like ``x``."""
    batch = x.shape[0]
    u = x.new_zeros((batch, *out_shape))
    return STLLRState(u=u, p=torch.zeros_like(x), q=torch.zeros_like(u))
