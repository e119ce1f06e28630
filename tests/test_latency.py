"""The pipeline's latency metrics (pipeline/latency.py) against hand-computed values."""

from __future__ import annotations

import math

import torch

from pipeline.latency import LatencyTally, decision_steps, first_spike_latency


def test_first_spike_latency_by_hand():
    """Sample 0: first spike at step 3 (neuron 1); sample 1: silent within its 2 steps
    (its spike at step 4 is padding); sample 2: a spike at step 1."""
    s = torch.zeros(5, 3, 2)
    s[2, 0, 1] = s[4, 0, 0] = 1
    s[3, 1, 0] = 1
    s[0, 2, 1] = 1
    lat = first_spike_latency(s, torch.tensor([5, 2, 5]))
    assert lat[0] == 3 and math.isinf(lat[1]) and lat[2] == 1


def test_decision_step_by_hand():
    """Running sums of sample 0: class 0, 0, 1, 1 → final 1, decided from step 3; sample 1
    (2 steps; the padding would flip it): 1, 1 → decided from step 1."""
    o = torch.zeros(4, 2, 2)
    o[0, 0, 0], o[1, 0, 0], o[2, 0, 1], o[3, 0, 1] = 1.0, 0.5, 2.0, 1.0
    o[0, 1, 1], o[1, 1, 1], o[2, 1, 0] = 1.0, 1.0, 9.0
    d = decision_steps(o, torch.tensor([4, 2]))
    assert d.tolist() == [3, 1]


def test_tally_means_leave_silent_samples_out_of_the_latency():
    s = torch.zeros(4, 2, 3)
    s[1, 0, 2] = 1  # sample 0 at step 2; sample 1 silent
    o = torch.zeros(4, 2, 3)
    o[:, :, 0] = 1.0
    tally = LatencyTally()
    tally.add(s, o, torch.tensor([4, 4]))
    r = tally.result()
    assert r == {"samples": 2, "first_spike_latency": 2.0, "silent": 1, "decision_step": 1.0}
