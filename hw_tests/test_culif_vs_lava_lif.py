"""CuLIF (float) is Lava's ``LIF`` (float model), as docs/neurons.md §1 derives.

A RingBuffer of random spikes drives ``Dense(weights × (1 − α))`` → ``LIF(du = 1 − β,
dv = 1 − α, vth = θ)`` in Lava's ``floating_pt`` models; the same spikes drive
:func:`stllr.neurons.dynamics.culif_step` (hard reset) with ``c[t] = W x[t]``. Lava's
Dense delivers ``W x[t−1]`` at step t, which is the CuLIF's own one-step delay (its
voltage reads the previous current), so the voltages agree step for step up to rounding
and the spikes are equal.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stllr.neurons.dynamics import CuLIFParams, CuLIFState, culif_step, zero_state


def _lava_run(spikes, weights, du, dv, vth):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    n_out, steps = weights.shape[0], spikes.shape[1]
    src = RingBuffer(data=spikes.astype(np.float64))
    dense = Dense(weights=weights)
    lif = LIF(shape=(n_out,), du=du, dv=dv, vth=vth, bias_mant=0.0)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    mon_v, mon_s = Monitor(), Monitor()
    mon_v.probe(lif.v, steps)
    mon_s.probe(lif.s_out, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        v = np.asarray(mon_v.get_data()[lif.name]["v"], dtype=np.float64)
        s = np.asarray(mon_s.get_data()[lif.name]["s_out"], dtype=np.float64)
    finally:
        lif.stop()
    return v, s


def test_culif_equals_lava_float_lif():
    rng = np.random.default_rng(0)
    n_in, n_out, steps = 6, 4, 30
    alpha, beta, theta = math.exp(-1 / 5), math.exp(-1 / 3), 0.4
    spikes = (rng.random((n_in, steps)) < 0.4).astype(np.float64)  # Lava layout [in, T]
    w = rng.normal(0.0, 0.6, (n_out, n_in))
    v_lava, s_lava = _lava_run(spikes, w * (1 - alpha), du=1 - beta, dv=1 - alpha, vth=theta)

    params = CuLIFParams(alpha, beta, theta, "hard")
    state = zero_state(CuLIFState, torch.zeros(1, n_out, dtype=torch.float64))
    x = torch.as_tensor(spikes.T).unsqueeze(1)  # [T, 1, in]
    w_t = torch.as_tensor(w)
    v_ours, s_ours = [], []
    for t in range(steps):
        s, _, state = culif_step(x[t] @ w_t.T, state, params)
        v_ours.append(state.v[0].numpy())  # after the reset, as Lava's monitor sees v
        s_ours.append(s[0].numpy())
    assert s_lava.sum() > 0
    np.testing.assert_array_equal(s_lava, np.stack(s_ours))
    np.testing.assert_allclose(v_lava, np.stack(v_ours), rtol=0, atol=1e-12)
