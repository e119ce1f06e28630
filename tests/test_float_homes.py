"""One home each for γ, the trace recursion and the Ψ table's reach (issue #13).

γ = sigmoid(leak) lives in :func:`stllr.neuron.decay_from_leak`, the trace update in
:func:`stllr.factors.trace_step` / :func:`~stllr.factors.trace_step_`, Ψ's peak and reach in
:mod:`stllr.surrogates`; each is checked against an independent computation and every user
is checked to take its value from there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantization.learning_formats import psi_at_bins, psi_bins, psi_frac_for, psi_table
from stllr.factors import trace_step, trace_step_
from stllr.layers.bptt import LeakyReadout
from stllr.layers.readout import AccumulateReadout
from stllr.neuron import LIFParams, decay_from_leak
from stllr.surrogates import get_surrogate, psi_peak, support_half_width


@pytest.mark.parametrize("leak", [-3.0, 0.0, 2.0, 5.0])
def test_gamma_has_one_home(leak):
    reference = float(torch.sigmoid(torch.tensor(leak, dtype=torch.float64)))
    gamma = decay_from_leak(leak)
    assert gamma == pytest.approx(reference, rel=1e-15)
    assert LIFParams(leak=leak).gamma == gamma
    assert AccumulateReadout(3, 2, leak=leak).gamma == gamma
    assert LeakyReadout(3, 2, leak=leak).gamma == gamma


@pytest.mark.parametrize("decay", [0.8, 1.0])
def test_trace_step_in_place_forms_are_bitwise_equal(decay):
    g = torch.Generator().manual_seed(0)
    trace, value = torch.rand(4, 5, generator=g), torch.rand(4, 5, generator=g)
    reference = decay * trace + value  # the recursion written out
    assert torch.equal(trace_step(trace, value, decay), reference)
    for d in (decay, torch.tensor(decay), None if decay == 1.0 else decay):
        out = trace.clone()
        assert trace_step_(out, value, d) is out
        assert torch.equal(out, reference)
    # numpy arrays (the Lava float neuron's Q): the same two operations
    got = trace_step(trace.numpy(), value.numpy(), decay)
    np.testing.assert_array_equal(got, reference.numpy())


@pytest.mark.parametrize("variant", ["a", "b", "c", "d"])
def test_psi_peak_and_reach(variant):
    fn = get_surrogate(variant)
    expected_peak = {"a": 1.0, "b": 0.3, "c": 1.0, "d": 1.0}[variant]
    assert psi_peak(variant) == pytest.approx(expected_peak, rel=1e-15)
    floor = 1e-3
    v_max = support_half_width(variant, floor)
    f64 = torch.float64
    assert float(fn(torch.tensor([v_max], dtype=f64))) < floor
    assert float(fn(torch.tensor([v_max / 1.25], dtype=f64))) >= floor or v_max == 1e-3


@pytest.mark.parametrize("variant", ["a", "b", "c", "d"])
def test_psi_table_built_from_the_shared_bins(variant):
    v_lsb = 2.0**-7
    table = psi_table(variant, v_lsb)
    frac = psi_frac_for(variant)
    assert (table.shift, table.half) == psi_bins(variant, v_lsb, 0.5 / 2**frac)
    # beyond the last bin Ψ rounds to 0 at 2^frac (a dense independent scan)
    edge = table.half * 2**table.shift * v_lsb
    v = torch.linspace(edge, 4 * edge + 1.0, 2001, dtype=torch.float64)
    assert float((get_surrogate(variant)(v) * 2**frac).max()) < 0.5
    # entry i is round(Ψ(left edge of bin i)·2^frac)
    psi = psi_at_bins(variant, v_lsb, table.shift, table.half)
    direct = [
        min(255, round(float(get_surrogate(variant)(torch.tensor(x, dtype=torch.float64)))
                       * 2**frac))
        for x in (np.arange(-table.half, table.half + 1) * 2.0**table.shift * v_lsb)[::97]
    ]  # fmt: skip
    assert table.table[::97].tolist() == direct
    assert len(psi) == 2 * table.half + 1
    assert math.isfinite(float(psi.sum()))
