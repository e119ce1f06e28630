"""The float learner of a first-spike network's adaptation: S-TLLR in float on ``fs_fc``,
``fs_gesture`` and ``fs_plane``.

The float first-spike networks (:mod:`stllr.models.spiking_output`) are trained by
BPTT and have no S-TLLR layers, so their adaptation twin runs the rule the device runs
(docs/rule.md §5, docs/neurons.md §3: the eligibility of :mod:`stllr.neurons.eligibility`)
on its plain ``Linear`` weights ``W`` ``[N, in]``, one SGD step per step of the window,
with the third factor of the device's host path (:func:`pipeline.adapt_mechanisms.
fs_step_error`: the first-spike teaching signal of the float network's own output spikes).
Per plastic layer (input ``x[t]`` ``[1, in]``, spikes and membrane ``v[t]`` before reset)::

    P[t]   = λ_pre·P[t−1] + P^i[t−1],   P^i[t] = λ_syn·P^i[t−1] + x[t]    (CuLIF)
    P[t]   = λ_pre·P[t−1] + x[t]                                       (LIF, AdLIF)
    g      = κ·Ψ(v[t] − θ)·δ[t],        κ = 1 − α (CuLIF; AdLIF: per neuron), 1 (LIF)
    W     ← W − η·(α_pre·gᵀP[t] + α_post·(δ[t]⊙Q[t−1])ᵀx[t])
    Q[t]   = λ_post·Q[t−1] + Ψ(v[t] − θ)

with the factors the converter gives the integer layers (``quantization.convert.
DEFAULT_FACTORS``, ``λ_syn = β``). ``δ`` of the output layer is the teaching signal; of the
layer feeding it, ``δ·(κ_out·W_out)``, the device's ``δ·W_node`` in float. Other layers do
not learn here (the host path reaches only the output and its input).

The layer feeding ``out`` is ``fc{n−1}`` of ``fs_fc`` and ``fc`` of the convolutional nets
(:class:`~stllr.models.spiking_output.FSConvNet`), whose recurrent weights ``W_rec``
(``self.rec``) learn with it (docs/neurons.md §3b): its input is the pooled, flattened
spikes ``x[t]`` and the layer's own spikes ``s[t−1]`` (zeros at t = 0), whose traces ``R``
follow the recursion of ``P``. Both traces are linear per input, so the layer learns as
one ``[W | W_rec]`` ``[N, in + N]`` on the input ``[x[t], s[t−1]]``.
An AdLIF hidden layer learns by the "direct (AdLIF)" rule of docs/neurons.md §3b: the LIF's
direct pre-trace, ``κ_i = 1 − α_i`` per neuron; its adaptation does not enter the rule.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch

from stllr.errors import UserError


class _Plastic(NamedTuple):
    name: str
    weights: tuple[torch.Tensor, ...]  # W [N, in] (and W_rec [N, N]): one input block each
    neurons: torch.nn.Module
    kappa: float | torch.Tensor  # per neuron [N] for AdLIF
    lambda_syn: float | None
    threshold: float


def _neuron_constants(neurons) -> tuple[float | torch.Tensor, float | None, float]:
    """``(κ, λ_syn, θ)`` of a neuron module of :mod:`stllr.models.neuron_kinds` (AdLIF:
    ``κ`` ``[N]`` per neuron, no current trace)."""
    from stllr.models.neuron_kinds import LIFNeurons

    if isinstance(neurons, LIFNeurons):
        return 1.0, None, max(neurons.lif.threshold, 0.5)
    p = neurons.pop.params()
    if neurons.pop.spec.kind == "adlif":
        kappa = (1.0 - p.alpha.detach()).reshape(-1)
        return kappa, None, float(neurons.pop.spec.threshold)
    return 1.0 - float(p.alpha), float(p.beta), float(neurons.pop.spec.threshold)


class FloatFSLearner:
    """Float S-TLLR on the plastic layers (the output ``out`` and the layer feeding it) of a
    copied first-spike model (``fs_fc``, ``fs_gesture``, ``fs_plane``)."""

    def __init__(self, model, layers, lr: float, window: int, teacher, device=None):
        from quantization.convert import DEFAULT_FACTORS
        from stllr.surrogates import get_surrogate

        self.model = copy.deepcopy(model).eval()
        if device is not None:
            self.model.to(device)
        self.device = next(self.model.parameters()).device
        from stllr.models.spiking_output import FSConvNet

        m = self.model
        self.conv = isinstance(m, FSConvNet)
        if self.conv:  # fc: [W | W_rec] on [x[t], s[t−1]] (module doc)
            feeding = "fc"
            modules = {"fc": ((m.fc.weight, m.rec.weight), m.neurons[-1])}
        else:
            feeding = f"fc{len(m.fc) - 1}"
            modules = {f"fc{i}": ((m.fc[i].weight,), m.neurons[i]) for i in range(len(m.fc))}
        modules["out"] = ((m.out.weight,), m.out_neuron)
        if not layers or layers[-1] != "out" or any(n not in (feeding, "out") for n in layers):
            raise UserError(
                f"adaptation.layers: a first-spike network learns 'out' and optionally "
                f"{feeding!r} (the layer feeding it), got {list(layers)}"
            )
        self.plastic = [
            _Plastic(name, *modules[name], *_neuron_constants(modules[name][1])) for name in layers
        ]
        self.f = DEFAULT_FACTORS
        self.psi = {p.name: get_surrogate(p.neurons.psi_name) for p in self.plastic}
        self.lr, self.window, self.teacher = lr, window, teacher

    def _layer_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward step of the body; returns each layer's input ``[1, in]`` (``fc{i}``
        of fs_fc; ``fc`` of a conv net: ``[x[t], s[t−1]]``; ``out``: the body's spikes)."""
        m, inputs = self.model, {}
        if self.conv:
            seen = []
            hook = m.fc.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
            prev = m._prev
            try:
                h = m.body(x)
            finally:
                hook.remove()
            inputs["fc"] = torch.cat([seen[0], torch.zeros_like(h) if prev is None else prev], 1)
            inputs["out"] = h
            return inputs
        for i, (fc, neurons) in enumerate(zip(m.fc, m.neurons, strict=True)):
            inputs[f"fc{i}"] = x
            x = neurons(fc(x))
        inputs["out"] = x
        return inputs

    @staticmethod
    def _sub(p: _Plastic, update: torch.Tensor) -> None:
        """``W ← W − update`` for each input block of ``update`` ``[N, Σ in]``."""
        for w, u in zip(p.weights, update.split([w.shape[1] for w in p.weights], 1), strict=True):
            w.sub_(u)

    @torch.no_grad()
    def learn_sample(self, x, label: int, scale=1.0, gate=0.0, pseudo=0.0) -> None:
        """One sample ``[T, 1, ...]``: an S-TLLR step at every step of the window (module
        doc); ``scale``/``gate``/``pseudo`` as :func:`pipeline.adapt_mechanisms.fs_step_error`."""
        from pipeline.adapt_mechanisms import fs_step_error
        from stllr.factors import trace_step
        from stllr.functional.first_spike_teacher import teach_init, teach_step
        from stllr.functional.stllr_step import stacked_operands
        from stllr.neurons.eligibility import pre_trace_step, zero_pre_trace

        m, f = self.model, self.f
        x = x.to(self.device)
        steps = x.shape[0]
        start = max(steps - self.window, 0)
        m.reset_state()
        state = teach_init(1, m.num_classes)
        traces, q = {}, {}
        for t in range(steps):
            inputs = self._layer_inputs(x[t])
            s_out = m.out_neuron(m.out(inputs["out"]))
            psi = {}
            for p in self.plastic:
                xin = inputs[p.name]
                if p.name not in traces:
                    traces[p.name] = zero_pre_trace(xin, p.lambda_syn is not None)
                    q[p.name] = torch.zeros_like(p.neurons.membrane)
                traces[p.name] = pre_trace_step(traces[p.name], xin, f.lambda_pre, p.lambda_syn)
                psi[p.name] = self.psi[p.name](p.neurons.membrane - p.threshold)
            state = teach_step(state, s_out.cpu())
            err = None
            if t >= start:
                err = fs_step_error(state, self.teacher, label, gate, scale, pseudo)
            if err is not None:
                delta_out = err.to(self.device, m.out.weight.dtype)
                out = next(p for p in self.plastic if p.name == "out")
                w_out = out.kappa * m.out.weight  # read before this step's update
                for p in self.plastic:
                    d = delta_out if p.name == "out" else delta_out @ w_out
                    g = p.kappa * psi[p.name] * d
                    post, pre = stacked_operands(
                        f, g, d, q[p.name], traces[p.name].p, inputs[p.name]
                    )
                    self._sub(p, self.lr * post.t().mm(pre))
            for p in self.plastic:
                q[p.name] = trace_step(q[p.name], psi[p.name], f.lambda_post)
        m.reset_state()

    def plastic_copy(self) -> list[torch.Tensor]:
        """Copies of the plastic weights (W0 of :meth:`consolidate`)."""
        return [w.detach().clone() for p in self.plastic for w in p.weights]

    def consolidate(self, deployed, shift: int) -> None:
        """``W ← W − 2^−shift·(W − W0)`` for every plastic weight."""
        with torch.no_grad():
            weights = [w for p in self.plastic for w in p.weights]
            for w, w0 in zip(weights, deployed, strict=True):
                w.sub_((w - w0) * 2.0**-shift)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256):
        """FS predictions ``[N]`` (docs/first_spike.md) on frames ``[T, N, ...]``, each sample
        over its ``lengths`` steps."""
        from stllr.spike_metrics import fs_decision
        from stllr.spike_training import run_sequence

        self.model.eval()
        preds = []
        for s0 in range(0, x.shape[1], batch_size):
            s, v = run_sequence(self.model, x[:, s0 : s0 + batch_size].to(self.device))
            preds.append(fs_decision(s.cpu(), v.cpu(), lengths[s0 : s0 + batch_size]))
        self.model.reset_state()
        return torch.cat(preds)
