"""The decoder kinds of the optical-flow network in Lava ``fixed_pt``, bit-exact with the
emulator: a transposed-convolution spiking layer (plastic, learning from host signals)
and the channel concatenation of a skip path (docs/node_kinds.md).

Network (hand-made integers, 2×8×8 input): conv stride 2 → [4, 4, 4]; deconv stride 2,
padding 1, output_padding 1 → [3, 8, 8]; a 1×1 conv skip path from the input → [2, 8, 8];
concat → [5, 8, 8]; global sum → [5]; readout → [3]. Outputs of every node at every
step, the learned deconv and readout weights and the final traces are compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hw_tests.parity_references import emulate, integer_signals
from lava_models.errors import UnsupportedNodeError
from lava_models.exporter import output_shapes
from lava_models.runner import run_lava
from quantization.learning_formats import LearningSpec, psi_table
from quantization.network import GlobalSumPool, InputFormat, QNetwork, Readout, SpikingLayer
from quantization.nodes import Concat


def _spec(seed: int) -> LearningSpec:
    return LearningSpec(lam_pre=3500, lam_post=2048, a_pre=64, a_post=-32, a_frac=6, p_frac=3,
                        q_frac=5, l_exp=-6, lr_mant=90, lr_shift=12, trace_bits=7,
                        trace_rounding="stochastic", w_min=-128, w_max=127, seed=seed)  # fmt: skip


def _net() -> QNetwork:
    g = torch.Generator().manual_seed(4)

    def w(*shape, top=60):
        return torch.randint(-top, top + 1, shape, generator=g)

    e = -6
    psi = psi_table("d", 2.0**e / 64)
    nodes = (
        SpikingLayer("down", ("input",), "conv", w(4, 2, 3, 3), e, 800, 40, "soft",
                     stride=(2, 2), padding=(1, 1)),
        SpikingLayer("up", ("down",), "deconv", w(4, 3, 3, 3), e, 800, 30, "soft",
                     bias_mant=w(3, top=300), stride=(2, 2), padding=(1, 1),
                     output_padding=(1, 1), psi=psi, learning=_spec(7)),
        SpikingLayer("skip", ("input",), "conv", w(2, 2, 1, 1), e, 800, 20, "hard"),
        Concat("cat", ("up", "skip")),
        GlobalSumPool("gsum", ("cat",)),
        Readout("out", ("gsum",), w(3, 5, top=20), e, 4096, learning=_spec(8)),
    )  # fmt: skip
    return QNetwork(nodes, (2, 8, 8), 3, InputFormat(0, 0, 3))


def test_shapes():
    shapes = output_shapes(_net())
    assert shapes["up"] == (3, 8, 8) and shapes["cat"] == (5, 8, 8) and shapes["out"] == (3,)


def test_three_way_concat_is_refused_by_lava():
    net = _net()
    bad = QNetwork((*net.nodes[:3], Concat("cat", ("up", "skip", "skip"))), (2, 8, 8), 5)
    with pytest.raises(UnsupportedNodeError, match="'cat'.*exactly 2 inputs"):
        output_shapes(bad)


def test_deconv_and_concat_in_lava_equal_the_emulator():
    qnet = _net()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4, (2, 10, 2, 8, 8)) * (rng.random((2, 10, 2, 8, 8)) < 0.5)
    signals = integer_signals(qnet, ("up", "out"), 10, seed=3, shape_prefix=(2,))
    res = run_lava(qnet, frames, signals, timeout_s=120)
    ref = emulate(qnet, frames, signals)
    for n in qnet.nodes:
        got = res.outputs[n.name].reshape(ref.outputs[n.name].shape)
        np.testing.assert_array_equal(got, ref.outputs[n.name], err_msg=n.name)
    for name in ("up", "skip"):
        s = ref.outputs[name]
        assert 0 < s.sum() < s.size, f"{name}: {int(s.sum())} spikes of {s.size}"
    for name in ("up", "out"):
        w0 = qnet.node(name).weight.numpy()
        learned = ref.emu.weights(name)["w"].numpy()
        assert (learned != w0).any(), f"{name} did not learn"
        np.testing.assert_array_equal(res.state[name]["weights"], learned, err_msg=name)
    st = ref.emu.state["up"]
    np.testing.assert_array_equal(res.state["up"]["p"], st.traces.p[0].numpy())
    np.testing.assert_array_equal(res.state["up"]["q"], st.traces.q[0].numpy())
    np.testing.assert_array_equal(res.state["up"]["v"], st.v[0].numpy())
