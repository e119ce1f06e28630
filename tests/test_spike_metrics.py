"""FS/FR evaluation metrics against a hand-computed batch, and the LIF neuron of the
spiking-output networks against the toolkit's LIF step function."""

from __future__ import annotations

import math

import pytest
import torch

from stllr.errors import UserError
from stllr.functional.first_spike import first_spike_times
from stllr.models.neuron_kinds import LIFNeurons, NeuronSpec, make_neuron
from stllr.neuron import LIFParams, lif_step
from stllr.spike_metrics import SpikeReadoutTally, first_spike_steps


def hand_batch():
    s = torch.zeros(5, 4, 2)
    s[1, 0, 0] = 1  # sample 0: n0 at step 2; n1 at steps 3, 4 → FS 0, FR 1
    s[2, 0, 1] = s[3, 0, 1] = 1
    s[0, 1, 1] = 1  # sample 1: n1 at step 1; n0 at 2, 3, 4 → FS 1, FR 0
    s[1:4, 1, 0] = 1
    s[4, 2, 0] = 1  # sample 2: its only spike is after its length 3 → silent
    s[0, 3, 0] = 1  # sample 3: n0 at step 1
    v = torch.zeros(5, 4, 2)
    v[:, 2, 1] = 0.8  # sample 2: n1 came closest → FS prediction 1
    v[:, 2, 0] = 0.1
    y = torch.tensor([0, 0, 1, 0])
    lengths = torch.tensor([5, 5, 3, 5])
    return s, v, y, lengths


def test_first_spike_steps():
    s, _, _, lengths = hand_batch()
    k = first_spike_steps(s, lengths)
    assert k.tolist() == [[2, 3], [2, 1], [math.inf, math.inf], [1, math.inf]]


def test_tally_hand_computed():
    s, v, y, lengths = hand_batch()
    t = first_spike_times(s, v, lengths=lengths)
    tally = SpikeReadoutTally()
    tally.add(s[:, :2], t[:2], y[:2], lengths[:2], hidden_spikes=12.0, hidden_neurons=3)
    tally.add(s[:, 2:], t[2:], y[2:], lengths[2:], hidden_spikes=4.0, hidden_neurons=3)
    m = tally.result()
    assert m.samples == 4
    assert m.fs_acc == 75.0  # samples 0, 2, 3
    assert m.fr_acc == 50.0  # samples 1, 3
    assert m.spikes_per_sample == 2.0  # (3 + 4 + 0 + 1) / 4
    assert m.latency == pytest.approx(4 / 3)  # steps 2, 1, 1; sample 2 silent
    assert m.silent == 1
    # correct FS decisions with a spike: sample 3 at step 1, sample 0 at step 2 → A = [1, 2]
    assert (m.decision_step_50, m.decision_step_90) == (1.0, 2.0)
    assert m.hidden_spikes_per_neuron == pytest.approx(16 / 4 / 3)


def test_lif_neurons_follow_lif_step():
    g = torch.Generator().manual_seed(0)
    spec = NeuronSpec("lif", tau_mem=7.0, threshold=0.7)
    neuron = LIFNeurons(spec)
    params = LIFParams(leak=math.log(math.exp(-1 / 7) / (1 - math.exp(-1 / 7))), threshold=0.7)
    assert params.gamma == pytest.approx(math.exp(-1 / 7))
    u = torch.zeros(3, 4)
    for _ in range(20):
        current = torch.rand(3, 4, generator=g)
        s_ref, v_ref, u = lif_step(current, u, params)
        assert torch.equal(neuron(current), s_ref)
        torch.testing.assert_close(neuron.membrane, v_ref + params.theta_eff)


def test_reference_neurons_step_as_their_population():
    """``neuron = adlif`` (and the other reference kinds) is the population of stllr.neurons:
    spikes equal the pure step function's, ``membrane`` is v before the reset; per-neuron
    decays on a feature map and unknown kinds are refused by name."""
    from stllr.neurons.dynamics import adlif_step

    g = torch.Generator().manual_seed(4)
    neuron = make_neuron(NeuronSpec("adlif", tau_mem=5.0, threshold=0.4), "e", "neuron", 4)
    pop = neuron.pop
    state = pop.zero_state(torch.zeros(3, 4))
    for _ in range(15):
        c = torch.rand(3, 4, generator=g)
        s_ref, centred, state = adlif_step(c, state, pop.params())
        assert torch.equal(neuron(c).detach(), s_ref.detach())
        torch.testing.assert_close(neuron.membrane, (centred + 0.4).detach())
    with pytest.raises(UserError, match="feature map.*decay_mode=layer"):
        make_neuron(NeuronSpec("adlif"), "a", "neuron")
    with pytest.raises(UserError, match="not a neuron kind"):
        make_neuron(NeuronSpec("izhikevich"), "a", "neuron")
