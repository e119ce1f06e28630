"""The emulator's exact-float32 LIF path equals its int64 path bit for bit.

``IntegerEmulator`` runs a non-plastic spiking layer on float32 tensors holding integers
when it can prove every value stays below 2^24 (``_fast_lif``). The reference here is the
same emulator with that path switched off (every layer on int64, the arithmetic the Lava
parity tests pin down): logits, every node's outputs at every step, spike counts,
saturation counters and the final neuron state must be identical, for every model family,
with graded inputs, and when ``forward`` continues after ``run``.
"""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.ptq import PTQConfig, quantize_model
from tests.test_ptq_emulator import FAMILIES, _build


def _int64_only(qnet) -> IntegerEmulator:
    emu = IntegerEmulator(qnet)
    emu._fast_lif = lambda n: False  # the reference: no layer on the float32 path
    return emu


def _records(res) -> dict[str, torch.Tensor]:
    return {k: torch.stack([o.to(torch.int64) for o in v]) for k, v in res.records.items()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("bits", [4, 8])
def test_fast_path_equals_int64_path(family, bits):
    model, x = _build(family)
    x = x * torch.randint(0, 4, x.shape, generator=torch.Generator().manual_seed(3))  # graded
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    names = tuple(n.name for n in qnet.nodes)
    fast, ref = IntegerEmulator(qnet), _int64_only(qnet)
    a, b = fast.run(x, record=names), ref.run(x, record=names)
    assert any(fast._fast.values()), "no layer took the float32 path"
    assert torch.equal(a.logits_sum, b.logits_sum)
    ra, rb = _records(a), _records(b)
    for k in names:
        assert torch.equal(ra[k], rb[k]), k
    assert a.spike_counts == b.spike_counts and a.saturation == b.saturation
    for k, st in ref.state.items():
        for field in ("u", "v"):
            if hasattr(st, field):
                got = getattr(fast.state[k], field)
                assert torch.equal(got.to(torch.int64), getattr(st, field)), (k, field)
    # forward() continues from run()'s state on both paths
    xi = x[0].round().to(torch.int64)
    fo, ro = fast.forward(xi), ref.forward(xi)
    for k in names:
        assert torch.equal(fo[k].to(torch.int64), ro[k].to(torch.int64)), k
