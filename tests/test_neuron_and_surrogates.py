"""LIF step and Ψ variants against analytic values."""

from __future__ import annotations

import math

import pytest
import torch

from stllr.factors import trace_step
from stllr.neuron import LIFParams, lif_step
from stllr.surrogates import get_surrogate


def _run(params, currents):
    u = torch.zeros(1, dtype=torch.float64)
    spikes, us = [], []
    for c in currents:
        s, _, u = lif_step(torch.tensor([c], dtype=torch.float64), u, params)
        spikes.append(float(s))
        us.append(float(u))
    return spikes, us


def test_impulse_response_decays_geometrically():
    params = LIFParams(leak=1.3, threshold=0.6)
    gamma = 1 / (1 + math.exp(-1.3))
    _, us = _run(params, [0.4] + [0.0] * 9)
    for t, u in enumerate(us):
        assert u == pytest.approx(0.4 * gamma**t, abs=1e-15)


def test_step_response_first_spike_time_and_soft_reset():
    params = LIFParams(leak=0.0, threshold=0.6)  # γ = 0.5
    c = 0.35
    # m[t] = c (1 − γ^{t+1}) / (1 − γ) = 0.7 (1 − 0.5^{t+1}) crosses 0.6 first at t = 2 (0.6125)
    spikes, us = _run(params, [c] * 4)
    assert spikes == [0.0, 0.0, 1.0, 0.0]  # m[3] = 0.5·0.0125 + 0.35 < 0.6
    assert us[2] == pytest.approx(0.7 * (1 - 0.5**3) - 0.6, abs=1e-15)
    assert us[3] == pytest.approx(0.5 * us[2] + c, abs=1e-15)


def test_hard_reset_and_threshold_floor():
    spikes, us = _run(LIFParams(leak=0.0, threshold=0.2, reset="hard"), [0.55, 0.1])
    # θ_eff = max(0.2, 0.5) = 0.5 → spike at 0.55, hard reset to 0
    assert spikes == [1.0, 0.0] and us == [0.0, pytest.approx(0.1)]
    with pytest.raises(ValueError, match="reset must be one of"):
        LIFParams(reset="zero")


@pytest.mark.parametrize(
    "name,peak,integral",
    [("a", 1.0, 0.02), ("b", 0.3, 0.3), ("c", 1.0, 1.0), ("d", 1.0, math.pi / 10)],
)
def test_surrogate_peak_and_area(name, peak, integral):
    f = get_surrogate(name)
    v = torch.linspace(-200, 200, 4_000_001, dtype=torch.float64)
    y = f(v)
    assert float(f(torch.zeros(1, dtype=torch.float64))) == pytest.approx(peak, abs=1e-15)
    assert float(y.max()) == pytest.approx(peak, abs=1e-9)
    area = float(torch.trapezoid(y, v))
    assert area == pytest.approx(integral, rel=2e-3)
    assert torch.allclose(f(v), f(-v))


def test_surrogate_aliases_and_point_values():
    v = torch.tensor([0.01, 0.5], dtype=torch.float64)
    want_a = torch.tensor([0.25, 1 / 51**2], dtype=torch.float64)
    want_b = torch.tensor([0.297, 0.15], dtype=torch.float64)
    assert torch.allclose(get_surrogate("exp")(v), want_a)
    assert torch.allclose(get_surrogate("triangle")(v), want_b)


def test_trace_recursion():
    p = torch.zeros(1)
    values = [1.0, 0.0, 1.0, 1.0]
    for x in values:
        p = trace_step(p, torch.tensor([x]), 0.5)
    assert float(p) == pytest.approx(0.125 + 0.5 + 1.0)
