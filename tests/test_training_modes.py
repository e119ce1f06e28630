"""Learning-window semantics, training modes, memory flatness and input errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stllr.factors import STLLRFactors
from stllr.memory import SavedTensorTracker
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.models.vgg import VGGSTLLR
from stllr.training import evaluate_batch, train_batch


class CountingSGD(torch.optim.SGD):
    """SGD with lr 0 that counts its steps and keeps the last gradients."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def _data(steps=12, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, 700, generator=g) < 0.1).float()
    return x, torch.randint(0, 20, (batch,), generator=g)


def _net(seed=1, **kw):
    torch.manual_seed(seed)
    return SHDNetSTLLR(hidden=24, **kw)


@pytest.mark.parametrize("window", [1, 4, 12, 50])
def test_window_covers_the_last_steps(window):
    x, y = _data()
    net = _net()
    opt = CountingSGD(net.parameters())
    train_batch(net, x, y, opt, mode="stllr", window=window)
    assert opt.steps == 1
    got = {n: p.grad.clone() for n, p in net.named_parameters()}

    ref = _net()
    ref.reset_state()
    steps = x.shape[0]
    for t in range(steps):
        out = ref(x[t], y)
        if steps - t <= window:  # the reference code's condition
            F.cross_entropy(out, y).backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-7, rtol=1e-5), n
    assert got["readout.weight"].abs().max() > 0


def test_online_mode_steps_at_every_eligible_step():
    x, y = _data()
    net = _net()
    opt = CountingSGD(net.parameters())
    train_batch(net, x, y, opt, mode="stllr_online", window=5)
    assert opt.steps == 5


def test_ottt_mode_signals_every_step():
    x, y = _data(steps=6)
    gamma = 1 / (1 + torch.exp(torch.tensor(-5.0))).item()
    factors = STLLRFactors(0.0, gamma, 0.0, 1.0)
    net = _net(factors=factors)
    opt = CountingSGD(net.parameters())
    train_batch(net, x, y, opt, mode="ottt", window=1)
    got = net.readout.weight.grad.clone()
    ref = _net(factors=factors)
    ref.reset_state()
    onehot = F.one_hot(y, 20).float()
    for t in range(6):
        out = ref(x[t], y)
        loss = 0.999 * F.cross_entropy(out, y) + 0.001 * F.mse_loss(out, onehot)
        (loss / 6).backward()
    assert torch.allclose(got, ref.readout.weight.grad, atol=1e-7, rtol=1e-5)


def test_evaluate_sums_logits_over_all_steps():
    x, y = _data(steps=5)
    net = _net()
    res = evaluate_batch(net, x, y)
    net.reset_state()
    with torch.no_grad():
        manual = sum(net(x[t]) for t in range(5))
    assert torch.allclose(res.logits, manual)


def _peak_saved_bytes(model, steps, mode):
    x, y = _data(steps=steps, batch=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with SavedTensorTracker() as tracker:
        train_batch(model, x, y, opt, mode=mode, window=10)
    assert tracker.current == 0, "autograd must have released everything"
    return tracker.peak


def test_stllr_training_memory_is_flat_in_T():
    small = _peak_saved_bytes(_net(), 20, "stllr")
    large = _peak_saved_bytes(_net(), 400, "stllr")
    assert small > 0
    assert large == small


def test_bptt_training_memory_grows_with_T():
    """The same measurement does see BPTT's graph through time (it can fail)."""
    peaks = [_peak_saved_bytes(SHDNetBPTT(hidden=24), steps, "bptt") for steps in (20, 110, 200)]
    per_90_steps = peaks[1] - peaks[0]
    assert per_90_steps > peaks[0]  # the graph through time dominates
    assert peaks[2] - peaks[1] == per_90_steps  # exactly linear in T


def test_vgg_stllr_memory_flat():
    def peak(steps):
        torch.manual_seed(0)
        net = VGGSTLLR(input_shape=(2, 16, 16), channels=(4, 4, 8, 8, 8, 8, 8, 8))
        x = torch.rand(steps, 2, 2, 16, 16)
        y = torch.tensor([0, 3])
        with SavedTensorTracker() as tracker:
            train_batch(net, x, y, torch.optim.SGD(net.parameters(), lr=0.0), window=3)
        return tracker.peak

    assert peak(5) == peak(60) > 0


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.zeros(5, 4, 699), r"x has size 699 in dimension 2 but 700 was expected"),
        (torch.zeros(4, 700), r"x must have 3 dimensions \[T, B, 700\]"),
        (torch.zeros(5, 4, 700, dtype=torch.int64), r"x must have a floating-point dtype"),
        (torch.zeros(0, 4, 700), r"x has T = 0 time steps"),
        (torch.full((5, 4, 700), float("nan")), r"x contains 14000 NaN/inf"),
        (torch.tensor(float("inf")).expand(3, 4, 700), r"x contains 8400 NaN/inf"),
    ],
)
def test_bad_sequences_name_the_argument(x, match):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises((ValueError, TypeError), match=match):
        train_batch(net, x, torch.zeros(4, dtype=torch.long), opt)
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate_batch(net, x)


def test_bad_labels_and_options():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, _ = _data(steps=3)
    with pytest.raises(ValueError, match=r"y has labels in \[0, 20\].*expected 0\.\.19"):
        train_batch(net, x, torch.tensor([0, 1, 2, 20]), opt)
    with pytest.raises(TypeError, match=r"y must hold integer class indices"):
        train_batch(net, x, torch.zeros(4), opt)
    with pytest.raises(ValueError, match=r"y has size 3 in dimension 0 but 4"):
        train_batch(net, x, torch.zeros(3, dtype=torch.long), opt)
    with pytest.raises(ValueError, match=r"window must be an integer ≥ 1.*got 0"):
        train_batch(net, x, torch.zeros(4, dtype=torch.long), opt, window=0)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        train_batch(net, x, torch.zeros(4, dtype=torch.long), opt, mode="rtrl")
    with pytest.raises(ValueError, match=r"mode='bptt' needs a BPTT model"):
        train_batch(net, x, torch.zeros(4, dtype=torch.long), opt, mode="bptt")


def test_bad_layer_configuration():
    with pytest.raises(ValueError, match=r"unknown surrogate psi='z'"):
        SHDNetSTLLR(hidden=4, psi="z")
    with pytest.raises(ValueError, match=r"factors must be \[lambda_post"):
        STLLRFactors.from_list([0.5, 0.8, 1.0])
    with pytest.raises(ValueError, match=r"STLLRFactors.alpha_post must be a finite number"):
        STLLRFactors(alpha_post=float("nan"))
    with pytest.raises(ValueError, match=r"feedback mode must be one of"):
        SHDNetSTLLR(hidden=4, feedback="FA")
