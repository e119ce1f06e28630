"""The split-exponent PTQ that ``benchmarks/recurrent_exponent.py`` measures: ``W`` and
``W_rec`` of a recurrent layer each at their own power-of-two exponent, ``W_rec``'s 8-bit
mantissa carried in ``W``'s LSBs as ``m_rec << (e_rec − e_w)``. Checked against the
exponents and mantissas computed here by a naive search, on the ``fc`` layer of a small
fs_gesture network whose recurrent weights are made 4× larger than its input weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from quantization.convert import to_float_graph
from quantization.ptq import PTQConfig, quantize_model
from stllr.models.neuron_kinds import NeuronSpec
from stllr.models.spiking_output import FSConvNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from recurrent_exponent import split_recurrent_exponent  # noqa: E402


def _naive_exponent(values: torch.Tensor, top: int = 127) -> int:
    """The smallest ``e`` with every ``|round(w / 2^e)| ≤ top``, by a downward search."""
    big = float(values.abs().max())
    e = 20
    while round(big / 2.0 ** (e - 1)) <= top:
        e -= 1
    return e


def _fs_gesture():
    torch.manual_seed(0)
    net = FSConvNet((2, 12, 12), 4, (4, 6, 6), 16, (3, 1, 1), NeuronSpec("culif", 5.0, 5.0, 0.5),
                    NeuronSpec("culif", 20.0, 20.0, 1.0)).eval()  # fmt: skip
    spec = next(s for s in to_float_graph(net) if getattr(s, "weight_rec", None) is not None)
    with torch.no_grad():  # W_rec 4× the range of W (as fs_gesture's trained fc, about 3×)
        ratio = float(spec.weight.abs().max() / spec.weight_rec.abs().max())
        for p in net.parameters():
            if p.shape == spec.weight_rec.shape and torch.equal(p, spec.weight_rec):
                p.mul_(4.0 * ratio)
    return net


def test_recurrent_weights_get_their_own_exponent():
    net = _fs_gesture()
    x = (torch.rand(6, 2, 2, 12, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    spec = next(s for s in to_float_graph(net) if s.name == "fc")
    k = 1.0 - spec.lif.gamma  # the current-based layer's weights enter times 1 − α
    w, w_rec = spec.weight * k, spec.weight_rec * k  # input: spikes, scale 1
    e_w, e_rec = _naive_exponent(w), _naive_exponent(w_rec)
    assert e_rec - e_w == 2  # 4× the range: two more bits for W

    shared, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    logged: list[dict] = []
    with split_recurrent_exponent(logged.append):
        split, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    fc_shared = next(n for n in shared.nodes if n.name == "fc")
    fc = next(n for n in split.nodes if n.name == "fc")

    assert fc_shared.weight_exp == e_rec  # today: one exponent, set by the larger W_rec
    assert fc.weight_exp == e_w and logged == [
        {"layer": "fc", "shared_exp": e_rec, "e_w": e_w, "e_rec": e_rec}
    ]
    m_w = torch.round(w.double() / 2.0**e_w).long()
    m_rec = torch.round(w_rec.double() / 2.0**e_rec).long()
    assert torch.equal(fc.weight, m_w) and int(m_w.abs().max()) > 63  # W uses its 8 bits
    assert torch.equal(fc.weight_rec, m_rec * 4) and int(m_rec.abs().max()) <= 127
    assert fc.vth == round(spec.lif.threshold / 2.0**e_w)  # θ in W's LSBs
    # every other layer is quantized exactly as before
    fields = ("weight", "weight_rec", "weight_exp", "vth", "bias_mant", "bias_exp", "dv", "du")
    for a, b in zip(shared.nodes, split.nodes, strict=True):
        for f in fields if a.name != "fc" and hasattr(a, "vth") else ():
            u, v = getattr(a, f), getattr(b, f)
            assert torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v, (a.name, f)
