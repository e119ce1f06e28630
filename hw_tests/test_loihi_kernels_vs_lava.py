"""The integer kernels of quantization.loihi equal Lava's fixed_pt Dense + LIF bit for bit.

A RingBuffer of random spikes drives Dense → LIF in Lava (``fixed_pt``); the same
inputs run through ``dense_weights``/``dense_accumulate``/``lif_fixed_step`` on numpy
arrays and on torch tensors (a batch of identical copies). u, v and the spikes
must be identical at every step, including Dense's one-step delay.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantization.loihi import (
    LIFFixedParams,
    LIFFixedState,
    dense_accumulate,
    dense_weights,
    lif_fixed_step,
)


def _lava_run(spikes, weights, weight_exp, num_weight_bits, p: LIFFixedParams):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    n_in, steps = spikes.shape
    n_out = weights.shape[0]
    src = RingBuffer(data=spikes.astype(np.int32))
    dense = Dense(weights=weights, weight_exp=weight_exp, num_weight_bits=num_weight_bits)
    lif = LIF(
        shape=(n_out,), du=p.du, dv=p.dv, vth=p.vth, bias_mant=p.bias_mant, bias_exp=p.bias_exp
    )
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    monitors = {}
    for name in ("u", "v"):
        monitors[name] = Monitor()
        monitors[name].probe(getattr(lif, name), steps)
    monitors["s"] = Monitor()
    monitors["s"].probe(lif.s_out, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = {}
        for name, mon in monitors.items():
            data = mon.get_data()
            proc = lif.name
            key = "s_out" if name == "s" else name
            out[name] = np.asarray(data[proc][key]).astype(np.int64)
    finally:
        lif.stop()
    return out


def _kernel_run(spikes, weights, weight_exp, num_weight_bits, p, backend):
    w = dense_weights(np.asarray(weights), num_weight_bits, mixed=True)
    n_out = weights.shape[0]
    if backend == "torch":
        w = torch.as_tensor(w)
        batch = 3
        s_in = torch.as_tensor(spikes.T).unsqueeze(1).expand(-1, batch, -1)  # [T, B, in]
        zeros = torch.zeros(batch, n_out, dtype=torch.int64)
        p = p._replace(bias_mant=torch.as_tensor(p.bias_mant))
    else:
        s_in = spikes.T
        zeros = np.zeros(n_out, dtype=np.int64)
    state = LIFFixedState(zeros, zeros)
    a_prev = zeros  # Dense sends last step's accumulation
    rec = {"u": [], "v": [], "s": []}
    for t in range(spikes.shape[1]):
        s, state = lif_fixed_step(state, a_prev, p)
        a_prev = dense_accumulate(w, s_in[t], weight_exp)
        for name, value in (("u", state.u), ("v", state.v), ("s", s)):
            arr = value.numpy() if backend == "torch" else value
            rec[name].append(arr.astype(np.int64))
    return {k: np.stack(v) for k, v in rec.items()}


@pytest.mark.parametrize(
    "weight_exp,num_weight_bits,du,dv", [(0, 8, 400, 300), (-2, 7, 4095, 0), (1, 6, 0, 4095)]
)
def test_kernels_equal_lava_fixed_pt(weight_exp, num_weight_bits, du, dv):
    rng = np.random.default_rng(7)
    n_in, n_out, steps = 12, 6, 25
    spikes = (rng.random((n_in, steps)) < 0.4).astype(np.int64)
    weights = rng.integers(-300, 300, size=(n_out, n_in))  # beyond 8 bits: clipping matters
    p = LIFFixedParams(
        du=du, dv=dv, vth=40, bias_mant=rng.integers(-20, 60, size=n_out), bias_exp=2
    )
    lava = _lava_run(spikes, weights, weight_exp, num_weight_bits, p)
    assert lava["s"].sum() > 0 and (lava["s"] == 0).any()
    for backend in ("numpy", "torch"):
        ours = _kernel_run(spikes, weights, weight_exp, num_weight_bits, p, backend)
        if backend == "torch":
            for name in ours:
                assert (ours[name] == ours[name][:, :1]).all()  # batch copies agree
                ours[name] = ours[name][:, 0]
        for name in ("u", "v", "s"):
            np.testing.assert_array_equal(ours[name], lava[name], err_msg=f"{backend} {name}")
