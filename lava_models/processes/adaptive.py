"""The integer AdLIF layer (:mod:`quantization.nodes.adaptive`) as a Lava Process and its
``fixed_pt`` model: dense (+ recurrent) synapses fused with the adaptive neuron, inference
only. Like every file of this folder it is executed by Lava's model discovery (see the
package docstring) and has no side effects.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_models.processes.models import KindModel, in_port_type, out_port_type, var_type
from lava_models.processes.process import _common, _int_array
from quantization.nodes import AdaptiveState


class AdaptiveProcess(AbstractProcess):
    """Integer AdLIF layer ``[in] → [out]`` (spikes). Vars: ``weights`` ``[out, in]``,
    ``weight_rec`` ``[out, out]`` (zeros if not recurrent), ``bias`` ``[out]`` (membrane
    units), and the state after the last step: ``u``, ``v`` (after reset), ``w`` (the
    adaptation ω), ``h`` (voltage before reset), ``s``. The node itself (``node=``) carries
    the 12-bit decays and couplings."""

    def __init__(self, *, in_shape, out_shape, weight, bias=None, weight_rec=None, **kw):
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        (n,) = out_shape
        super().__init__(in_shape=in_shape, out_shape=out_shape,
                         recurrent=weight_rec is not None, **_common(kw))  # fmt: skip
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)
        w = _int_array(weight)
        w_rec = np.zeros((n, n), np.int64) if weight_rec is None else _int_array(weight_rec)
        self.weights = Var(shape=w.shape, init=w)
        self.weight_rec = Var(shape=w_rec.shape, init=w_rec)
        self.bias = Var(shape=(n,), init=np.zeros(n, np.int64) if bias is None
                        else _int_array(bias, (n,)))  # fmt: skip
        for name in ("u", "v", "w", "h", "s"):
            setattr(self, name, Var(shape=out_shape, init=np.zeros(out_shape, np.int64)))


@implements(proc=AdaptiveProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAdaptiveModelFixed(KindModel):
    """Synapses + integer AdLIF: :mod:`quantization.nodes.adaptive` on one sample."""

    s_in: PyInPort = in_port_type(24)
    s_out: PyOutPort = out_port_type(1)
    weights: np.ndarray = var_type(32)
    weight_rec: np.ndarray = var_type(32)
    bias: np.ndarray = var_type(24)
    u: np.ndarray = var_type(24)
    v: np.ndarray = var_type(24)
    w: np.ndarray = var_type(24)
    h: np.ndarray = var_type(24)
    s: np.ndarray = var_type(1)
    STATE = ("weights", "weight_rec", "u", "v", "w", "h", "s")

    def run_spk(self) -> None:
        if self.starts_sample():
            self.zero("u", "v", "w", "h", "s")
        x = self.s_in.recv().astype(np.int64)
        state = AdaptiveState(self.u, self.v, self.w, self.h, self.s)
        step = self.forward(state, [x])
        self.send(step.out)
        new = step.state
        self.u, self.v, self.w, self.h, self.s = (np.asarray(a) for a in new)
        self.record(self.s)
