"""Conv networks on Lava's built-in ``Conv`` + ``LIF`` (``fixed_pt``) equal the emulator exactly.

Float models of hard-reset ``Conv2dSTLLR`` layers (padding 1; stride 2 without padding;
non-square kernels, strides, paddings and inputs; groups; dilation), some followed by a
``LinearSTLLR`` that reads the flattened conv output, are quantized with PTQ (4, 6 and
8-bit weights), exported with :mod:`lava_models.builtin` and run on random binary
spikes ``[T, C, H, W]``. At every step the spikes, ``u`` and ``v`` of every layer must
be identical in Lava and in ``IntegerEmulator(qnet, delay=1)``.

The layout conversion (:func:`~lava_models.builtin.lava_layout`) is also checked
without Lava: round trips, and Lava's own scipy convolution on converted arrays equals
torch's ``conv2d`` on ours.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp

import numpy as np
import pytest
import torch

import lava_models.runtime
from hw_tests.parity import ConvChain, conv_chain_qnet
from hw_tests.parity import emulate_delay1 as _emulate
from hw_tests.parity import hard_lif as _lif
from lava_models.builtin import (
    UnsupportedNodeError,
    check_builtin_supported,
    export_conv_weights,
    lava_layout,
    node_shapes,
    run_builtin,
    to_lava_shape,
)
from quantization.network import Pool, QNetwork, Readout, SpikingLayer
from quantization.ptq import PTQConfig, quantize_model

T = 20


def _quantized(arch: str, seed: int, bits: int):
    """PTQ of a hard-reset ``ConvChain`` (``hw_tests.parity.CONV_ARCHS``) and its binary
    input ``[T, C, H, W]``."""
    return conv_chain_qnet(arch, seed, bits, steps=T)


CASES = [("pad1-stride2-fc", 0, bits) for bits in (4, 6, 8)]
CASES += [("asym-groups-dilation", 1, 6), ("asym-groups-dilation", 2, 8)]


@pytest.mark.parametrize("arch,seed,bits", CASES)
def test_emulator_equals_lava_builtin_conv(arch, seed, bits):
    qnet, x = _quantized(arch, seed, bits)
    check_builtin_supported(qnet)
    top = 1 << (bits - 1)
    for n in qnet.nodes:  # the export sees the full mantissa range and real biases
        assert n.weight_bits == bits and top // 2 <= int(n.weight.abs().max()) <= top
        assert n.bias_mant is not None and n.bias_mant.any()
    lava = run_builtin(qnet, x)
    ours = _emulate(qnet, x)
    shapes = node_shapes(qnet)
    for n in qnet.nodes:
        s = lava[n.name]["s"]
        assert s.shape == (T, *shapes[n.name])
        assert 0 < s.sum() < s.size, f"{n.name}: {int(s.sum())} spikes of {s.size}"
        assert lava[n.name]["v"].any() and lava[n.name]["u"].any()
        for key in ("s", "u", "v"):
            msg = f"{arch} seed {seed} {bits} bits: {n.name}.{key}"
            np.testing.assert_array_equal(ours[n.name][key], lava[n.name][key], err_msg=msg)


def test_cases_cover_bias_exponents():
    """The per-channel bias is broadcast with ``bias_mant << bias_exp``, exponent 0 and 1."""
    exps = {n.bias_exp for arch, seed, bits in CASES for n in _quantized(arch, seed, bits)[0].nodes}
    assert exps >= {0, 1}


def test_dense_on_image_input():
    """A dense first layer reads the (W, H, C) input through ``flatten()``, columns permuted."""
    torch.manual_seed(7)
    model = ConvChain((2, 5, 4), [], [(12, _lif(1.0, 0.5)), (6, _lif(0.0, 0.6))])
    with torch.no_grad():
        for layer in model.fcs:
            layer.bias.uniform_(-0.6, 0.5)
            layer.gain.fill_(2.0)
    x = (torch.rand(T, 1, 2, 5, 4, generator=torch.Generator().manual_seed(3)) < 0.35).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=6))
    xi = x[:, 0].numpy().astype(np.int64)
    lava = run_builtin(qnet, xi)
    ours = _emulate(qnet, xi)
    for n in qnet.nodes:
        assert 0 < lava[n.name]["s"].sum() < lava[n.name]["s"].size
        for key in ("s", "u", "v"):
            np.testing.assert_array_equal(ours[n.name][key], lava[n.name][key], err_msg=key)


def test_conv_ignores_weight_exp_and_keeps_weights():
    """``PyConvModelFixed``: no weight_exp, no num_weight_bits truncation, no weight clip."""
    lava_models.runtime.import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.source import RingBuffer

    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.integers(-128, 128, size=(3, 2, 3, 2)))
    w[0, 0, 0, :] = torch.tensor([-128, 127])
    w[1, 1, 2, :] = torch.tensor([1, -1])  # odd and LSB-only weights survive
    node = SpikingLayer("c", ("input",), "conv", w, -5, 100, 4, "hard", stride=(2, 1),
                        padding=(1, 0))  # fmt: skip
    in_shape = (2, 6, 5)
    x = (rng.random((2, *in_shape)) < 0.5).astype(np.int64)
    src = RingBuffer(data=np.moveaxis(lava_layout(x, "neurons"), 0, -1).astype(np.int32))
    args = export_conv_weights(node, in_shape)
    convs = [Conv(**args), Conv(**{**args, "weight_exp": 3, "num_weight_bits": 4})]
    for c in convs:
        src.s_out.connect(c.s_in)
    try:
        src.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = [lava_layout(c.a_buf.get().astype(np.int64), "neurons", inverse=True) for c in convs]
    finally:
        src.stop()
    ref = torch.nn.functional.conv2d(torch.as_tensor(x[:1]).double(), w.double(), None,
                                     node.stride, node.padding)[0].long().numpy()  # fmt: skip
    np.testing.assert_array_equal(got[0], ref)
    np.testing.assert_array_equal(got[1], ref)


# --- no Lava -------------------------------------------------------------------------------


def test_layout_round_trips():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 9, size=(4, 3, 5, 6))  # [T, C, H, W]
    xl = lava_layout(x, "neurons")
    assert xl.shape == (4, 6, 5, 3) and xl[2, 4, 1, 0] == x[2, 0, 1, 4]
    np.testing.assert_array_equal(lava_layout(xl, "neurons", inverse=True), x)
    w = rng.integers(-128, 128, size=(4, 3, 3, 2))  # [C_out, C_in, kH, kW]
    wl = lava_layout(w, "conv_weight")
    assert wl.shape == (4, 2, 3, 3)  # (C_out, kW, kH, C_in)
    assert wl[1, 0, 0, 2] == w[1, 2, 2, 1]  # flipped: L[o, i, j, c] = W[o, c, kH−1−j, kW−1−i]
    np.testing.assert_array_equal(lava_layout(wl, "conv_weight", inverse=True), w)
    d = rng.integers(-128, 128, size=(7, 3 * 5 * 6))
    dl = lava_layout(d, "dense_columns", in_shape=(3, 5, 6))
    back = lava_layout(dl, "dense_columns", inverse=True, in_shape=(3, 5, 6))
    np.testing.assert_array_equal(back, d)
    # the permuted columns read Lava's row-major flatten of (W, H, C) as ours reads [C, H, W]
    np.testing.assert_array_equal(dl @ xl[0].reshape(-1), d @ x[0].reshape(-1))
    assert to_lava_shape((3, 5, 6)) == (6, 5, 3) and to_lava_shape((30,)) == (30,)


@pytest.mark.parametrize(
    "c_in,c_out,k,stride,padding,dilation,groups",
    [(2, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1), (2, 4, (3, 2), (2, 1), (1, 0), (1, 1), 1),
     (4, 4, (3, 3), (1, 2), (0, 2), (2, 1), 2), (3, 6, (1, 3), (2, 2), (0, 1), (1, 1), 3)],
)  # fmt: skip
def test_lava_convolution_of_converted_arrays_equals_torch(
    c_in, c_out, k, stride, padding, dilation, groups
):
    """Lava's own conv (scipy, the fixed model's code) on ``lava_layout`` arrays = torch's."""
    from lava.proc.conv import utils  # numpy + scipy only: starts nothing

    rng = np.random.default_rng(sum(k) + groups)
    w = torch.as_tensor(rng.integers(-128, 128, size=(c_out, c_in // groups, *k)))
    x = torch.as_tensor((rng.random((c_in, 9, 7)) < 0.5).astype(np.int64))
    node = SpikingLayer("c", ("input",), "conv", w, 0, 0, 1, "hard", stride=stride,
                        padding=padding, dilation=dilation, groups=groups)  # fmt: skip
    args = export_conv_weights(node, tuple(x.shape))
    out = utils.conv(lava_layout(x.numpy(), "neurons"), args["weight"], args["weight"].shape[1:3],
                     args["stride"], args["padding"], args["dilation"], args["groups"])  # fmt: skip
    ref = torch.nn.functional.conv2d(x[None].double(), w.double(), None, stride, padding,
                                     dilation, groups)[0].long().numpy()  # fmt: skip
    np.testing.assert_array_equal(lava_layout(out, "neurons", inverse=True), ref)


@pytest.fixture
def no_lava_start(monkeypatch):
    """Fail if the exporter gets as far as importing/starting Lava."""

    def forbidden():
        raise AssertionError("Lava was imported before the network was validated")

    monkeypatch.setattr(lava_models.runtime, "import_lava", forbidden)
    before = set(mp.active_children())
    yield
    assert set(mp.active_children()) == before


def _conv(name="conv0", inputs=("input",), c_in=2, c_out=3, **kw):
    kw = {"reset": "hard", "padding": (1, 1), **kw}
    w = torch.ones(c_out, c_in // kw.get("groups", 1), 3, 3, dtype=torch.int64)
    return SpikingLayer(name, inputs, "conv", w, -4, 300, 6, **kw)


def _dense(name, inputs, n_in, n_out=2):
    w = torch.ones(n_out, n_in, dtype=torch.int64)
    return SpikingLayer(name, inputs, "dense", w, -4, 300, 6, reset="hard")


def _unsupported():
    yield "soft reset", (_conv("c_soft", reset="soft"),), "c_soft"
    yield "conv after dense", (_dense("fc", ("input",), 32), _conv("c1", ("fc",))), "c1"
    yield "pool", (_conv(), Pool("pool", ("conv0",), "max", 2)), "pool"
    head = Readout("head", ("conv0",), torch.ones(2, 48, dtype=torch.int64), -3, 4096)
    yield "readout", (_conv(), head), "head"
    yield "channels", (_conv("c_ch", c_in=3),), "c_ch"
    yield "9 bits", (_conv("c9", weight_bits=9),), "c9"
    yield "flatten size", (_conv(), _dense("fc_bad", ("conv0",), 47)), "fc_bad"
    big = dataclasses.replace(_conv("c_big"), weight=torch.full((3, 2, 3, 3), 200))
    yield "mantissa", (big,), "c_big"


@pytest.mark.parametrize("label,nodes,bad", list(_unsupported()), ids=lambda v: str(v)[:16])
def test_unsupported_conv_nodes_raise_before_lava(no_lava_start, label, nodes, bad):
    qnet = QNetwork(tuple(nodes), (2, 4, 4), 2)
    x = np.zeros((4, 2, 4, 4), dtype=np.int64)
    with pytest.raises(UnsupportedNodeError, match=repr(bad)):
        run_builtin(qnet, x)


def test_groups_are_supported_and_input_shape_checked(no_lava_start):
    qnet = QNetwork((_conv("cg", c_in=4, c_out=4, groups=2),), (4, 5, 5), 4)
    check_builtin_supported(qnet)
    assert node_shapes(qnet)["cg"] == (4, 5, 5)
    with pytest.raises(ValueError, match=r"\[T, 4, 5, 5\] \(or \[T, 100\]\)"):
        run_builtin(qnet, np.zeros((3, 4, 5, 6), dtype=np.int64))
    with pytest.raises(ValueError, match="binary"):
        run_builtin(qnet, np.full((3, 4, 5, 5), 2))
