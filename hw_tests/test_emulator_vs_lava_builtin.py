"""The integer emulator equals Lava's built-in Dense + LIF (``fixed_pt``) bit for bit.

Float chains of hard-reset ``LinearSTLLR`` layers are quantized with PTQ (4, 6 and
8-bit weights), exported with :mod:`lava_models.builtin` and run on random binary
spikes. At every step, the spikes, ``u`` and ``v`` of every layer must be identical
in three independent implementations:

* Lava's ``PyDenseModelBitAcc`` + ``PyLifModelBitAcc`` (``run_builtin``);
* ``IntegerEmulator(qnet, delay=1)`` on torch;
* a numpy loop over :mod:`quantization.loihi`'s kernels fed with the *exported* Dense
  arguments (``2m``, ``weight_exp = −1``), which checks the export trick on its own.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

import lava_models.runtime
from hw_tests.parity import dense_chain_qnet
from hw_tests.parity import emulate_delay1 as _emulate
from lava_models.builtin import (
    UnsupportedNodeError,
    check_builtin_supported,
    export_dense_weights,
    lif_kwargs,
    run_builtin,
)
from quantization.loihi import (
    LIFFixedParams,
    LIFFixedState,
    dense_accumulate,
    dense_weights,
    lif_int_step,
)
from quantization.network import QNetwork, Readout, SpikingLayer

T = 30


def _quantized(arch: str, seed: int, bits: int):
    """PTQ of a hard-reset ``SpikingChain`` (``hw_tests.parity.DENSE_ARCHS``) and its
    binary input ``[T, in]``."""
    return dense_chain_qnet(arch, seed, bits, steps=T)


def _numpy_reference(qnet: QNetwork, x: np.ndarray) -> dict:
    """Lava's fixed Dense/LIF semantics on numpy, from the exported process arguments."""
    layers = []
    for n in qnet.nodes:
        d, lk = export_dense_weights(n), lif_kwargs(n)
        mixed = d["sign_mode"].name == "MIXED"
        w = dense_weights(d["weights"], d["num_weight_bits"], mixed=mixed)
        p = LIFFixedParams(lk["du"], lk["dv"], lk["vth"], lk["bias_mant"].astype(np.int64),
                           int(lk["bias_exp"][0]), "hard")  # fmt: skip
        zeros = np.zeros(lk["shape"], dtype=np.int64)
        layers.append([n, w, d["weight_exp"], p, LIFFixedState(zeros, zeros), zeros])
    rec = {n.name: {"s": [], "u": [], "v": []} for n in qnet.nodes}
    for t in range(x.shape[0]):
        outs = {"input": x[t]}
        for layer in layers:
            n, w, w_exp, p, state, a_prev = layer
            s, _, state = lif_int_step(state, a_prev, p)  # Dense sends last step's sum
            layer[4], layer[5] = state, dense_accumulate(w, outs[n.inputs[0]], w_exp)
            outs[n.name] = s.astype(np.int64)
            for key, val in (("s", outs[n.name]), ("u", state.u), ("v", state.v)):
                rec[n.name][key].append(np.asarray(val, dtype=np.int64))
    return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}


def _assert_equal(ours: dict, lava: dict, label: str) -> None:
    for name, rec in lava.items():
        for key in ("s", "u", "v"):
            msg = f"{label}: {name}.{key}"
            np.testing.assert_array_equal(ours[name][key], rec[key], err_msg=msg)


CASES = [("2layer", seed, bits) for seed in (0, 1) for bits in (4, 6, 8)]
CASES += [("3layer", seed, bits) for seed in (2, 3) for bits in (4, 8)] + [("3layer", 4, 6)]


@pytest.mark.parametrize("arch,seed,bits", CASES)
def test_emulator_equals_lava_builtin(arch, seed, bits):
    qnet, x = _quantized(arch, seed, bits)
    check_builtin_supported(qnet)
    lava = run_builtin(qnet, x)
    for n in qnet.nodes:  # a non-trivial run in every layer: some spikes, not all
        s = lava[n.name]["s"]
        assert 0 < s.sum() < s.size, f"{n.name}: {int(s.sum())} spikes of {s.size}"
        assert lava[n.name]["v"].any() and lava[n.name]["u"].any()
    _assert_equal(_emulate(qnet, x), lava, "torch emulator")
    _assert_equal(_numpy_reference(qnet, x), lava, "numpy kernels")


@pytest.mark.parametrize("dus", [(1024, 300), (0, 3000), (2048, 4095)])
def test_current_based_lif_equals_lava_builtin(dus):
    """A current-based LIF (CuLIF: the current u keeps memory with Lava's decay ``du``)
    maps onto Lava's built-in ``LIF`` unchanged: spikes, u and v equal at every step."""
    import dataclasses

    qnet, x = _quantized("2layer", 0, 8)
    # a current-based layer's bias enters its current; Lava's LIF adds bias to v, so the
    # export refuses a bias there (test below): these layers have none
    nodes = tuple(dataclasses.replace(n, du=du, bias_mant=None if du < 4095 else n.bias_mant)
                  for n, du in zip(qnet.nodes, dus, strict=True))  # fmt: skip
    qnet = dataclasses.replace(qnet, nodes=nodes)
    lava = run_builtin(qnet, x)
    for n in qnet.nodes:
        s = lava[n.name]["s"]
        assert 0 < s.sum() < s.size, f"{n.name}: {int(s.sum())} spikes of {s.size}"
    # the current carries memory: it is not the last step's input alone
    u0 = lava[qnet.nodes[0].name]["u"]
    assert dus[0] == 4095 or (u0[1:] != 0).sum() > (u0[1:] == 0).sum()
    _assert_equal(_emulate(qnet, x), lava, "torch emulator")
    _assert_equal(_numpy_reference(qnet, x), lava, "numpy kernels")


def test_current_based_layer_with_bias_is_refused():
    import dataclasses

    qnet, _ = _quantized("2layer", 0, 8)
    n = qnet.nodes[0]
    qnet = dataclasses.replace(qnet, nodes=(dataclasses.replace(n, du=1000), *qnet.nodes[1:]))
    with pytest.raises(UnsupportedNodeError, match="current-based layer .du = 1000. with a bias"):
        check_builtin_supported(qnet)


def test_cases_cover_bias_and_weight_ranges():
    """The parametrised networks exercise biases, leaks and the full mantissa range."""
    bias_exps = set()
    for arch, seed, bits in CASES:
        qnet, _ = _quantized(arch, seed, bits)
        top = 1 << (bits - 1)
        for n in qnet.nodes:
            assert n.weight_bits == bits
            assert top // 2 <= int(n.weight.abs().max()) <= top  # the top mantissa bit is used
            assert n.bias_mant is not None and n.bias_mant.any()
            bias_exps.add(n.bias_exp)
        assert len({n.dv for n in qnet.nodes}) == len(qnet.nodes)
    assert bias_exps >= {0, 1}  # bias_mant << bias_exp with a non-zero exponent, too


def _layer(name="fc0", inputs=("input",), w=None, **kw):
    w = torch.tensor([[3, -2, 1], [0, 5, -7]]) if w is None else w
    kw = {"reset": "hard", **kw}
    return SpikingLayer(name, inputs, "dense", w, -4, 300, 6, **kw)


@pytest.mark.parametrize("sign", [1, -1], ids=["non-negative", "non-positive"])
def test_single_sign_weights_stay_exact(sign):
    """Lava would auto-detect EXCITATORY/INHIBITORY here; the export forces MIXED."""
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode

    magnitude = torch.tensor([[128, 128, 1], [0, 128, 7], [128, 128, 4]])
    w = magnitude.clamp(max=127) if sign > 0 else -magnitude  # the full 8-bit range
    bias = torch.tensor([100, -50, 0]) if sign > 0 else torch.tensor([2000, 1900, 2000])
    qnet = QNetwork((_layer(w=w, bias_mant=bias, bias_exp=1),), (3,), 3)
    d = export_dense_weights(qnet.nodes[0])
    assert d["sign_mode"] is SignMode.MIXED
    detected = determine_sign_mode(d["weights"])  # what Lava would pick without the argument
    assert detected is (SignMode.EXCITATORY if sign > 0 else SignMode.INHIBITORY)
    if sign < 0:  # INHIBITORY clips −2m to [0, 255]: two −128s in a row sum to −255, not −256
        assert (clip_weights(d["weights"], detected, 8) != d["weights"]).any()
    x = (np.random.default_rng(5).random((T, 3)) < 0.5).astype(np.int64)
    lava = run_builtin(qnet, x)
    assert 0 < lava["fc0"]["s"].sum() < lava["fc0"]["s"].size
    _assert_equal(_emulate(qnet, x), lava, "torch emulator")
    _assert_equal(_numpy_reference(qnet, x), lava, "numpy kernels")


@pytest.mark.parametrize("bits", range(2, 9))
def test_export_trick_is_exact(bits):
    """``2m`` survives MIXED clip + 1-bit truncation; ``weight_exp = −1`` gives ``Σ m·s``."""
    rng = np.random.default_rng(bits)
    top = 1 << (bits - 1)
    m = rng.integers(-top, top, size=(40, 64))
    m[0, :2] = (-top, top - 1)
    node = _layer(w=torch.as_tensor(m))
    d = export_dense_weights(node)
    w = dense_weights(d["weights"], d["num_weight_bits"], mixed=True)
    np.testing.assert_array_equal(w, 2 * m)
    s = (rng.random((200, 64)) < 0.5).astype(np.int64)
    for row in s:
        np.testing.assert_array_equal(dense_accumulate(w, row, d["weight_exp"]), m @ row)


@pytest.fixture
def no_lava_start(monkeypatch):
    """Fail if the exporter gets as far as importing/starting Lava."""

    def forbidden():
        raise AssertionError("Lava was imported before the network was validated")

    monkeypatch.setattr(lava_models.runtime, "import_lava", forbidden)
    before = set(mp.active_children())
    yield
    assert set(mp.active_children()) == before


def _unsupported():
    conv_w = torch.ones(2, 1, 3, 3, dtype=torch.int64)
    yield "soft reset", (_layer("fc_soft", reset="soft"),), "fc_soft"
    yield "conv", (SpikingLayer("conv1", ("input",), "conv", conv_w, 0, 0, 4, "hard"),), "conv1"
    rec = torch.eye(2, dtype=torch.int64)
    yield "recurrent", (_layer("rnn", weight_rec=rec),), "rnn"
    yield "9 bits", (_layer("wide", weight_bits=9),), "wide"
    big = torch.tensor([[200, 0, 0], [0, 1, 1]])
    yield "mantissa", (_layer("big", w=big),), "big"
    head = Readout("head", ("fc0",), torch.ones(2, 2, dtype=torch.int64), -3, 4096)
    yield "readout", (_layer(), head), "head"
    yield "skip", (_layer(), _layer("fc1", inputs=("nowhere",))), "fc1"


@pytest.mark.parametrize("label,nodes,bad", list(_unsupported()), ids=lambda v: str(v)[:12])
def test_unsupported_nodes_raise_before_lava(no_lava_start, label, nodes, bad):
    qnet = QNetwork(tuple(nodes), (3,), 2)
    x = np.zeros((4, 3), dtype=np.int64)
    with pytest.raises(UnsupportedNodeError, match=repr(bad)):
        run_builtin(qnet, x)


def test_non_binary_input_raises(no_lava_start):
    qnet = QNetwork((_layer(),), (3,), 2)
    with pytest.raises(ValueError, match="binary"):
        run_builtin(qnet, np.full((4, 3), 2))
    with pytest.raises(ValueError, match=r"\[T, 3\]"):
        run_builtin(qnet, np.zeros((4, 5), dtype=np.int64))
