"""FSFN in fixed point (docs/flow.md, "Deployment"): the graded 1×1-conv flow head, the
×2 bilinear up-sampling kind, the model → float graph converter and PTQ.

References: ``F.interpolate`` (PyTorch's bilinear) for the up-sampling; integer loops
written here for the head's step; the dense readout's learning on the pixels flattened
into the batch for the 1×1-conv head's learning; a float-graph interpreter written here
(torch ops per spec) against ``FSFN.forward`` for the converter.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quantization.convert import FLOW_FEED_SCALE, FLOW_OUT_SCALE, to_float_graph
from quantization.emulator import IntegerEmulator
from quantization.float_nodes import FloatReadout, FloatSpiking
from quantization.flow_eval import adapt_flow_head, flow_error_signal
from quantization.layer_quantization import PTQConfig
from quantization.learning_formats import LearningSpec
from quantization.network import Add, Concat, QNetwork, Readout, Upsample2x
from quantization.nodes import ReadoutState, SynapseWeights, Traces, kind_of
from quantization.nodes.readout import output_shift
from quantization.ptq import quantize_model
from stllr.models.fsfn import FSFN
from stllr.neuron import lif_step

TINY = dict(encoder=(4, 6, 6, 6), decoder=(4, 4, 2), input_size=(32, 32))


# --- the up-sampling kind ------------------------------------------------------------------


def _up(shift: int = 0) -> Upsample2x:
    return Upsample2x("up", ("input",), shift)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (5, 4)])
def test_upsample_is_sixteen_times_torch_bilinear(hw):
    g = torch.Generator().manual_seed(sum(hw))
    x = torch.randint(-1000, 1000, (2, 3, *hw), generator=g)
    ref = F.interpolate(x.double(), scale_factor=2, mode="bilinear", align_corners=False) * 16
    kind = kind_of(_up())
    got = kind.forward(_up(), None, [x], None, 0, 0).out
    assert got.dtype == torch.int64
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=0)
    one = kind.forward(_up(), None, [x[1].numpy()], None, 0, 0).out  # one sample, numpy
    np.testing.assert_array_equal(one, ref[1].numpy().astype(np.int64))
    assert kind.out_shape(_up(), [tuple(x.shape[1:])]) == tuple(ref.shape[1:])


@pytest.mark.parametrize("shift", [1, 3, 5])
def test_upsample_shift_rounds_half_up(shift):
    x = torch.randint(-500, 500, (1, 2, 3, 4), generator=torch.Generator().manual_seed(shift))
    y16 = F.interpolate(x.double(), scale_factor=2, mode="bilinear", align_corners=False) * 16
    ref = torch.floor(y16 / 2**shift + 0.5)  # exact in float64: y16 is an integer
    got = kind_of(_up(shift)).forward(_up(shift), None, [x], None, 0, 0).out
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=0)
    assert int(got.abs().max()) <= kind_of(_up(shift)).value_bound(_up(shift), [500], None)


def test_upsample_ptq_scale_and_shift():
    kind = kind_of(_up())
    exact = kind.from_float(Upsample2x("u", ("f",)), {"f": 2.0**-8}, None)
    assert exact.node.shift == 0 and exact.scale == 2.0**-12
    coarse = kind.from_float(Upsample2x("u", ("f",), out_scale=2.0**-5), {"f": 2.0**-8}, None)
    assert coarse.node.shift == 7 and coarse.scale == 2.0**-5
    with pytest.raises(ValueError, match="u: out_scale"):
        kind.from_float(Upsample2x("u", ("f",), out_scale=0.1), {"f": 2.0**-8}, None)


# --- the 1×1-conv graded readout -------------------------------------------------------------


def _naive_head_step(o, x, w, bias, dv, a_shift):
    """One step of ``o = clip24(decay(o, dv) + shift(W·x) + bias)`` per pixel, with loops."""
    b_n, c_n, h_n, w_n = x.shape
    k_n = w.shape[0]
    out = np.zeros((b_n, k_n, h_n, w_n), dtype=np.int64)
    for b in range(b_n):
        for k in range(k_n):
            for i in range(h_n):
                for j in range(w_n):
                    a = sum(int(w[k, c, 0, 0]) * int(x[b, c, i, j]) for c in range(c_n))
                    if a_shift >= 0:
                        a = a * 2**a_shift
                    else:  # round half up: floor((a + 2^(r−1)) / 2^r)
                        a = (a + 2 ** (-a_shift - 1)) // 2**-a_shift
                    prev = int(o[b, k, i, j])
                    kept = abs(prev * (4096 - dv)) // 4096 * (1 if prev >= 0 else -1)
                    out[b, k, i, j] = min(max(kept + a + int(bias[k]), 1 - 2**23), 2**23 - 1)
    return out


@pytest.mark.parametrize("dv, a_shift", [(0, -4), (4096, 6), (700, 1), (0, -9)])
def test_conv_head_step_equals_loops(dv, a_shift):
    g = torch.Generator().manual_seed(dv + a_shift)
    w = torch.randint(-128, 128, (2, 5, 1, 1), generator=g)
    bias = torch.randint(-3000, 3000, (2,), generator=g)
    node = Readout("head", ("input",), w, -8, dv, bias, 0, a_shift=a_shift)
    emu = IntegerEmulator(QNetwork((node,), (5, 3, 4), 2))
    o = np.zeros((2, 2, 3, 4), dtype=np.int64)
    top = 2000 if a_shift < 0 else 20  # mostly inside the 24-bit range
    for _ in range(4):
        x = torch.randint(-top, top, (2, 5, 3, 4), generator=g)
        got = emu._forward(x)["head"]
        o = _naive_head_step(o, x.numpy(), w.numpy(), bias.numpy(), dv, a_shift)
        np.testing.assert_array_equal(got.numpy(), o)
    assert emu.logit_scale == 2.0 ** (-8 - a_shift)


def test_conv_head_learns_as_a_dense_readout_over_pixels():
    """The 1×1-conv head's S-TLLR step sums over samples and pixels: it equals the dense
    readout's step with the pixels as extra samples (same random stream: the weight's flat
    index order is the same)."""
    g = torch.Generator().manual_seed(0)
    spec = LearningSpec(lam_pre=3500, lam_post=2048, a_pre=64, a_post=0, a_frac=6, p_frac=3,
                        q_frac=5, l_exp=-6, lr_mant=90, lr_shift=12, seed=4)  # fmt: skip
    w = torch.randint(-100, 100, (2, 3, 1, 1), generator=g)
    conv = Readout("h", ("input",), w, -6, 0, learning=spec)
    dense = dataclasses.replace(conv, weight=w[:, :, 0, 0])
    p = torch.randint(0, 128, (2, 3, 4, 5), generator=g)
    x = torch.randint(0, 2, (2, 3, 4, 5), generator=g)
    sig = torch.randint(-60, 61, (2, 2, 4, 5), generator=g)
    emu = IntegerEmulator(QNetwork((conv,), (3, 4, 5), 2))

    def flat(t):
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    kind = kind_of(conv)
    got = kind.learn(conv, SynapseWeights(w), ReadoutState(None, Traces(p), x), sig, emu, 3, 0)
    flat_state = ReadoutState(None, Traces(flat(p)), flat(x))
    ref = kind.learn(dense, SynapseWeights(w[:, :, 0, 0]), flat_state, flat(sig), emu, 3, 0)
    assert (ref.w != w[:, :, 0, 0]).any()
    torch.testing.assert_close(got.w[:, :, 0, 0], ref.w, rtol=0, atol=0)


def test_output_shift_needs_a_power_of_two():
    assert output_shift("h", -12, 2.0**-8) == -4
    with pytest.raises(ValueError, match="readout h: out_scale 0.3"):
        output_shift("h", -12, 0.3)


# --- the converter ------------------------------------------------------------------------


def _run_float_graph(specs, frames):
    """The float graph interpreted spec by spec (torch ops; LIF: stllr.neuron.lif_step)."""
    state, flows = {}, None
    for t in range(frames.shape[0]):
        outs = {"input": frames[t]}
        for s in specs:
            ins = [outs[k] for k in s.inputs]
            if isinstance(s, FloatSpiking):
                if s.kind == "conv":
                    cur = F.conv2d(ins[0], s.weight, s.bias, s.stride, s.padding)
                else:
                    cur = F.conv_transpose2d(ins[0], s.weight.transpose(0, 1), s.bias, s.stride,
                                             s.padding, s.output_padding)  # fmt: skip
                prev = state.get(s.name, torch.zeros_like(cur))
                spikes, _, state[s.name] = lif_step(cur, prev, s.lif)
                outs[s.name] = spikes
            elif isinstance(s, FloatReadout):
                o = F.conv2d(ins[0], s.weight, s.bias)
                if s.name in state:
                    o = o + s.gamma * state[s.name]
                outs[s.name] = state[s.name] = o
            elif isinstance(s, Add):
                outs[s.name] = ins[0] + ins[1]
            elif isinstance(s, Concat):
                outs[s.name] = torch.cat(ins, dim=1)
            elif isinstance(s, Upsample2x):
                outs[s.name] = F.interpolate(ins[0], scale_factor=2, mode="bilinear",
                                             align_corners=False)  # fmt: skip
        flows = tuple(outs[f"flow{k}"] for k in (1, 2, 3, 4))
    return flows


@pytest.mark.parametrize("family, readout", [("stllr", "sum"), ("bptt", "last")])
def test_float_graph_reproduces_fsfn(family, readout):
    torch.manual_seed(1)
    model = FSFN(2, family=family, readout=readout, **TINY).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("heads") or name.endswith("bias"):
                p.normal_(0, 0.3)
    x = (torch.rand(3, 2, 2, 32, 32, dtype=torch.float64) < 0.3).double() * 2
    specs = to_float_graph(model)
    assert specs[-1].name == "flow1"
    model.eval()
    model.reset_state()
    with torch.no_grad():
        for t in range(x.shape[0]):
            ref = model(x[t])
    got = _run_float_graph(specs, x)
    spiking = [s.name for s in specs if isinstance(s, FloatSpiking)]
    assert len(spiking) == 4 + 4 + 3
    for k in range(4):
        assert float(ref[k].abs().max()) > 0.1
        torch.testing.assert_close(got[k], ref[k], rtol=1e-12, atol=1e-12)


def test_fsfn_quantizes_saves_and_runs(tmp_path):
    torch.manual_seed(2)
    model = FSFN(2, **TINY)
    x = (torch.rand(3, 2, 2, 32, 32) < 0.2).float()
    qnet, _ = quantize_model(model, [x], PTQConfig())
    heads = [n for n in qnet.nodes if isinstance(n, Readout)]
    assert [h.name for h in heads] == ["flow4", "flow3", "flow2", "flow1"]
    assert all(h.out_lsb == FLOW_OUT_SCALE and h.dv == 0 for h in heads)  # "sum": γ_o = 1
    ups = [n for n in qnet.nodes if isinstance(n, Upsample2x)]
    assert [u.shift for u in ups] == [7, 7, 7]  # 2^-8 / 16 → 2^-5
    assert FLOW_OUT_SCALE / 16 * 2**7 == FLOW_FEED_SCALE
    assert qnet.node("cat3").shifts == (5, 0)  # spikes on the flow's 1/32 px
    qnet.save(tmp_path / "fsfn.qnet")
    again = QNetwork.load(tmp_path / "fsfn.qnet")
    assert again.node("up2") == qnet.node("up2")
    assert again.node("flow1").a_shift == qnet.node("flow1").a_shift
    res = IntegerEmulator(again).run(x, record=("flow1",))
    assert tuple(res.records["flow1"][-1].shape) == (2, 2, 16, 16)


# --- the flow error as the third factor --------------------------------------------------------


def test_flow_error_signal_by_hand():
    """L = round((o·lsb − mean of gt over 2×2 blocks) / 2^l_exp), saturated to 8 bits, 0
    where a block misses gt or (with events) has no event."""
    spec = LearningSpec(lam_pre=4096, lam_post=0, a_pre=64, a_post=0, a_frac=6, p_frac=0,
                        q_frac=0, l_exp=-4, lr_mant=1, lr_shift=20)  # fmt: skip
    node = Readout("flow1", ("x",), torch.zeros(2, 3, 1, 1, dtype=torch.int64), -12, 0,
                   learning=spec, a_shift=-4)  # fmt: skip
    assert node.out_lsb == 2.0**-8
    o = torch.tensor([[[[256, -512]], [[40, 0]]]])  # [1, 2, 1, 2]: 1 px, −2 px, 0.15625 px, 0
    gt = torch.zeros(1, 2, 2, 4)
    gt[0, 0, :, :2] = torch.tensor([[0.5, 0.5], [0.5, 1.5]])  # block mean 0.75
    gt[0, 0, :, 2:] = 20.0
    gt[0, 1, 0, 3] = float("nan")  # the second block misses gt
    got = flow_error_signal(o, node, gt)
    # (1 − 0.75)·16 = 4; (0.15625 − 0)·16 = 2.5 → 2 (ties to even); second block: 0
    assert got.tolist() == [[[[4, 0]], [[2, 0]]]]
    gt[0, 1, 0, 3] = 0.0
    events = torch.zeros(1, 2, 4, dtype=torch.bool)
    events[0, 1, 3] = True  # only the second block has an event
    got = flow_error_signal(o, node, gt, events)
    assert got.tolist() == [[[[0, -128]], [[0, 0]]]]  # (−2 − 20)·16 saturates at −128
    with pytest.raises(ValueError, match="'flow1' has no LearningSpec"):
        adapt_flow_head(IntegerEmulator(QNetwork((dataclasses.replace(node, learning=None),),
                                                 (3, 1, 2), 2)), [])  # fmt: skip
