"""Deploying a first-spike-coded ``fs_fc`` network (docs/first_spike.md, "In the pipeline"):
the FS decision against a naive loop over spike rasters, the float evaluation's
``first_spike_times`` and the emulator's streaming form; the converted CuLIF network's
8-bit spikes against the float network's."""

from __future__ import annotations

import math

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.network import SpikingLayer
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.functional.first_spike import first_spike_times
from stllr.models.neuron_kinds import NeuronSpec
from stllr.models.spiking_output import FSFCNet
from stllr.spike_metrics import fs_decision, fs_times
from stllr.spike_training import run_sequence


def naive_decision(s, v, lengths) -> list[int]:
    """docs/first_spike.md's rule, one sample and one step at a time: the first step (within
    T_b) with any output spike gives the lowest-index neuron spiking then; a sample without
    one goes to the neuron whose membrane came highest over its steps (lowest index on ties)."""
    steps, batch, k = s.shape
    out = []
    for b in range(batch):
        tb = int(lengths[b])
        pred = None
        for t in range(tb):
            firing = [n for n in range(k) if s[t, b, n] > 0]
            if firing:
                pred = firing[0]
                break
        if pred is None:
            best, pred = -math.inf, 0
            for n in range(k):
                peak = max(float(v[t, b, n]) for t in range(tb))
                if peak > best:
                    best, pred = peak, n
        out.append(pred)
    return out


def _rasters(seed: int):
    """Sparse spikes [T, B, K] with ties forced (two neurons at one step), silent samples
    (some with equal peaks) and padding that holds spikes (they must not count)."""
    g = torch.Generator().manual_seed(seed)
    steps, batch, k = 12, 40, 5
    s = (torch.rand(steps, batch, k, generator=g) < 0.03).float()
    v = torch.randint(-6, 7, (steps, batch, k), generator=g).float()  # integer: ties
    lengths = torch.randint(4, steps + 1, (batch,), generator=g)
    s[:, :10] = 0  # silent samples
    s[:, 10:14] = 0
    s[2, 10:14, 1] = s[2, 10:14, 3] = 1  # ties at the first spike step
    v[:, 5, 2] = v[:, 5, 4] = 50.0  # a silent sample whose peak is shared
    for b in range(batch):  # spikes in the padding only: silent within its own steps
        if b % 7 == 0 and lengths[b] < steps:
            s[:, b] = 0
            s[int(lengths[b]) :, b, 0] = 1
    return s, v, lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fs_decision_against_a_naive_loop_and_the_float_evaluation(seed):
    s, v, lengths = _rasters(seed)
    want = naive_decision(s, v, lengths)
    assert fs_decision(s, v, lengths).tolist() == want
    assert fs_decision(s.long(), v.long(), lengths).tolist() == want  # integer rasters
    silent = sum(1 for b in range(s.shape[1]) if not s[: int(lengths[b]), b].any())
    assert 10 <= silent < s.shape[1]
    # the float evaluation's times (forward of first_spike_times) are the same values
    torch.testing.assert_close(
        fs_times(s, v, lengths), first_spike_times(s, v, lengths=lengths).double(), rtol=0, atol=0
    )


def _net(kind: str = "culif") -> FSFCNet:
    torch.manual_seed(0)
    return FSFCNet(20, 5, (32, 32), NeuronSpec(kind, 5.0, 5.0, 0.5),
                   NeuronSpec(kind, 20.0, 20.0, 1.0)).eval()  # fmt: skip


def _input(batch: int = 16, steps: int = 60, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 20, generator=g) < 0.2).float()


def test_emulator_first_spike_equals_the_decision_on_its_own_rasters():
    """The emulator's streaming FS times (EmulatorResult.first_spike) equal fs_times of the
    output spikes and membranes recorded step by step, with padding."""
    net, x = _net(), _input()
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    lengths = torch.randint(20, 61, (16,), generator=torch.Generator().manual_seed(3))
    res = IntegerEmulator(qnet).run(x, lengths=lengths)
    emu = IntegerEmulator(qnet)
    s, v = [], []
    for t in range(x.shape[0]):
        s.append(emu.forward(quantize_input(x[t], qnet.input_format))["out"])
        v.append(emu.state["out"].v.clone())
    s, v = torch.stack(s), torch.stack(v)
    torch.testing.assert_close(res.first_spike, fs_times(s, v, lengths), rtol=0, atol=0)
    assert res.predictions().tolist() == naive_decision(s, v, lengths)


def _agreement(net, x, bits: int):
    """(output-raster agreement, integer FS predictions, qnet) of ``net`` PTQ'd at ``bits``."""
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=bits))
    res = IntegerEmulator(qnet).run(x, record=("out",))
    with torch.no_grad():
        s_float, _ = run_sequence(net, x)
    s_int = torch.stack(res.records["out"]).float()
    return float((s_int == s_float).float().mean()), res.predictions(), qnet


def test_converted_culif_network_spikes_like_the_float_network():
    """fs_fc (CuLIF) → three integer CuLIF layers (du < 4095). The integer layers compute
    the float recursion on rounded weights (half a mantissa LSB) and 12-bit decays, so a
    spike can differ only where a float membrane lies within that rounding of θ: with 4
    more weight bits the error shrinks 16-fold and on this example no spike differs (a
    wrong update order, decay or scale would not converge so); at 8 bits 98.7 % of the
    output raster agrees (bound 95 %) and the FS predictions equal the float network's."""
    net, x = _net("culif"), _input()
    with torch.no_grad():
        s_float, v_float = run_sequence(net, x)
    assert s_float.sum() > 20
    exact, pred12, qnet = _agreement(net, x, 12)
    assert [n.name for n in qnet.nodes] == ["fc0", "fc1", "out"]
    assert all(isinstance(n, SpikingLayer) and n.du < 4095 for n in qnet.nodes)
    assert exact == 1.0
    near, pred8, _ = _agreement(net, x, 8)
    assert near >= 0.95
    want = fs_decision(s_float, v_float).tolist()
    assert pred8.tolist() == want and pred12.tolist() == want


def test_converted_lif_network_converges_to_the_float_network():
    """fs_fc with the toolkit's LIF (du = 4095): this example fires on 10 % of its output
    steps, so rounding flips more spikes (93 % agree at 8 bits); the agreement grows with
    the weight bits (98 % at 12), as it must when rounding is the only difference."""
    net, x = _net("lif"), _input()
    a8, _, qnet = _agreement(net, x, 8)
    a12, _, _ = _agreement(net, x, 12)
    assert all(n.du == 4095 for n in qnet.nodes)
    assert 0.9 <= a8 < a12 and a12 >= 0.97
