"""``floating_pt`` and ``fixed_pt`` models of :class:`STLLRLearningLIF` (process.py has the math).

Both reuse Lava's LIF sub-threshold dynamics (``AbstractPyLifModelFloat/Fixed
.subthr_dynamics``: float ``u = u(1−du) + a, v = v(1−dv) + u + bias``; fixed the Loihi
24-bit version with ``a << 6`` and decays toward zero) and replace ``run_spk`` to add the
reset choice, Ψ, the post trace and the y outputs.

* float: Ψ from :mod:`stllr.surrogates`; ``y_k = factor·s_k·exp(1/τ_yk)``. Lava's learning
  engine decays every received y once (``y·exp(−1/τ)``, τ = 65535 for Loihi3F) before
  evaluating the rule, so the ``exp(+1/τ)`` gain makes the float products exact.
* fixed: Ψ from the integer tables of :class:`STLLRNeuronConfig` via
  :func:`quantization.kernels.psi_lookup` (then, if the tables carry extra fractional bits,
  :func:`quantization.kernels.round_shift` with hash noise); ``Q`` is a 7-bit trace advanced by
  :func:`quantization.kernels.trace_int_step` (λ_post in 12 bits, rounding from the config,
  random bits keyed by ``(seed, time step)``). The engine's own y decay (one stochastic
  rounding of ``y·exp(−1/65535)``) changes a y by one LSB with probability ≈ 1.5e−5·|y|.

Imports: numpy and Lava at module level; torch (via :mod:`stllr` / :mod:`quantization`)
only when a model is instantiated, because Lava's model discovery executes this file.
"""

from __future__ import annotations

import math

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.neuron import LearningNeuronModelFixed, LearningNeuronModelFloat
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from lava_models.learning_engine.neuron.process import STLLRLearningLIF
from quantization.formats import SIGNAL_MAX, SIGNAL_MIN

#: Random streams (``quantization.kernels.stream_key``): Q decay, y3 and Q-impulse rounding.
STREAM_Q, STREAM_PSI, STREAM_QIMP = 0, 1, 2
Y_MIN, Y_MAX = SIGNAL_MIN, SIGNAL_MAX  # the 8-bit signed third factor


def _y_gains(rule) -> tuple[float, float, float]:
    """``exp(1/τ)`` per y trace: undoes the engine's one-step decay of received y's."""
    taus = (rule.y1_tau, rule.y2_tau, rule.y3_tau)
    return tuple(math.exp(1.0 / t) if t > 0 else 1.0 for t in taus)


@implements(proc=STLLRLearningLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySTLLRLearningLIFModelFloat(LearningNeuronModelFloat, AbstractPyLifModelFloat):
    """Float S-TLLR LearningLIF: exact Ψ, Q and y scales (see module doc)."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    v_c: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        import torch  # noqa: F401  (lazy: see module doc)

        from stllr.factors import trace_step
        from stllr.surrogates import get_surrogate

        cfg = proc_params["stllr"]
        self._cfg = cfg
        self._soft = proc_params["reset"] == "soft"
        self._psi_fn = get_surrogate(cfg.psi_variant)
        self._trace_step = trace_step  # on numpy arrays: the same two operations
        self._q = np.zeros(proc_params["shape"], dtype=np.float64)
        g1, g2, g3 = _y_gains(self._learning_rule)
        self._k1, self._k2, self._k3 = cfg.s_q * g1, cfg.s_l * g2, cfg.s_psi * g3

    def _psi(self, v_c: np.ndarray) -> np.ndarray:
        import torch

        return self._psi_fn(torch.from_numpy(np.asarray(v_c, dtype=np.float64))).numpy()

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        self.subthr_dynamics(activation_in=a_in)
        v_c = self.v - self.vth
        spikes = v_c > 0
        psi = self._psi(v_c)
        self._q = self._trace_step(self._q, psi, self._cfg.lam_post)
        if self._soft:
            self.v[spikes] -= self.vth
        else:
            self.v[spikes] = 0.0
        third = self.a_third_factor_in.recv()
        self.v_c[:] = v_c
        self.y1[:] = self._q * self._k1
        self.y2[:] = third * self._k2
        self.y3[:] = psi * self._k3
        self.s_out.send(spikes.astype(float))
        self.s_out_bap.send(spikes if self._cfg.send_bap else np.zeros_like(spikes))
        self.s_out_y1.send(self.y1)
        self.s_out_y2.send(self.y2)
        self.s_out_y3.send(self.y3)


@implements(proc=STLLRLearningLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySTLLRLearningLIFModelFixed(LearningNeuronModelFixed, AbstractPyLifModelFixed):
    """Fixed S-TLLR LearningLIF: Loihi LIF, 7-bit Ψ table, 7-bit Q trace (see module doc)."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    v_c: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        from quantization.backend import round_shift
        from quantization.kernels import psi_lookup, stochastic_noise, stream_key, trace_int_step

        cfg = proc_params["stllr"]
        if cfg.psi_table is None or cfg.q_table is None:
            raise ValueError(
                "STLLRLearningLIF fixed_pt needs the integer Ψ tables: build the config with "
                "calibrate_mapping(mode='fixed')"
            )
        self._cfg = cfg
        self._soft = proc_params["reset"] == "soft"
        self._psi_table = np.asarray(cfg.psi_table, dtype=np.int64)
        self._q_table = np.asarray(cfg.q_table, dtype=np.int64)
        self._q = np.zeros(proc_params["shape"], dtype=np.int64)
        self._lookup, self._trace_step, self._key = psi_lookup, trace_int_step, stream_key
        self._round_shift, self._noise = round_shift, stochastic_noise

    def _table(self, v_c: np.ndarray, table: np.ndarray, stream: int) -> np.ndarray:
        """Table lookup, then the stochastic removal of the table's extra fractional bits."""
        cfg = self._cfg
        raw = self._lookup(v_c, table, cfg.psi_shift, cfg.psi_half)
        k = cfg.psi_extra_bits
        if not k:
            return raw
        noise = self._noise(raw, k, self._key(cfg.seed, int(self.time_step), stream))
        return np.clip(self._round_shift(raw, k, "stochastic", noise), 0, 127)

    def scale_threshold(self):
        """Loihi MSB-aligns the threshold: ``vth << 6``."""
        self.effective_vth = np.left_shift(np.int64(self.vth), self.vth_shift)
        self.isthrscaled = True

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()
        self.subthr_dynamics(activation_in=a_in)
        cfg = self._cfg
        v_c = self.v.astype(np.int64) - self.effective_vth
        spikes = v_c > 0
        psi = self._table(v_c, self._psi_table, STREAM_PSI)
        q_imp = self._table(v_c, self._q_table, STREAM_QIMP)
        key = self._key(cfg.seed, int(self.time_step), STREAM_Q)
        self._q = self._trace_step(self._q, q_imp, cfg.lam_post_12, 7, cfg.trace_rounding, key)
        if self._soft:
            self.v[spikes] -= self.effective_vth
        else:
            self.v[spikes] = 0
        third = np.clip(np.asarray(self.a_third_factor_in.recv(), dtype=np.int64), Y_MIN, Y_MAX)
        self.v_c[:] = v_c
        self.y1[:] = self._q
        self.y2[:] = third
        self.y3[:] = psi
        self.s_out.send(spikes.astype(np.int32))
        self.s_out_bap.send(spikes if self._cfg.send_bap else np.zeros_like(spikes))
        self.s_out_y1.send(self.y1)
        self.s_out_y2.send(self.y2)
        self.s_out_y3.send(self.y3)
