"""On-device learning signals as Lava Processes, with their ``fixed_pt`` models.

The error and feedback neurons of :mod:`quantization.signals`, wired next to an exported
network (:func:`lava_models.online.run_lava_online` builds them)::

    RingBuffer(frames) → layers … → readout ──o──▶ ErrorProcess ◀──y── RingBuffer(labels)
                                        ▲               │ e
                                 ls_in  └───────────────┤          (the readout's own L)
                                                        ├──▶ DFAFeedbackProcess ──L──▶ layer.ls_in
                                                        └──▶ BPFeedbackProcess ──L──▶ layer.ls_in
                                                                ⇡ RefPort on readout.weights

* :class:`ErrorProcess`: ``e = sat8(round((clip(o, 0, A) − A·y) / 2^k))``, 0 without a label;
* :class:`DFAFeedbackProcess`: ``L = sat8(round((e·B) / 2^k))`` with a fixed int8 ``B``
  (``sign=True``: ``sign(e)·B``, sign-DFA);
* :class:`BPFeedbackProcess` (simulation only): ``L = sat8(round((e·W) / 2^k))`` with
  ``W`` the readout's weights, read through a ``RefPort`` in the management phase after
  every step — weight transport, which no chip offers (quantization/signals.py).

**Same-step dataflow.** At Lava step ``t`` every model receives, computes and sends in
``run_spk``: the layers send their spikes, the readout sends ``o[t]``, the error process
receives ``o[t]`` and ``y[t]`` and sends ``e[t]``, the feedback processes send
``L[t]``. The plastic layers and the readout send their output *before* they receive
``ls_in`` (lava_models/processes/models.py), so the chain — including the readout's
own ``ls_in`` fed from ``e``, a loop in the graph — completes within the step without
deadlock, and ``L[t]`` updates the weights at step ``t`` like
``IntegerEmulator.apply_signals`` after ``forward``. The BP process reads the readout's
weights at the end of step ``t`` (after its update), i.e. it uses at step ``t + 1``
exactly the weights the emulator's BP reads before that step's update.

Lava's model discovery executes every file of this folder (docs/lava.md §7, pitfall 4):
this module has no side effects and uses absolute imports only. The models are defined
next to their Processes, so discovery finds them in the Process's own module.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_models.processes.models import NodeModel, in_port_type, out_port_type, var_type
from quantization.signals import ErrorFormat, output_error, project_signal, sign_error


def _common(kw: dict) -> dict:
    """The keyword arguments the shared model base reads (recording, step keys)."""
    out = {"node_index": 0, "step_offset": 0, "reset_interval": 0, "record_dir": None,
           "record_steps": 0}  # fmt: skip
    unknown = set(kw) - set(out) - {"name"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    out.update(kw)
    return out


def _matrix(m, num_classes: int, out_shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(m, dtype=np.int64)
    n = int(np.prod(out_shape))
    if a.shape != (num_classes, n):
        raise ValueError(f"feedback matrix must be [{num_classes}, {n}], got {list(a.shape)}")
    return a


class ErrorProcess(AbstractProcess):
    """Output error without softmax (:func:`quantization.signals.output_error`).

    Parameters: ``num_classes`` K; ``shift`` k and ``exp`` (``A = 2^(k − exp)``), ``clip``
    (:class:`quantization.signals.ErrorFormat`). Ports: ``o_in`` ``[K]`` (the readout's
    membrane), ``label_in`` ``[K]`` (one-hot teaching vector, zeros: no learning),
    ``s_out`` ``[K]`` (``e``, 8-bit signed). Var: ``e`` (the last error).
    """

    def __init__(self, *, num_classes: int, shift: int, exp: int, clip: bool = True, **kw):
        shape = (int(num_classes),)
        super().__init__(num_classes=shape[0], shift=int(shift), exp=int(exp), clip=bool(clip),
                         **_common(kw))  # fmt: skip
        self.o_in = InPort(shape=shape)
        self.label_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.e = Var(shape=shape, init=np.zeros(shape, np.int64))


class DFAFeedbackProcess(AbstractProcess):
    """Direct feedback alignment: ``L = sat8(round((e·B) / 2^shift))`` into one layer.

    Parameters: ``num_classes`` K, ``out_shape`` (the layer's output shape, N elements),
    ``matrix`` B ``[K, N]`` (int8 mantissas, fixed), ``shift``, ``sign`` (sign-DFA:
    project ``sign(e)``). Ports: ``e_in`` ``[K]``, ``s_out`` ``out_shape`` (L). Vars:
    ``matrix``, ``l`` (the last L).
    """

    def __init__(self, *, num_classes: int, out_shape, matrix, shift: int, sign: bool = False,
                 **kw):  # fmt: skip
        out_shape = tuple(int(d) for d in out_shape)
        b = _matrix(matrix, int(num_classes), out_shape)
        super().__init__(num_classes=int(num_classes), out_shape=out_shape, shift=int(shift),
                         sign=bool(sign), **_common(kw))  # fmt: skip
        self.e_in = InPort(shape=(int(num_classes),))
        self.s_out = OutPort(shape=out_shape)
        self.matrix = Var(shape=b.shape, init=b)
        self.l = Var(shape=out_shape, init=np.zeros(out_shape, np.int64))


class BPFeedbackProcess(AbstractProcess):
    """BP through the readout's transposed weights (simulation only: weight transport).

    ``L = sat8(round((e·W) / 2^shift))`` with ``W`` ``[K, N]`` the readout's weights. The
    process keeps a copy in ``weights`` (initialised with ``weight``, the readout's
    initial weights) and refreshes it through ``w_ref`` — connect it with
    ``w_ref.connect_var(readout.weights)`` — in the management phase after every step.
    Ports: ``e_in`` ``[K]``, ``s_out`` ``out_shape``, ``w_ref`` (RefPort ``[K, N]``).
    Vars: ``weights``, ``l``.
    """

    def __init__(self, *, num_classes: int, out_shape, weight, shift: int, **kw):
        out_shape = tuple(int(d) for d in out_shape)
        w = _matrix(weight, int(num_classes), out_shape)
        super().__init__(num_classes=int(num_classes), out_shape=out_shape, shift=int(shift),
                         **_common(kw))  # fmt: skip
        self.e_in = InPort(shape=(int(num_classes),))
        self.s_out = OutPort(shape=out_shape)
        self.w_ref = RefPort(shape=w.shape)
        self.weights = Var(shape=w.shape, init=w)
        self.l = Var(shape=out_shape, init=np.zeros(out_shape, np.int64))


# --- fixed_pt models ---------------------------------------------------------------------


@implements(proc=ErrorProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyErrorModelFixed(NodeModel):
    o_in: PyInPort = in_port_type(24)
    label_in: PyInPort = in_port_type(1)
    s_out: PyOutPort = out_port_type(8)
    e: np.ndarray = var_type(8)
    STATE = ("e",)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        prm = proc_params
        self.fmt = ErrorFormat(prm["shift"], prm["exp"], prm["clip"])

    def run_spk(self) -> None:
        o = self.o_in.recv().astype(np.int64)
        y = self.label_in.recv().astype(np.int64)
        self.e = output_error(o, y, self.fmt)
        self.send(self.e)
        self.record(self.e)


@implements(proc=DFAFeedbackProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDFAFeedbackModelFixed(NodeModel):
    e_in: PyInPort = in_port_type(8)
    s_out: PyOutPort = out_port_type(8)
    matrix: np.ndarray = var_type(8)
    l: np.ndarray = var_type(8)  # noqa: E741
    STATE = ("l",)

    def run_spk(self) -> None:
        e = self.e_in.recv().astype(np.int64)
        prm = self.proc_params
        src = sign_error(e) if prm["sign"] else e
        self.l = project_signal(src, self.matrix, prm["shift"], prm["out_shape"])
        self.send(self.l)
        self.record(self.l)


@implements(proc=BPFeedbackProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyBPFeedbackModelFixed(NodeModel):
    e_in: PyInPort = in_port_type(8)
    s_out: PyOutPort = out_port_type(8)
    w_ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int64, precision=32)
    weights: np.ndarray = var_type(32)
    l: np.ndarray = var_type(8)  # noqa: E741
    STATE = ("l", "weights")

    def run_spk(self) -> None:
        e = self.e_in.recv().astype(np.int64)
        prm = self.proc_params
        self.l = project_signal(e, self.weights, prm["shift"], prm["out_shape"])
        self.send(self.l)
        self.record(self.l)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        # Weight transport: the readout's weights after this step's update, for the next.
        self.weights = np.rint(np.asarray(self.w_ref.read())).astype(np.int64)


__all__ = ["BPFeedbackProcess", "DFAFeedbackProcess", "ErrorProcess"]
