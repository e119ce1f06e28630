"""First-spike and firing-rate losses against a hand-computed case and naive loops
(docs/first_spike.md)."""

from __future__ import annotations

import math

import pytest
import torch

from stllr.functional.first_spike import (
    firing_rate_loss,
    firing_rates,
    first_spike_loss,
    first_spike_times,
    fr_prediction,
    fs_prediction,
    gaussian_kernel,
)

# --- naive references, written from the equations with Python loops -----------------------


def naive_times(s, v, lengths):
    """t_first[b][n] and the step list each neuron's error goes to (1-based)."""
    batch, k = len(s[0]), len(s[0][0])
    first, targets = [], []
    for b in range(batch):
        tb = lengths[b]
        peak = [max(v[t][b][n] for t in range(tb)) for n in range(k)]
        row, trow = [], []
        for n in range(k):
            rank_n = 1 + sum(
                1 for m in range(k) if peak[m] > peak[n] or (peak[m] == peak[n] and m < n)
            )
            times = []
            for t in range(tb):
                if s[t][b][n] > 0:
                    times.append(t + 1.0)
                else:
                    rank_t = sum(
                        1
                        for u in range(tb)
                        if v[u][b][n] > v[t][b][n] or (v[u][b][n] == v[t][b][n] and u < t)
                    )
                    times.append(tb + rank_n + 0.01 * rank_t)
            best = min(times)
            row.append(best)
            trow.append([times.index(best) + 1] if best <= tb else list(range(1, tb + 1)))
        first.append(row)
        targets.append(trow)
    return first, targets


def naive_spike_grad(g_first, targets, steps, d, amplitude):
    """∂L/∂s[k] = Σ_j G(j − k)·(−A)·e[j], e[j] = g at the target steps."""
    sigma = steps // d
    length = min(6 * sigma + 1, 2 * (steps // 2) + 1)
    c = (length - 1) // 2
    batch, k = len(targets), len(targets[0])
    out = [[[0.0] * k for _ in range(batch)] for _ in range(steps)]
    for b in range(batch):
        for n in range(k):
            for j in targets[b][n]:
                for kk in range(1, steps + 1):
                    if abs(kk - j) <= c:
                        out[kk - 1][b][n] += (
                            math.exp(-((kk - j) ** 2) / (2 * sigma**2)) * -amplitude * g_first[b][n]
                        )
    return out


def naive_fs_loss(t_first, y, horizon, alpha, lam, beta):
    total, reg = 0.0, 0.0
    for b, row in enumerate(t_first):
        low = min(row)
        z = [alpha * (low - t) for t in row]
        log_norm = math.log(sum(math.exp(zi) for zi in z))
        total += -(z[y[b]] - log_norm)
        t_y = row[y[b]]
        reg += math.exp(beta * t_y) - 1 if t_y > horizon[b] else 0.0
    return total / len(t_first) + lam * reg / len(t_first)


# --- the hand-computed case: 2 neurons × 4 steps -------------------------------------------


def hand_case():
    s = torch.zeros(4, 1, 2)
    s[1, 0, 0] = 1.0  # neuron 0 fires at step 2 only
    v = torch.tensor([[0.1, 0.3], [1.2, 0.5], [0.2, 0.9], [0.0, 0.2]]).unsqueeze(1)
    return s, v


def test_hand_case_times_and_gradient():
    s, v = hand_case()
    s.requires_grad_(True)
    t = first_spike_times(s, v, d=2, amplitude=1.0)
    # neuron 1 is silent: peak 0.9 < 1.2 ranks it 2nd; its highest membrane is at step 3
    # (step rank 0), so its pseudo-time is T + 2 + 0 = 6
    assert t.tolist() == [[2.0, 6.0]]
    t.sum().backward()
    e1, e2 = math.exp(-1 / 8), math.exp(-1 / 2)  # σ = 4 // 2 = 2, L = 5
    fired = [-e1, -1.0, -e1, -e2]  # the error at step 2, spread
    silent = [-(1 + e1 + e2), -(1 + 2 * e1 + e2), -(1 + 2 * e1 + e2), -(1 + e1 + e2)]
    assert s.grad[:, 0, 0].tolist() == pytest.approx(fired, abs=1e-6)
    assert s.grad[:, 0, 1].tolist() == pytest.approx(silent, abs=1e-6)


def test_hand_case_losses():
    s, v = hand_case()
    t = first_spike_times(s, v, d=2, amplitude=1.0)
    alpha, lam, beta = 0.2, 0.01, 0.02
    y0, y1 = torch.tensor([0]), torch.tensor([1])
    assert float(first_spike_loss(t, y0, 4, alpha)) == pytest.approx(
        math.log(1 + math.exp(-4 * alpha)), rel=1e-6
    )
    # label neuron silent (t = 6 > T = 4): penalised by λ(exp(6β) − 1)
    expected = 4 * alpha + math.log(1 + math.exp(-4 * alpha)) + lam * (math.exp(6 * beta) - 1)
    assert float(first_spike_loss(t, y1, 4, alpha, lam, beta)) == pytest.approx(expected, 1e-6)
    # a firing label neuron is not penalised
    assert float(first_spike_loss(t, y0, 4, alpha, lam, beta)) == pytest.approx(
        math.log(1 + math.exp(-4 * alpha)), rel=1e-6
    )
    assert fs_prediction(t).tolist() == [0]
    rate = firing_rates(s)
    assert rate.tolist() == [[0.25, 0.0]]
    assert float(firing_rate_loss(rate, y1, 20.0)) == pytest.approx(
        5.0 + math.log(1 + math.exp(-5.0)), rel=1e-6
    )


def test_gaussian_kernel_sizes():
    k = gaussian_kernel(100, 16)  # σ = 6 → 6σ + 1 = 37
    assert k.numel() == 37 and float(k[18]) == 1.0
    assert float(k[18 + 6]) == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert gaussian_kernel(10, 2).numel() == 11  # σ = 5: capped at 2⌊T/2⌋ + 1
    assert gaussian_kernel(3, 16).tolist() == [1.0]  # σ = 0: identity


# --- random batches against the loops ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_batch_matches_loops(seed):
    g = torch.Generator().manual_seed(seed)
    steps, batch, k = 12, 5, 4
    s = (torch.rand(steps, batch, k, generator=g) < 0.08).float()
    s[:, 0, :] = 0.0  # an all-silent sample
    v = torch.randn(steps, batch, k, generator=g)
    lengths = torch.tensor([12, 7, 12, 3, 10])
    s.requires_grad_(True)
    t = first_spike_times(s, v, d=3, amplitude=50.0, lengths=lengths)
    ref, targets = naive_times(s.tolist(), v.tolist(), lengths.tolist())
    torch.testing.assert_close(t, torch.tensor(ref), atol=1e-5, rtol=0)
    weights = torch.randn(batch, k, generator=g)
    (t * weights).sum().backward()
    expected = naive_spike_grad(weights.tolist(), targets, steps, 3, 50.0)
    grad = s.grad.clone()
    for b, tb in enumerate(lengths.tolist()):  # steps after T_b are masked out of s
        for t_ in range(tb, steps):
            expected[t_][b] = [0.0] * k
    torch.testing.assert_close(grad, torch.tensor(expected), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_loops(seed):
    g = torch.Generator().manual_seed(seed)
    t_first = torch.randint(1, 15, (6, 5), generator=g).float() + torch.rand(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    horizon = [10, 12, 8, 10, 14, 9]
    h = torch.tensor(horizon, dtype=torch.float32).view(-1, 1)
    got = float(first_spike_loss(t_first, y, h, 0.3, 0.05, 0.04))
    ref = naive_fs_loss(t_first.tolist(), y.tolist(), horizon, 0.3, 0.05, 0.04)
    assert got == pytest.approx(ref, rel=1e-5)


def test_firing_rates_over_own_steps_and_fr_prediction():
    g = torch.Generator().manual_seed(3)
    s = (torch.rand(9, 4, 3, generator=g) < 0.3).float()
    lengths = torch.tensor([9, 4, 1, 6])
    rate = firing_rates(s, lengths)
    for b, tb in enumerate(lengths.tolist()):
        for n in range(3):
            assert float(rate[b, n]) == pytest.approx(
                sum(s[t, b, n].item() for t in range(tb)) / tb
            )
    assert fr_prediction(rate).tolist() == [
        max(range(3), key=lambda n, b=b: (rate[b, n].item(), -n)) for b in range(4)
    ]
