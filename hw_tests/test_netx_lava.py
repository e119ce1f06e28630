"""netx files run in Lava bit-identically to the emulator.

* A written file, read back with :func:`read_netx`, runs on Lava's built-in Dense/Conv +
  LIF (:func:`lava_models.builtin.run_builtin`) exactly as
  ``IntegerEmulator(original, delay=1)`` does (s, u, v of every layer, every step).
* The Lava half of :func:`netx_dense_synapse` (sign-mode detection, clip, truncation
  of the shifted weights) equals lava-nc's own ``weightutils``.
* If lava-dl happens to be importable (it is not a dependency), the file is also
  loaded with ``lava.lib.dl.netx.hdf5.Network`` itself and must give the same values.
"""

from __future__ import annotations

import numpy as np
import pytest

from lava_models.builtin import run_builtin
from lava_models.netx import NetxInexactError, netx_dense_synapse, read_netx, write_netx
from tests.test_netx import (
    assert_records_equal,
    build_network,
    emulate_lockstep,
    snap_bias_to_netx,
)


@pytest.mark.parametrize(
    "case,seed,bits",
    [("dense", 0, 8), ("dense", 1, 4), ("conv", 0, 8), ("image_dense", 0, 6)],
)
def test_read_file_runs_on_lava_builtin(tmp_path, case, seed, bits):
    qnet, x = build_network(case, seed, bits)
    qnet = snap_bias_to_netx(qnet)
    path = tmp_path / f"{case}.net"
    write_netx(qnet, path)
    lava = run_builtin(read_netx(path), x)
    for name, rec in lava.items():
        assert 0 < rec["s"].sum() < rec["s"].size, name
    assert_records_equal(emulate_lockstep(qnet, x, delay=1), lava, f"Lava builtin ({case})")


def test_weight_model_equals_lava_weightutils():
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(2000):
        lo = int(rng.choice([-256, -255, -128, -127, -64, -5, -1, 0, 1]))
        hi = int(rng.choice([-1, 0, 1, 63, 127, 128, 254, 255]))
        lo, hi = min(lo, hi), max(lo, hi)
        w = rng.integers(lo, hi + 1, size=(int(rng.integers(1, 4)), int(rng.integers(1, 6))))
        w.flat[0], w.flat[-1] = lo, hi
        if rng.random() < 0.3:
            w = w - (w % (1 << int(rng.integers(1, 4))))
        mats = [w] + ([np.minimum(w[:, :1], 0)] if rng.random() < 0.3 else [])
        try:
            syn = netx_dense_synapse(*mats)
        except NetxInexactError:
            continue
        for i, (m, ours) in enumerate(zip(mats, syn.weights, strict=True)):
            shifted = (np.asarray(m) << syn.shift).astype(np.int32)
            mode = determine_sign_mode(shifted)
            assert mode.name == syn.lava_sign_modes[i]
            lava = truncate_weights(clip_weights(shifted, mode, num_bits=8), mode,
                                    syn.num_weight_bits)  # fmt: skip
            np.testing.assert_array_equal(ours, lava)
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize("case", ["dense", "dense_rec", "conv"])
def test_real_netx_if_installed(tmp_path, case):
    netx_hdf5 = pytest.importorskip("lava.lib.dl.netx.hdf5", reason="lava-dl is not installed")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    qnet, x = build_network(case, 0, 6)
    qnet = snap_bias_to_netx(qnet)
    path = tmp_path / f"{case}.net"
    write_netx(qnet, path)
    steps = x.shape[0]
    net = netx_hdf5.Network(net_config=str(path))
    data = x.reshape(steps, *qnet.input_shape)
    data = data.transpose(0, 3, 2, 1) if data.ndim == 4 else data  # Lava: (W, H, C)
    src = RingBuffer(data=np.moveaxis(data, 0, -1).astype(np.int32))
    src.s_out.connect(net.inp)
    monitors = []
    for block in net.layers:
        mons = {}
        for key, var in (("s", block.neuron.s_out), ("u", block.neuron.u), ("v", block.neuron.v)):
            mons[key] = Monitor()
            mons[key].probe(var, steps)
        monitors.append((block, mons))
    lava = {}
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for node, (block, mons) in zip(qnet.nodes, monitors, strict=True):
            rec = {}
            for key, mon in mons.items():
                ((_, by_var),) = mon.get_data().items()
                ((_, values),) = by_var.items()
                a = np.asarray(values).astype(np.int64).reshape(steps, *block.neuron.s_out.shape)
                rec[key] = a.transpose(0, 3, 2, 1) if a.ndim == 4 else a
            lava[node.name] = rec
    finally:
        net.stop()
    assert_records_equal(emulate_lockstep(qnet, x, delay=1), lava, f"lava-dl netx ({case})")
