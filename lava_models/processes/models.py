"""``fixed_pt`` ProcessModels of :mod:`lava_models.processes.process` (one per Process).

Each model is glue around the integer kernels of :mod:`quantization.loihi`,
:mod:`quantization.kernels` and :mod:`quantization.backend`, the same functions the
batched emulator (:mod:`quantization.emulator`) calls on torch tensors (each kernel
written once, used twice): here they run on one sample's numpy arrays (no batch dimension).

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
    AddProcess,
    GlobalSumPoolProcess,
    PoolProcess,
    ReadoutProcess,
    STLLRLayer,
)
from quantization.backend import int_conv2d, int_linear, int_max_pool2d, int_sum_pool2d
from quantization.formats import DU_NONE
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
from quantization.loihi import LIFFixedParams, LIFFixedState, lif_int_step

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


@implements(proc=STLLRLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySTLLRLayerModelFixed(NodeModel):
    """Synapses + integer LIF + S-TLLR (see :class:`~lava_models.processes.STLLRLayer`)."""

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
    STATE = ("weights", "weight_rec", "u", "v", "s", "psi", "p", "q", "r")

    def __init__(self, proc_params):
        super().__init__(proc_params)
        prm = proc_params
        self.kind = prm["kind"]
        self.conv = (prm["stride"], prm["padding"], prm["dilation"], prm["groups"])
        self.recurrent = bool(prm["recurrent"])
        self.spec = prm["learning"]
        self.lif = LIFFixedParams(DU_NONE, prm["dv"], prm["vth"], 0, 0, prm["reset"])

    def correlate(self, a, x):
        return synapse_correlation(self.kind, a, x, self.weights.shape, *self.conv)

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "s", "psi", "p", "q", "r")
        x = self.s_in.recv().astype(np.int64)
        s_prev = self.s
        if self.kind == "conv":
            a = int_conv2d(x, self.weights, *self.conv)
        else:
            a = int_linear(x, self.weights)
        if self.recurrent:
            a = a + int_linear(s_prev, self.weight_rec)
        bias = self.bias.reshape((-1,) + (1,) * (a.ndim - 1))  # per channel over [C, H, W]
        s, v_c, st = lif_int_step(LIFFixedState(self.u, self.v), a,
                                  self.lif._replace(bias_mant=bias))  # fmt: skip
        s = s.astype(np.int64)
        self.send(s)  # before ls_in: a signal computed from this output cannot deadlock
        self.u, self.v, self.s = np.asarray(st.u), np.asarray(st.v), s
        if self.spec is not None:
            self.learn(x, s_prev, v_c)
        self.record(s)

    def learn(self, x, s_prev, v_c) -> None:
        spec, (table, shift, half, frac) = self.spec, self.proc_params["psi"]
        step, index = self.global_step(), int(self.proc_params["node_index"])
        psi = psi_lookup(v_c, table, shift, half)
        q_prev = self.q
        rec_in = s_prev if self.recurrent else None
        self.p, self.q, r = stllr_trace_step(self.p, self.q, self.r if self.recurrent else None,
                                             x, psi, rec_in, spec, frac, step, index)  # fmt: skip
        if self.recurrent:
            self.r = r
        self.psi = psi
        if not self.ls_in.csp_ports:  # no signal source connected: traces only
            return
        signal = self.ls_in.recv().astype(np.int64)
        g, h = stllr_eligibility_terms(signal, psi, q_prev, frac - spec.q_frac)
        h = h if spec.a_post else None
        key = node_stream_key(spec.seed, step, index, STREAM_W)
        self.weights, _ = stllr_weight_step(self.weights, g, h, self.p, x, spec, key,
                                            self.correlate)  # fmt: skip
        if self.recurrent:
            key = node_stream_key(spec.seed, step, index, STREAM_WREC)
            self.weight_rec, _ = stllr_weight_step(self.weight_rec, g, h, self.r, s_prev, spec,
                                                   key, _dense_correlate)  # fmt: skip


def _dense_correlate(a, x):
    return synapse_correlation("dense", a, x, (a.shape[-1], x.shape[-1]))


@implements(proc=ReadoutProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutModelFixed(NodeModel):
    """Leaky integrator of ``W·x`` (the logits), plastic with Ψ ≡ 1."""

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
        self.v = readout_int_step(self.v, int_linear(x, self.weights), self.proc_params["dv"],
                                  self.bias)  # fmt: skip
        self.send(self.v)
        spec = self.proc_params["learning"]
        if spec is not None:
            step, index = self.global_step(), int(self.proc_params["node_index"])
            self.p, _, _ = stllr_trace_step(self.p, None, None, x, None, None, spec, 0, step,
                                            index)  # fmt: skip
            if self.ls_in.csp_ports:
                signal = self.ls_in.recv().astype(np.int64)
                key = node_stream_key(spec.seed, step, index, STREAM_W)
                self.weights, _ = stllr_weight_step(self.weights, signal, None, self.p, x, spec,
                                                    key, _dense_correlate)  # fmt: skip
        self.record(self.v)


@implements(proc=PoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPoolModelFixed(NodeModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)

    def run_spk(self) -> None:
        x = self.s_in.recv().astype(np.int64)
        k = int(self.proc_params["kernel"])
        out = int_max_pool2d(x, k) if self.proc_params["mode"] == "max" else int_sum_pool2d(x, k)
        self.send(out)
        self.record(out)


@implements(proc=GlobalSumPoolProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGlobalSumPoolModelFixed(NodeModel):
    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)

    def run_spk(self) -> None:
        out = global_sum_pool(self.s_in.recv().astype(np.int64))
        self.send(out)
        self.record(out)


@implements(proc=AddProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAddModelFixed(NodeModel):
    a_in: PyInPort = in_port_type(24)
    b_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(24)

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.int64)
        b = self.b_in.recv().astype(np.int64)
        out = add_shifted([a, b], self.proc_params["shifts"])
        self.send(out)
        self.record(out)
