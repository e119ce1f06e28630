"""Recurrent dense layers of current-based/adaptive neurons, trained by S-TLLR or BPTT.

Both compute, per step, ``c[t] = Ŵx[t] + b + Ŵ_rec s[t−1]`` (scaled weight
standardisation with trainable gains, docs/rule.md §1) and advance a
:class:`~stllr.neurons.population.NeuronPopulation` by one step
(:mod:`stllr.neurons.dynamics`). Called once per step with ``x[t]`` ``[B, in]``;
returns ``s[t]`` ``[B, out]``; ``reset_state()`` starts a new sequence.

* :class:`RecurrentNeuronSTLLR`: the step runs without a graph; the spikes carry the
  S-TLLR gradient of :mod:`stllr.neurons.eligibility` (no gradient through time) for the
  weights and, for the learnable kinds, of :mod:`stllr.neurons.parameter_traces` for
  the neurons' decays, a and b.
* :class:`RecurrentNeuronBPTT`: the states stay in the graph, the spike's derivative is
  Ψ (:class:`stllr.layers.bptt.SpikeFn`), the reset uses the detached spike; the
  decays, a and b of the learnable kinds are trained with the weights.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stllr.factors import STLLRFactors, trace_step
from stllr.functional.stllr_step import needs_graph
from stllr.layers.bptt import ScaledWSLinear, SpikeFn
from stllr.neurons.eligibility import (
    EligibilityGrad,
    PreTrace,
    pre_trace_step,
    zero_pre_trace,
)
from stllr.neurons.parameter_traces import (
    ParameterTraces,
    parameter_trace_step,
    zero_parameter_traces,
)
from stllr.neurons.population import NeuronPopulation, NeuronSpec, decay_from_tau
from stllr.surrogates import canonical_name, get_surrogate
from stllr.validation import check_float_tensor, check_shape
from stllr.weight_standardization import StandardizedWeightCache, standardize_weight


class NeuronLayerState(NamedTuple):
    """Per-sequence state of :class:`RecurrentNeuronSTLLR` (all detached)."""

    neuron: Any  # the population's state NamedTuple, fields [B, out]
    p: PreTrace  # trace of the input x, [B, in]
    r: PreTrace  # trace of the recurrent input s[t−1], [B, out]
    q: torch.Tensor  # post trace Q[t], [B, out]
    s: torch.Tensor  # spikes s[t], the next recurrent input, [B, out]
    kappa: ParameterTraces | None  # the neuron parameters' traces (learnable kinds)


class RecurrentNeuronSTLLR(nn.Module):
    """Recurrent dense S-TLLR layer of ``spec.kind`` neurons, ``[B, in] → [B, out]``.

    ``weight_std=False`` multiplies by the raw weights. ``lambda_syn`` is the decay of
    the current's pre-trace (current-based kinds); default the neuron's initial current
    decay ``e^{−1/τ_syn}``. λ_pre, λ_post and the
    α's come from ``factors`` (docs/neurons.md §3).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        spec: NeuronSpec,
        factors: STLLRFactors | None = None,
        psi: str = "e",
        bias: bool = True,
        lambda_syn: float | None = None,
        weight_std: bool = True,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.factors = factors or STLLRFactors()
        self.psi_name = canonical_name(psi)
        self.lambda_syn = decay_from_tau(spec.tau_syn) if lambda_syn is None else lambda_syn
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_std = weight_std
        self.gain = nn.Parameter(torch.ones(out_features, 1)) if weight_std else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_rec = nn.Parameter(torch.empty(out_features, out_features))
        self.gain_rec = nn.Parameter(torch.ones(out_features, 1)) if weight_std else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.weight_rec, a=math.sqrt(5))
        self.neurons = NeuronPopulation(out_features, spec)
        self.state: NeuronLayerState | None = None
        self._ws = StandardizedWeightCache(keep_graph=False)

    def reset_state(self) -> None:
        self.state = None
        self._ws.clear()
        self.neurons.reset_state()

    def _weight_pairs(self) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
        """``(W, g)`` of the two weights, in the order of :meth:`effective_weights` (the
        S-TLLR layers' interface: the pipeline's float learner makes Ŵ the raw weight)."""
        return ((self.weight, self.gain), (self.weight_rec, self.gain_rec))

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ŵ, Ŵ_rec), cached while the parameters are unchanged (the raw weights when
        ``weight_std`` is off)."""
        if not self.weight_std:
            return self.weight, self.weight_rec
        return self._ws.get_group(((self.weight, self.gain), (self.weight_rec, self.gain_rec)))

    def standardized_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ŵ, Ŵ_rec) recomputed, outside any cache."""
        if not self.weight_std:
            return self.weight, self.weight_rec
        return standardize_weight(self.weight, self.gain), standardize_weight(
            self.weight_rec, self.gain_rec
        )

    def _zero_state(self, x: torch.Tensor) -> NeuronLayerState:
        cb = self.neurons.spec.current_based
        out = x.new_zeros(x.shape[0], self.out_features)
        kappa = None
        if self.neurons.learnable():
            kappa = zero_parameter_traces(self.neurons.params(), out)
        return NeuronLayerState(
            self.neurons.zero_state(out),
            zero_pre_trace(x, cb),
            zero_pre_trace(out, cb),
            out,
            out,
            kappa,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor("x", x)
        check_shape("x", x, [None, self.in_features], "[B, in_features]")
        if self.state is None or self.state.q.shape[0] != x.shape[0]:
            self.state = self._zero_state(x)
        st = self.state
        w, w_rec = self.effective_weights()
        f = self.factors
        graph_params = self.neurons.params()  # in the graph of the logits when learnable
        params = type(graph_params)(*(_detached(v) for v in graph_params))
        with torch.no_grad():
            c = F.linear(x, w, self.bias) + F.linear(st.s, w_rec)
            s, centred, neuron = self.neurons.step(c, st.neuron, params)
            psi = get_surrogate(self.psi_name)(centred)
            p = pre_trace_step(st.p, x, f.lambda_pre, self.lambda_syn)
            r = pre_trace_step(st.r, st.s, f.lambda_pre, self.lambda_syn)
            q = trace_step(st.q, psi, f.lambda_post)
            kappa = None
            if st.kappa is not None:
                kappa = parameter_trace_step(st.kappa, st.neuron, c, params)
        out = s
        learned = [] if kappa is None else list(kappa.kappa)
        trainable = [getattr(graph_params, n) for n in learned]
        if needs_graph(x, w, w_rec, self.bias, *trainable):
            traces = tuple(kappa.kappa[n] for n in learned)
            gain = 1.0 - params.alpha
            out = EligibilityGrad.apply(
                s, x, st.s, w, w_rec, self.bias, psi, gain, st.q, p.p, r.p, f, traces, *trainable
            )
        self.state = NeuronLayerState(neuron, p, r, q, s, kappa)
        return out

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, factors={self.factors.as_list()}, "
            f"lambda_syn={self.lambda_syn:.4f}, psi={self.psi_name}"
        )


def _detached(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


class RecurrentNeuronBPTT(nn.Module):
    """Recurrent dense layer of ``spec.kind`` neurons differentiated through time.

    ``ff`` (``ScaledWSLinear`` in→out, bias) and ``rec`` (out→out, no bias) give the
    input ``c[t]``; the population's states stay in the graph.
    """

    def __init__(self, in_features: int, out_features: int, spec: NeuronSpec, psi: str = "e"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.ff = ScaledWSLinear(in_features, out_features)
        self.rec = ScaledWSLinear(out_features, out_features, bias=False)
        self.neurons = NeuronPopulation(out_features, spec)
        self.psi_name = canonical_name(psi)
        self.state = None
        self._prev: torch.Tensor | None = None

    def reset_state(self) -> None:
        self.state = None
        self._prev = None
        for m in (self.ff, self.rec, self.neurons):
            m.reset_state()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.ff(x)
        if self._prev is not None:
            c = c + self.rec(self._prev)
        if self.state is None or self.state.v.shape != c.shape:
            self.state = self.neurons.zero_state(c.detach())
        psi = get_surrogate(self.psi_name)
        s, _, self.state = self.neurons.step(c, self.state, spike=lambda z: SpikeFn.apply(z, psi))
        self._prev = s
        return s
