"""lava-dl's netx loader itself, from the PyPI wheel, against the emulator.

The lava-dl 0.6.0 wheel is fetched at test time and cached (``tests/lava_dl_data.py``);
its ``lava.lib.dl`` package runs in a separate Python process on this environment's Lava
(lava-dl is not a dependency of the toolkit). Its slayer object-detection module, which
needs OpenCV and torchvision and plays no part in netx, is replaced by an empty module in
that process. Two files go through ``netx.hdf5.Network`` (``fixed_pt``):

* lava-dl's own NTIDIGITS export (current decay, per-neuron delays), its ``average``
  layer dropped with ``num_layers = 5`` as lava-dl's test does;
* a network with per-neuron and per-synapse delays written by :func:`write_netx`.

netx's output port must equal ``IntegerEmulator(delay=1)`` at every step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from hw_tests.test_lava_delays import delayed_net
from lava_models.netx import read_netx, write_netx
from quantization.emulator import IntegerEmulator
from tests.lava_dl_data import lava_dl_netx_dir, lava_dl_package_root

RUN_NETX = textwrap.dedent(
    """
    import sys, types
    import numpy as np
    name = "lava.lib.dl.slayer.object_detection"
    sys.modules[name] = types.ModuleType(name)
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    for path, inp, layers, out in zip(*[iter(sys.argv[1:])] * 4):
        data = np.load(inp)
        steps = data.shape[-1]
        net = netx.hdf5.Network(net_config=path, num_layers=int(layers) or None)
        src = io.source.RingBuffer(data=data)
        sink = io.sink.RingBuffer(shape=net.out_layer.shape, buffer=steps)
        src.s_out.connect(net.inp)
        net.out.connect(sink.a_in)
        try:
            net.run(condition=RunSteps(num_steps=steps),
                    run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            np.save(out, sink.data.get())
        finally:
            net.stop()
    """
)


def _emulate(qnet, spikes: np.ndarray, node: str) -> np.ndarray:
    """The emulator's spikes of ``node``, ``[neurons, T]``, on input ``[in, T]``."""
    steps = spikes.shape[1]
    frames = torch.as_tensor(spikes.T.reshape(steps, 1, *qnet.input_shape), dtype=torch.float32)
    res = IntegerEmulator(qnet, delay=1).run(frames, record=(node,))
    return torch.stack(res.records[node])[:, 0].numpy().T


def test_netx_itself_equals_the_emulator_ondelayed_networks(tmp_path):
    root = lava_dl_netx_dir() / "gts" / "ntidigits"
    steps = 300
    ntidigits = np.load(root / "input.npy")[:, :steps]
    np.save(tmp_path / "ntidigits_in.npy", ntidigits)
    ours = delayed_net()
    write_netx(ours, tmp_path / "ours.net")
    x = (np.random.default_rng(4).random((9, 60)) < 0.35).astype(np.float64)
    np.save(tmp_path / "ours_in.npy", x)
    args = [str(root / "ntidigits.net"), str(tmp_path / "ntidigits_in.npy"), "5",
            str(tmp_path / "ntidigits_out.npy"), str(tmp_path / "ours.net"),
            str(tmp_path / "ours_in.npy"), "0", str(tmp_path / "ours_out.npy")]  # fmt: skip
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(lava_dl_package_root()), repo])
    proc = subprocess.run([sys.executable, "-c", RUN_NETX, *args], env=env,
                          capture_output=True, text=True, timeout=540)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    netx_out = np.load(tmp_path / "ntidigits_out.npy")
    qnet = read_netx(root / "ntidigits.net", num_layers=5)
    np.testing.assert_array_equal(_emulate(qnet, ntidigits, "layer4"), netx_out)
    assert netx_out.sum() > 1000

    netx_out = np.load(tmp_path / "ours_out.npy")
    again = read_netx(tmp_path / "ours.net")
    np.testing.assert_array_equal(_emulate(again, x, again.nodes[-1].name), netx_out)
    assert 0 < netx_out.sum() < netx_out.size
