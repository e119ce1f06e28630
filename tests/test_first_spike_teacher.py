"""The causal first-spike teaching signal (stllr/functional/first_spike_teacher.py,
docs/first_spike.md, "On-device learning of a first-spike network"): a hand-computed
sequence, a naive loop written from the docs' equations, and the host's composition with
the error gate (pipeline.adapt_mechanisms.fs_step_error)."""

from __future__ import annotations

import math

import pytest
import torch

from stllr.functional.first_spike_teacher import (
    FSTeacher,
    teach_init,
    teach_step,
    teaching_signal,
)

LN2 = math.log(2.0)  # α = ln 2: e^{−α·k} = 2^{−k}


def _signals(raster: torch.Tensor, y: torch.Tensor, teacher: FSTeacher) -> torch.Tensor:
    """δ ``[T, B, K]`` of spikes ``[T, B, K]`` through the streaming functions."""
    state, out = teach_init(raster.shape[1], raster.shape[2]), []
    for t in range(raster.shape[0]):
        state = teach_step(state, raster[t])
        out.append(teaching_signal(state, y, teacher))
    return torch.stack(out)


def test_hand_computed_sequence():
    """K = 3, label 1, α = ln 2, σ = 1: neuron 0 fires at step 2, the label at step 3.

    t=1: t̂ = [2, 2, 2], p̂ = [1/3]·3, w = 1            → δ = [1/3, −2/3, 1/3]
    t=2: t̂ = [2, 3, 3], p̂ = [1/2, 1/4, 1/4], w = 1     → δ = [1/2, −3/4, 1/4]
    t=3: t̂ = [2, 3, 4], p̂ = [4/7, 2/7, 1/7], w = [e^{−1/2}, 1, 1]
    t=4: t̂ = [2, 3, 5], p̂ = [8/13, 4/13, 1/13], w = [e^{−2}, e^{−1/2}, 1]
    """
    s = torch.zeros(4, 1, 3)
    s[1, 0, 0] = s[2, 0, 1] = s[3, 0, 0] = 1  # neuron 0 fires again at t=4: still k = 2
    got = _signals(s, torch.tensor([1]), FSTeacher(LN2, 1.0))[:, 0]
    h = math.exp(-0.5)
    want = torch.tensor(
        [
            [1 / 3, -2 / 3, 1 / 3],
            [1 / 2, -3 / 4, 1 / 4],
            [4 / 7 * h, -5 / 7, 1 / 7],
            [8 / 13 * math.exp(-2), -9 / 13 * h, 1 / 13],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the label fired first instead (label 0): with stop_correct nothing after step 2
    got0 = _signals(s, torch.tensor([0]), FSTeacher(LN2, 1.0, stop_correct=True))[:, 0]
    torch.testing.assert_close(got0[0], torch.tensor([-2 / 3, 1 / 3, 1 / 3], dtype=torch.float64))
    assert not got0[1:].any()


def _naive(raster, y, alpha, sigma, stop_correct):
    """The docs' equations, one sample, one neuron, one step at a time."""
    steps, batch, k = raster.shape
    out = torch.zeros(steps, batch, k, dtype=torch.float64)
    for b in range(batch):
        first = [None] * k
        for t in range(1, steps + 1):
            for n in range(k):
                if first[n] is None and raster[t - 1, b, n] > 0:
                    first[n] = t
            t_hat = [first[n] if first[n] is not None else t + 1 for n in range(k)]
            lo = min(t_hat)
            z = [alpha * (lo - th) for th in t_hat]
            norm = sum(math.exp(v) for v in z)
            fired = [n for n in range(k) if first[n] is not None]
            winner = min(fired, key=lambda n: (first[n], n)) if fired else None
            if stop_correct and winner == int(y[b]):
                continue
            for n in range(k):
                if first[n] is None:
                    w = 1.0
                elif sigma > 0:
                    w = math.exp(-((t - first[n]) ** 2) / (2 * sigma**2))
                else:
                    w = 1.0 if t == first[n] else 0.0
                out[t - 1, b, n] = w * (math.exp(z[n]) / norm - (1.0 if n == y[b] else 0.0))
    return out


@pytest.mark.parametrize("sigma,stop", [(3.0, False), (0.0, False), (2.0, True)])
def test_equals_a_naive_loop_on_random_rasters(sigma, stop):
    g = torch.Generator().manual_seed(4)
    raster = (torch.rand(30, 6, 5, generator=g) < 0.04).float()
    raster[5, 0, 1] = raster[5, 0, 3] = 1  # a tie at one step (lowest index wins)
    raster[:, 1] = 0  # a silent sample
    y = torch.randint(0, 5, (6,), generator=g)
    y[0] = 1
    got = _signals(raster, y, FSTeacher(0.3, sigma, stop))
    torch.testing.assert_close(got, _naive(raster, y, 0.3, sigma, stop), rtol=0, atol=1e-12)
    assert (got.abs().sum(dim=2) <= 2 + 1e-12).all()


def test_host_error_is_the_signal_with_gate_and_scale():
    """fs_step_error = scale · δ; the gate sends nothing once 1 − p̂_label < g."""
    from pipeline.adapt_mechanisms import fs_step_error

    teacher = FSTeacher(LN2, 1.0)
    state = teach_init(1, 3)
    state = teach_step(state, torch.tensor([[0.0, 0.0, 0.0]]))
    state = teach_step(state, torch.tensor([[0.0, 1.0, 0.0]]))  # label 1 fires at t = 2
    delta = teaching_signal(state, torch.tensor([1]), teacher)
    torch.testing.assert_close(fs_step_error(state, teacher, 1, 0.0, 0.5), 0.5 * delta)
    # p̂_label = 1/2 at t = 2: 1 − p̂ = 1/2 passes a gate of 0.5, not one of 0.6
    assert fs_step_error(state, teacher, 1, 0.5) is not None
    assert fs_step_error(state, teacher, 1, 0.6) is None
    # an unlabelled sample learns from a confident answer only (its argmax z)
    torch.testing.assert_close(fs_step_error(state, teacher, -1, 0.0, 1.0, 0.4), delta)
    assert fs_step_error(state, teacher, -1, 0.0, 1.0, 0.6) is None
