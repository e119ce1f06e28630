"""``floating_pt`` ProcessModels of :mod:`lava_models.processes.process` (one per Process).

The float network of :func:`quantization.convert.to_float_graph` (Ŵ after weight
standardisation, LIF γ/θ_eff/reset, Ψ, S-TLLR factors) run in float64. Each model is
glue around the functions the torch model runs (each formula written once, reused):
``stllr.neuron.lif_step``, ``stllr.factors.trace_step``, the surrogates of
``stllr.surrogates``, stllr's synapse operators and fast S-TLLR weight gradient and
``AccumulateStep`` for the readout (through :mod:`lava_models.float_ops`). Nothing is
rounded or saturated; the ports carry float64.

Per Lava time step ``t``, with ``x`` received on ``s_in`` (one sample, no batch axis;
a batch axis of 1 is added for the torch calls)::

    STLLRLayer      I = Ŵ x + b (+ Ŵ_rec s[t−1]);  s, v, ũ = lif_step(I, ũ[t−1]);  send s
                    (current-based: s, v − θ, (i, v̂) = culif_step(I, (i, v̂)[t−1]), and
                    the pre-traces P, R run through the current traces P^i, R^i with
                    Ψ scaled by κ = 1 − α in the α_pre term: stllr.neurons.eligibility)
                    plastic:  P = trace_step(P, x, λ_pre);  Ψ = psi(v);
                              Q' = trace_step(Q, Ψ, λ_post);  R = trace_step(R, s[t−1], λ_pre)
                    ls_in connected: receive L;  Ŵ ← Ŵ − lr · (α_pre Σ (L⊙Ψ)ᵀ P
                              + α_post Σ (L⊙Q[t−1])ᵀ x), Ŵ_rec the same with R and s[t−1]
    AdaptiveProcess c = Ŵ x + b (+ Ŵ_rec s[t−1]);  s, v − θ, (v̂, w, h, s) = adlif_step(c, …)
                    (``adlif`` a CuAdLIFParams: (i, v̂, w, h, s) = cuadlif_step(c, …),
                    ``u`` holds the current i; not plastic)
                    plastic: the STLLRLayer's traces and update (direct drive: P of x
                    itself) with Ψ scaled by the per-neuron κ = 1 − α in the α_pre term
    ReadoutProcess  o, P = AccumulateStep(x, W, b, P, o[t−1], γ, λ_pre);  send o;
                    ls_in connected: W ← W − lr · Lᵀ P
    PoolProcess     F.max_pool2d / F.avg_pool2d / window sum
    GlobalSumPoolProcess  mean over H·W (``average=True``, the float graph's
                    FloatGlobalPool) or the sum
    AddProcess      a·2^shifts[0] + b·2^shifts[1]
    ConcatProcess   [a·2^shifts[0], b·2^shifts[1]] along channels
    UpsampleProcess ×2 bilinear (F.interpolate, align_corners=False)

A readout whose weight is ``[K, C, 1, 1]`` (a 1×1 conv, a flow head) runs the same
``AccumulateStep`` with the pixels as the batch (``o``, ``P`` kept as ``[K|C, H, W]``).

So the update is the online (every step) S-TLLR step on the effective weights Ŵ
themselves: the device learns Ŵ directly (weight standardisation is not part of the
exported network, as ``weight_std=False`` in the torch layers). The timing, the reset
schedule and the records are those of the ``fixed_pt`` models
(:class:`lava_models.processes.models.NodeModel`).

Absolute imports only: Lava's model discovery executes this file outside its package
(docs/lava.md §7, pitfall 4).
"""

from __future__ import annotations

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_models.float_ops import (
    FLOAT_DTYPE,
    add_scaled,
    batch,
    concat_scaled,
    global_pool,
    pixels_as_batch,
    pixels_back,
    pool2d,
    sample,
    synapse_ops,
    tensor,
    upsample_bilinear2x,
    weight_gradient,
)
from lava_models.processes.models import NodeModel
from lava_models.processes.process import (
    AdaptiveProcess,
    AddProcess,
    ConcatProcess,
    GlobalSumPoolProcess,
    PoolProcess,
    ReadoutProcess,
    STLLRLayer,
    UpsampleProcess,
)
from stllr.factors import trace_step
from stllr.functional.readout import AccumulateStep
from stllr.neuron import lif_step
from stllr.neurons.dynamics import (
    AdLIFParams,
    AdLIFState,
    CuAdLIFParams,
    CuAdLIFState,
    CuLIFParams,
    CuLIFState,
    adlif_step,
    cuadlif_step,
    culif_step,
)
from stllr.neurons.eligibility import PreTrace, pre_trace_step
from stllr.surrogates import get_surrogate
from stllr.synapse_ops import DenseOps


def _in_port() -> LavaPyType:
    return LavaPyType(PyInPort.VEC_DENSE, FLOAT_DTYPE)


def _out_port() -> LavaPyType:
    return LavaPyType(PyOutPort.VEC_DENSE, FLOAT_DTYPE)


def _var() -> LavaPyType:
    return LavaPyType(np.ndarray, FLOAT_DTYPE)


class _FloatNodeModel(NodeModel):
    """float64 records; outputs must stay finite."""

    RECORD_DTYPE = FLOAT_DTYPE
    FLOATING = True
    #: the proc_param that marks a float node (None: the process has no numeric params)
    FLOAT_PARAM: str | None = None

    def check_numerics(self) -> None:
        key = self.FLOAT_PARAM
        if key is not None and self.proc_params.get(key) is None:
            raise TypeError(f"{type(self).__name__}: this process was built as an integer "
                            f"node (no {key}=); run it with fixed_pt or export the float "
                            "network (lava_models.float_exporter.export_float)")  # fmt: skip

    def send(self, out: np.ndarray) -> None:
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{type(self).__name__}: non-finite output")
        self.s_out.send(np.asarray(out, dtype=FLOAT_DTYPE))

    def receive(self, port) -> torch.Tensor:
        return batch(port.recv())


class _FloatSTLLR:
    """The online S-TLLR step of a float spiking or AdLIF layer (docs/neurons.md §3b), on
    the model's Vars ``p``, ``q``, ``r`` (and ``pi``, ``ri``), ``psi``, ``weights``,
    ``weight_rec``. The model sets ``spec`` (FloatLearning), ``surrogate``, ``recurrent``,
    ``ops`` (its synapses), ``kappa`` (the post gain κ = 1 − α of the causal term: ``None``
    for the toolkit's LIF, a float or a per-neuron tensor), ``current_traces`` (P runs
    through P^i) and ``lambda_syn``."""

    kappa = None
    current_traces = False
    lambda_syn = 0.0

    def _pre_trace(self, trace: str, current_trace: str, x) -> torch.Tensor:
        """Advance the pre-trace Vars ``trace`` (and ``current_trace``, current-based) by
        the input ``x`` (:func:`stllr.neurons.eligibility.pre_trace_step`); P[t]."""
        current = batch(getattr(self, current_trace)) if self.current_traces else None
        old = PreTrace(batch(getattr(self, trace)), current)
        new = pre_trace_step(old, x, self.spec.factors.lambda_pre, self.lambda_syn)
        setattr(self, trace, sample(new.p))
        if new.p_i is not None:
            setattr(self, current_trace, sample(new.p_i))
        return new.p

    def learn(self, x, s_prev, v_c) -> None:
        f = self.spec.factors
        p = self._pre_trace("p", "pi", x)
        psi = self.surrogate(v_c)
        q_prev = batch(self.q)
        self.psi = sample(psi)
        self.q = sample(trace_step(q_prev, psi, f.lambda_post))
        r = None
        if self.recurrent:  # R[t]: the trace of this step's recurrent input s[t−1]
            r = self._pre_trace("r", "ri", s_prev)
        if not self.ls_in.csp_ports:  # no signal source connected: traces only
            return
        signal = self.receive(self.ls_in)
        lr = self.spec.lr
        # current-based and AdLIF: g = κ ⊙ Ψ ⊙ δ in the causal term (docs/neurons.md §3b)
        g_psi = psi if self.kappa is None else self.kappa * psi
        grad = weight_gradient(self.ops, f, signal, g_psi, q_prev, p, x, self.weights.shape)
        self.weights = self.weights - lr * grad.numpy()
        if self.recurrent:
            grad = weight_gradient(DenseOps(), f, signal, g_psi, q_prev, r, s_prev,
                                   self.weight_rec.shape)  # fmt: skip
            self.weight_rec = self.weight_rec - lr * grad.numpy()


@implements(proc=STLLRLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySTLLRLayerModelFloat(_FloatSTLLR, _FloatNodeModel):
    """Synapses + LIF + online S-TLLR in float64 (see the module docstring)."""

    s_in: PyInPort = _in_port()
    ls_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()
    weights: np.ndarray = _var()
    weight_rec: np.ndarray = _var()
    bias: np.ndarray = _var()
    u: np.ndarray = _var()
    v: np.ndarray = _var()
    s: np.ndarray = _var()
    psi: np.ndarray = _var()
    p: np.ndarray = _var()
    q: np.ndarray = _var()
    r: np.ndarray = _var()
    pi: np.ndarray = _var()  # current traces P^i, R^i (current-based layers)
    ri: np.ndarray = _var()
    STATE = ("weights", "weight_rec", "u", "v", "s", "psi", "p", "q", "r", "pi", "ri")
    PER_STEP = ("v",)
    FLOAT_PARAM = "lif"

    def __init__(self, proc_params):
        super().__init__(proc_params)
        prm = proc_params
        self.ops = synapse_ops(prm["kind"], prm["stride"], prm["padding"], prm["dilation"],
                               prm["groups"])  # fmt: skip
        self.lif = prm["lif"]
        self.recurrent = bool(prm["recurrent"])
        self.spec = prm["learning"]
        self.surrogate = None if prm["psi"] is None else get_surrogate(prm["psi"])
        beta = prm.get("current_decay")
        #: current-based (CuLIF): its constants, κ = 1 − α and λ_syn; None: the toolkit's LIF
        self.culif = None
        if beta is not None:
            lif = self.lif
            self.culif = CuLIFParams(lif.gamma, float(beta), lif.threshold, lif.reset)
            self.kappa = 1.0 - lif.gamma
            self.current_traces = True
            self.lambda_syn = float(prm["lambda_syn"])

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "s", "psi", "p", "q", "r", "pi", "ri")
        x = self.receive(self.s_in)
        s_prev = batch(self.s)
        current = self.ops.current(x, tensor(self.weights), tensor(self.bias))
        if self.recurrent:
            current = current + self.ops.current(s_prev, tensor(self.weight_rec), None)
        if self.culif is None:
            s, v_c, u = lif_step(current, batch(self.v), self.lif)
            self.u, self.v = sample(current), sample(u)
        else:  # u holds the current i, v the voltage after reset v̂
            state = CuLIFState(batch(self.u), batch(self.v))
            s, v_c, state = culif_step(current, state, self.culif)
            self.u, self.v = sample(state.i), sample(state.v)
        self.send(sample(s))  # before ls_in: a signal computed from this output cannot deadlock
        self.s = sample(s)
        if self.spec is not None:
            self.learn(x, s_prev, v_c)
        self.record(self.s)


@implements(proc=AdaptiveProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyAdaptiveModelFloat(_FloatSTLLR, _FloatNodeModel):
    """Dense synapses + AdLIF + online S-TLLR in float64 (``adlif_step``; the direct-drive
    rule of docs/neurons.md §3b with the per-neuron gain κ = 1 − α)."""

    s_in: PyInPort = _in_port()
    ls_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()
    weights: np.ndarray = _var()
    weight_rec: np.ndarray = _var()
    bias: np.ndarray = _var()
    u: np.ndarray = _var()
    v: np.ndarray = _var()
    w: np.ndarray = _var()
    h: np.ndarray = _var()
    s: np.ndarray = _var()
    psi: np.ndarray = _var()
    p: np.ndarray = _var()
    q: np.ndarray = _var()
    r: np.ndarray = _var()
    pi: np.ndarray = _var()  # the process's current traces: unused (no float CuAdLIF learning)
    ri: np.ndarray = _var()
    STATE = ("weights", "weight_rec", "u", "v", "w", "h", "s", "psi", "p", "q", "r")
    PER_STEP = ("v",)
    FLOAT_PARAM = "adlif"

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params["adlif"]

        def t(v):
            return torch.as_tensor(v, dtype=torch.float64)

        self.current = isinstance(p, CuAdLIFParams)  # the current-based AdLIF
        if self.current:
            self.params = CuAdLIFParams(t(p.alpha), t(p.beta), t(p.rho), t(p.a), t(p.b),
                                        float(p.threshold), p.reset)  # fmt: skip
        else:
            self.params = AdLIFParams(t(p.alpha), t(p.rho), t(p.a), t(p.b), float(p.threshold),
                                      p.reset)  # fmt: skip
        self.recurrent = bool(proc_params["recurrent"])
        self.ops = DenseOps()
        self.spec = proc_params["learning"]
        if self.current and self.spec is not None:
            raise ValueError("AdaptiveProcess: a current-based AdLIF layer cannot learn on device")
        psi = proc_params["psi"]
        self.surrogate = None if psi is None else get_surrogate(psi)
        self.kappa = 1.0 - self.params.alpha

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "w", "h", "s", "psi", "p", "q", "r")
        x = self.receive(self.s_in)
        state = AdLIFState(batch(self.v), batch(self.w), batch(self.h), batch(self.s))
        c = self.ops.current(x, tensor(self.weights), tensor(self.bias))
        if self.recurrent:
            c = c + self.ops.current(state.s, tensor(self.weight_rec), None)
        if self.current:
            s, v_c, new = cuadlif_step(c, CuAdLIFState(batch(self.u), *state), self.params)
            self.send(sample(s))
            self.u, self.v, self.w, self.h, self.s = (sample(a) for a in new)
        else:
            s, v_c, new = adlif_step(c, state, self.params)
            self.send(sample(s))  # before ls_in: a signal from this output cannot deadlock
            self.u, self.v, self.w, self.h, self.s = (sample(a) for a in (c, *new))
        if self.spec is not None:
            self.learn(x, state.s, v_c)
        self.record(self.s)


@implements(proc=ReadoutProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(_FloatNodeModel):
    """``AccumulateStep`` (leaky integrator of ``W·x``, the logits), plastic with Ψ ≡ 1."""

    s_in: PyInPort = _in_port()
    ls_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()
    weights: np.ndarray = _var()
    bias: np.ndarray = _var()
    v: np.ndarray = _var()
    p: np.ndarray = _var()
    STATE = ("weights", "v", "p")
    FLOAT_PARAM = "gamma"

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("v", "p")
        x = self.receive(self.s_in)
        spec = self.proc_params["learning"]
        lam = 0.0 if spec is None else spec.factors.lambda_pre
        w = tensor(self.weights)
        conv = w.dim() == 4  # a 1×1 conv: the dense step with the pixels as the batch
        flat, back = (pixels_as_batch, pixels_back) if conv else (_same, _same_shape)
        hw = x.shape[2:]
        x, p_prev, o_prev = flat(x), flat(batch(self.p)), flat(batch(self.v))
        w2 = w.flatten(1)
        with torch.no_grad():
            o, p = AccumulateStep.apply(x, w2, tensor(self.bias), p_prev, o_prev,
                                        self.proc_params["gamma"], lam)  # fmt: skip
        self.v, self.p = sample(back(o, hw)), sample(back(p, hw))
        self.send(self.v)
        if spec is not None and self.ls_in.csp_ports:
            signal = flat(self.receive(self.ls_in))
            grad = weight_gradient(DenseOps(), spec.factors, signal, None, None, p, x, w2.shape)
            self.weights = self.weights - spec.lr * grad.reshape(w.shape).numpy()
        self.record(self.v)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _same_shape(t: torch.Tensor, hw) -> torch.Tensor:
    return t


@implements(proc=PoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPoolModelFloat(_FloatNodeModel):
    s_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()

    def run_spk(self) -> None:
        x = self.receive(self.s_in)
        out = sample(pool2d(x, self.proc_params["mode"], int(self.proc_params["kernel"])))
        self.send(out)
        self.record(out)


@implements(proc=GlobalSumPoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyGlobalSumPoolModelFloat(_FloatNodeModel):
    s_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()

    def run_spk(self) -> None:
        out = sample(global_pool(self.receive(self.s_in), bool(self.proc_params["average"])))
        self.send(out)
        self.record(out)


@implements(proc=AddProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyAddModelFloat(_FloatNodeModel):
    a_in: PyInPort = _in_port()
    b_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()

    def run_spk(self) -> None:
        a, b = self.receive(self.a_in), self.receive(self.b_in)
        out = sample(add_scaled(a, b, self.proc_params["shifts"]))
        self.send(out)
        self.record(out)


@implements(proc=ConcatProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConcatModelFloat(_FloatNodeModel):
    a_in: PyInPort = _in_port()
    b_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()

    def run_spk(self) -> None:
        a, b = self.receive(self.a_in), self.receive(self.b_in)
        out = sample(concat_scaled(a, b, self.proc_params["shifts"]))
        self.send(out)
        self.record(out)


@implements(proc=UpsampleProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyUpsampleModelFloat(_FloatNodeModel):
    s_in: PyInPort = _in_port()
    s_out: PyOutPort = _out_port()

    def run_spk(self) -> None:
        out = sample(upsample_bilinear2x(self.receive(self.s_in)))
        self.send(out)
        self.record(out)
