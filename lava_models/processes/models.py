"""``fixed_pt`` ProcessModels of :mod:`lava_models.processes.process` (one per Process).

Each model is the Lava side of a node kind (:mod:`quantization.nodes`): per step it
receives its inputs, calls the kind's ``forward`` (the same function the batched emulator,
:mod:`quantization.emulator`, calls on torch tensors), sends the output and, if plastic
with a connected ``ls_in``, receives the third factor and calls the kind's ``learn``. Here
the kinds run on one sample's numpy arrays (no batch dimension); the model is the kind's
:class:`~quantization.nodes.Host` (int64 products, no delay, no saturation counts) and
keeps the kind's typed state in its Vars.

Timing, per Lava time step ``t`` (``self.time_step``, counted from 1): every model
receives its inputs, computes and sends its output within ``run_spk`` of the same step,
so a chain of these processes has no delay. A plastic ``STLLRLayer`` sends its spikes
*before* it receives its learning signal on ``ls_in``, so a signal computed downstream
from this step's output cannot deadlock. The random bits of stochastic rounding are
keyed by the emulator's global step ``step_offset + t − 1``.

Imports: numpy, Lava and the toolkit's ``quantization`` kernels (which import torch).
Lava's model discovery executes this file once per Process it compiles (docs/lava.md §7,
pitfall 4); it has no side effects at import time and, once torch is loaded, costs
only the class definitions. Absolute imports only: discovery executes the file outside
its package.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_models.processes.process import (
    AdaptiveProcess,
    AddProcess,
    ConcatProcess,
    FlattenProcess,
    GlobalSumPoolProcess,
    PoolProcess,
    ReadoutProcess,
    STLLRLayer,
    UpsampleProcess,
)
from quantization.backend import int_linear
from quantization.nodes import (
    AdaptiveState,
    ReadoutState,
    SpikingState,
    SynapseWeights,
    Traces,
    kind_of,
)

#: Graded values on the ports (spikes, pooled counts, sums, 24-bit logits, 8-bit L).
PORT_DTYPE = np.int32


def in_port_type(bits: int) -> LavaPyType:
    """Type of an int32 InPort that carries ``bits``-bit values (all fixed_pt models)."""
    return LavaPyType(PyInPort.VEC_DENSE, PORT_DTYPE, precision=bits)


def out_port_type(bits: int) -> LavaPyType:
    """Type of an int32 OutPort that carries ``bits``-bit values (all fixed_pt models)."""
    return LavaPyType(PyOutPort.VEC_DENSE, PORT_DTYPE, precision=bits)


def var_type(bits: int) -> LavaPyType:
    """Type of an int64 Var that holds ``bits``-bit values (all fixed_pt models)."""
    return LavaPyType(np.ndarray, np.int64, precision=bits)


class NodeModel(PyLoihiProcessModel):
    """Global step, the reset schedule and the in-process recorder shared by all models
    (the ``floating_pt`` models of :mod:`lava_models.processes.float_models` too)."""

    #: Vars written to the record file at ``record_steps`` (besides the outputs).
    STATE: tuple[str, ...] = ()
    #: Vars recorded at every step as ``step_<name>`` (besides the outputs).
    PER_STEP: tuple[str, ...] = ()
    #: dtype of the records (exact integers here; float64 in the float models).
    RECORD_DTYPE = np.int64
    #: True for the float models: the process must have been built as a float node.
    FLOATING = False

    def __init__(self, proc_params):
        super().__init__(proc_params)
        # One thread: a forked child must not reuse an OpenMP pool of the parent, and
        # per-sample tensors are tiny.
        torch.set_num_threads(1)
        self._records: list[np.ndarray] | None = [] if proc_params["record_dir"] else None
        self._per_step: dict[str, list[np.ndarray]] = {k: [] for k in self.PER_STEP}
        self.check_numerics()

    def check_numerics(self) -> None:
        """Raise if the process was built for the other kind of model (fixed vs float)."""
        prm = self.proc_params
        floating = (prm.get("lif") is not None or prm.get("gamma") is not None
                    or prm.get("mode") == "avg" or bool(prm.get("average")))  # fmt: skip
        if floating and not self.FLOATING:
            raise TypeError(f"{type(self).__name__}: this process was built as a float node "
                            "(lif=, gamma=, mode='avg' or average=True); run it with "
                            "floating_pt")  # fmt: skip

    def global_step(self) -> int:
        """The emulator's ``step_count`` at this Lava time step."""
        return int(self.proc_params["step_offset"]) + self.time_step - 1

    def starts_sample(self) -> bool:
        """True at the first step of every ``reset_interval`` steps (after the first)."""
        every = int(self.proc_params["reset_interval"])
        return every > 0 and self.time_step > 1 and (self.time_step - 1) % every == 0

    def zero(self, *names: str) -> None:
        for name in names:
            setattr(self, name, np.zeros_like(getattr(self, name)))

    def send(self, out: np.ndarray) -> None:
        info = np.iinfo(PORT_DTYPE)
        if out.size and (out.max() > info.max or out.min() < info.min):
            raise OverflowError(f"{type(self).__name__}: output beyond the int32 port")
        self.s_out.send(out.astype(PORT_DTYPE))

    def record(self, out: np.ndarray) -> None:
        if self._records is None:
            return
        self._records.append(np.array(out, dtype=self.RECORD_DTYPE))
        for name, values in self._per_step.items():
            values.append(np.array(getattr(self, name), dtype=self.RECORD_DTYPE))
        if self.time_step == int(self.proc_params["record_steps"]):
            path = os.path.join(self.proc_params["record_dir"], f"{self.proc_params['node_index']}")
            state = {k: np.asarray(getattr(self, k), dtype=self.RECORD_DTYPE) for k in self.STATE}
            state.update({f"step_{k}": np.stack(v) for k, v in self._per_step.items()})
            with open(path + ".tmp", "wb") as f:
                np.savez(f, out=np.stack(self._records), **state)
            os.replace(path + ".tmp", path + ".npz")  # the runner waits for complete files


class KindModel(NodeModel):
    """A ``fixed_pt`` model that steps its node's kind (``proc_params["node"]``) and is the
    kind's host: numpy int64 products, no delay, nothing counted."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.node = proc_params["node"]
        if self.node is None:
            raise TypeError(f"{type(self).__name__}: the process was built without its node "
                            "(export it with lava_models.exporter.export)")  # fmt: skip
        self.kind = kind_of(self.node)
        self.index = int(proc_params["node_index"])
        psi = getattr(self.node, "psi", None)
        self._psi = None if psi is None else psi.table.numpy().astype(np.int64)

    def forward(self, state, inputs):
        return self.kind.forward(self.node, state, inputs, self, self.global_step(), self.index)

    # --- quantization.nodes.Host ---------------------------------------------------------
    def fast(self, node) -> bool:
        return False

    def synapse(self, node, x, keep_float: bool):
        return self.kind.synapse(node, self.weights, x)

    def recurrent(self, node, s_prev, keep_float: bool):
        return int_linear(s_prev, self.weight_rec)

    def bias_of(self, node, like):
        return self.bias.reshape((-1,) + (1,) * (like.ndim - 1))  # per channel

    def synaptic_delay(self) -> int:
        return 0  # the synapses are fused into the neuron's process

    def a_bound(self, node):
        return None

    def psi_table(self, node):
        return self._psi

    def count(self, label, values, limit) -> None:
        pass

    def count_range(self, label, raw, lo, hi) -> None:
        pass

    def learns(self) -> bool:
        """Plastic, with a third-factor source connected to ``ls_in``."""
        return self.node.learning is not None and bool(self.ls_in.csp_ports)


class StatelessKindModel(KindModel):
    """A kind without weights or state: receive every input, ``forward``, send."""

    IN_PORTS: tuple[str, ...] = ("s_in",)

    def run_spk(self) -> None:
        ins = [getattr(self, port).recv().astype(np.int64) for port in self.IN_PORTS]
        out = self.forward(None, ins).out
        self.send(out)
        self.record(out)


@implements(proc=STLLRLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySTLLRLayerModelFixed(KindModel):
    """Synapses + integer LIF + S-TLLR: :mod:`quantization.nodes.spiking` on one sample."""

    s_in: PyInPort = in_port_type(24)
    ls_in: PyInPort = in_port_type(8)
    s_out: PyOutPort = out_port_type(1)
    weights: np.ndarray = var_type(32)
    weight_rec: np.ndarray = var_type(32)
    bias: np.ndarray = var_type(24)
    u: np.ndarray = var_type(24)
    v: np.ndarray = var_type(24)
    s: np.ndarray = var_type(1)
    psi: np.ndarray = var_type(8)
    p: np.ndarray = var_type(32)
    q: np.ndarray = var_type(32)
    r: np.ndarray = var_type(32)
    pi: np.ndarray = var_type(32)  # current traces P^i, R^i (current-based nodes)
    ri: np.ndarray = var_type(32)
    STATE = ("weights", "weight_rec", "u", "v", "s", "psi", "p", "q", "r", "pi", "ri")

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "s", "psi", "p", "q", "r", "pi", "ri")
            self._a_prev = self._line = None
        x = self.s_in.recv().astype(np.int64)
        rec = self.node.recurrent
        cur = self.node.current_traces
        traces = Traces(self.p, self.q, self.r if rec else None, self.pi if cur else None,
                        self.ri if rec and cur else None)  # fmt: skip
        state = SpikingState(self.u, self.v, self.s, traces if self.node.learning else None,
                             a_prev=getattr(self, "_a_prev", None),
                             line=getattr(self, "_line", None))  # fmt: skip
        step = self.forward(state, [x])
        self._a_prev = step.state.a_prev  # a current-based node's a[t] (kept in the model)
        self._line = step.state.line  # a node with synaptic delays: its delay line
        self.send(step.out)  # before ls_in: a signal computed from this output cannot deadlock
        new = step.state
        self.u, self.v, self.s = np.asarray(new.u), np.asarray(new.v), step.out
        if new.traces is not None:
            self.p, self.q, self.psi = new.traces.p, new.traces.q, new.psi
            if rec:
                self.r = new.traces.r
            if cur:
                self.pi = new.traces.pi
                self.ri = new.traces.ri if rec else self.ri
        if self.learns():
            signal = self.ls_in.recv().astype(np.int64)
            w = SynapseWeights(self.weights, self.weight_rec if rec else None)
            w = self.kind.learn(self.node, w, new, signal, self, self.global_step(), self.index)
            self.weights = w.w
            if rec:
                self.weight_rec = w.w_rec
        self.record(self.s)


@implements(proc=ReadoutProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutModelFixed(KindModel):
    """Leaky integrator of ``W·x`` (the logits): :mod:`quantization.nodes.readout`."""

    s_in: PyInPort = in_port_type(24)
    ls_in: PyInPort = in_port_type(8)
    s_out: PyOutPort = out_port_type(24)
    weights: np.ndarray = var_type(32)
    bias: np.ndarray = var_type(24)
    v: np.ndarray = var_type(24)
    p: np.ndarray = var_type(32)
    STATE = ("weights", "v", "p")

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("v", "p")
        x = self.s_in.recv().astype(np.int64)
        state = ReadoutState(self.v, Traces(self.p) if self.node.learning else None)
        step = self.forward(state, [x])
        self.v = step.out
        self.send(self.v)
        if step.state.traces is not None:
            self.p = step.state.traces.p
        if self.learns():
            signal = self.ls_in.recv().astype(np.int64)
            w = self.kind.learn(self.node, SynapseWeights(self.weights), step.state, signal,
                                self, self.global_step(), self.index)  # fmt: skip
            self.weights = w.w
        self.record(self.v)


@implements(proc=PoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPoolModelFixed(StatelessKindModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=GlobalSumPoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGlobalSumPoolModelFixed(StatelessKindModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=AddProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAddModelFixed(StatelessKindModel):
    IN_PORTS = ("a_in", "b_in")
    a_in: PyInPort = in_port_type(24)
    b_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=ConcatProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConcatModelFixed(StatelessKindModel):
    IN_PORTS = ("a_in", "b_in")
    a_in: PyInPort = in_port_type(24)
    b_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=FlattenProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFlattenModelFixed(StatelessKindModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=UpsampleProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyUpsampleModelFixed(StatelessKindModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)


@implements(proc=AdaptiveProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAdaptiveModelFixed(KindModel):
    """Synapses + integer AdLIF (or CuAdLIF) + S-TLLR: :mod:`quantization.nodes.adaptive` on
    one sample."""

    s_in: PyInPort = in_port_type(24)
    ls_in: PyInPort = in_port_type(8)
    s_out: PyOutPort = out_port_type(1)
    weights: np.ndarray = var_type(32)
    weight_rec: np.ndarray = var_type(32)
    bias: np.ndarray = var_type(24)
    u: np.ndarray = var_type(24)
    v: np.ndarray = var_type(24)
    w: np.ndarray = var_type(24)
    h: np.ndarray = var_type(24)
    s: np.ndarray = var_type(1)
    psi: np.ndarray = var_type(8)
    p: np.ndarray = var_type(32)
    q: np.ndarray = var_type(32)
    r: np.ndarray = var_type(32)
    pi: np.ndarray = var_type(32)  # current traces P^i, R^i (current-based nodes)
    ri: np.ndarray = var_type(32)
    STATE = ("weights", "weight_rec", "u", "v", "w", "h", "s", "psi", "p", "q", "r", "pi", "ri")

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "w", "h", "s", "psi", "p", "q", "r", "pi", "ri")
            self._a_prev = None
        x = self.s_in.recv().astype(np.int64)
        rec = self.node.recurrent
        cur = self.node.current_traces
        traces = None
        if self.node.learning is not None:
            traces = Traces(self.p, self.q, self.r if rec else None, self.pi if cur else None,
                            self.ri if rec and cur else None)  # fmt: skip
        state = AdaptiveState(self.u, self.v, self.w, self.h, self.s, traces,
                              a_prev=getattr(self, "_a_prev", None))  # fmt: skip
        step = self.forward(state, [x])
        self._a_prev = step.state.a_prev  # a current-based node's a[t] (kept in the model)
        self.send(step.out)  # before ls_in: a signal computed from this output cannot deadlock
        new = step.state
        self.u, self.v, self.w, self.h, self.s = (np.asarray(a) for a in new[:5])
        if new.traces is not None:
            self.p, self.q, self.psi = new.traces.p, new.traces.q, new.psi
            if rec:
                self.r = new.traces.r
            if cur:
                self.pi = new.traces.pi
                if rec:
                    self.ri = new.traces.ri
        if self.learns():
            signal = self.ls_in.recv().astype(np.int64)
            w = SynapseWeights(self.weights, self.weight_rec if rec else None)
            w = self.kind.learn(self.node, w, new, signal, self, self.global_step(), self.index)
            self.weights = w.w
            if rec:
                self.weight_rec = w.w_rec
        self.record(self.s)
