"""``benchmarks/adaptation_shift_cost.py``: what a frame shift costs a deployed network
before any learning, as a paired change on the same evaluation samples. Checked against
an independent reference: every sample run alone, step by step, through
:meth:`IntegerEmulator.forward`, clean and shifted by calling the shift itself, and the
paired Δ and SE written out as loops."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.shift import HeldOutSpeaker, NoisySensor
from quantization.emulator import IntegerEmulator
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.errors import UserError
from stllr.models.shd import SHDNetSTLLR
from stllr.padding import stack_samples
from stllr.trainer import ListDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from adaptation_shift_cost import shift_cost  # noqa: E402

LENGTHS = (12, 30, 7, 22, 30, 15, 9, 25, 18, 30, 11, 27)


def _counts(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.poisson(torch.full((n, 40), 0.6), generator=g) for n in LENGTHS]


def _qnet():
    torch.manual_seed(0)
    model = SHDNetSTLLR(num_inputs=40, hidden=24, num_classes=5).eval()
    xs = _counts(0)
    qnet, _ = quantize_model(model, [stack_samples([(x, 0) for x in xs])[0]], PTQConfig())
    return qnet


def _alone(qnet, x: torch.Tensor) -> int:
    """Reference prediction: one unpadded sample through ``forward``, step by step."""
    emu = IntegerEmulator(qnet)
    x_int = quantize_input(x, qnet.input_format)
    logits = sum(emu.forward(x_int[t : t + 1])[qnet.nodes[-1].name][0] for t in range(len(x)))
    return int(logits.argmax())


def test_shift_cost_is_the_paired_change_of_each_sample_run_alone():
    qnet = _qnet()
    xs = _counts(1)
    clean_pred = [_alone(qnet, x) for x in xs]
    # half the labels the clean prediction, half another class: clean accuracy 50 %
    labels = [p if i % 2 == 0 else (p + 1) % 5 for i, p in enumerate(clean_pred)]
    data = SimpleNamespace(train=ListDataset(_counts(2), [0] * 12), test=ListDataset(xs, labels))
    shift = NoisySensor(event_loss=0.8, background=0.05, seed=3)
    section = SimpleNamespace(samples=1, eval_samples=0, drift=False, scenario="noisy_sensor")
    got = shift_cost(qnet, shift, data, section)

    shifted = [shift(x, "test", i) for i, x in enumerate(xs)]
    shift_pred = [_alone(qnet, x) for x in shifted]
    d = [int(s == y) - int(c == y) for c, s, y in zip(clean_pred, shift_pred, labels, strict=True)]
    assert any(d), "not vacuous: the shift must flip some samples"
    n = len(d)
    mean = sum(d) / n
    var = sum((v - mean) ** 2 for v in d) / (n - 1)
    c = got["change"]
    assert c["n"] == n and c["before"] == pytest.approx(50.0)
    assert c["after"] == pytest.approx(
        100 * sum(s == y for s, y in zip(shift_pred, labels, strict=True)) / n
    )
    assert c["delta"] == pytest.approx(100 * mean)
    assert c["se"] == pytest.approx(100 * math.sqrt(var / n))
    assert c["gained"] == d.count(1) and c["lost"] == d.count(-1)
    ev = got["events_per_sample"]
    assert ev["clean"] == pytest.approx(sum(float(x.sum()) for x in xs) / n)
    assert ev["shifted"] == pytest.approx(sum(float(x.sum()) for x in shifted) / n)


def test_shift_cost_refuses_a_scenario_that_is_not_a_frame_shift():
    section = SimpleNamespace(samples=1, eval_samples=0, scenario="held_out_speaker")
    with pytest.raises(UserError, match="held_out_speaker is not a frame shift"):
        shift_cost(None, HeldOutSpeaker(), SimpleNamespace(), section)
