"""Independent references from autograd and analytic formulas.

* With T = 1 and α_post = 0, S-TLLR's gradients equal autograd's BPTT gradients
  with the same surrogate (P[0] = x[0], and nothing flows through time).
* DFA injects exactly (softmax − onehot) · B at the hooked layer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stllr.factors import STLLRFactors
from stllr.feedback import FeedbackContext, FeedbackHook
from stllr.layers.bptt import bptt_lif_step
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR
from stllr.models.shd import SHDNetSTLLR
from stllr.neuron import LIFParams
from stllr.surrogates import get_surrogate
from stllr.weight_standardization import standardize_weight


@pytest.mark.parametrize("psi", ["a", "b", "c", "d"])
def test_t1_linear_stack_equals_bptt(psi):
    torch.manual_seed(0)
    lif = LIFParams(leak=2.0, threshold=0.6)
    factors = STLLRFactors(lambda_post=0.5, lambda_pre=0.8, alpha_post=0.0, alpha_pre=1.0)
    l1 = LinearSTLLR(8, 6, lif=lif, factors=factors, psi=psi).double()
    l2 = LinearSTLLR(6, 4, lif=lif, factors=factors, psi=psi).double()
    with torch.no_grad():
        for layer in (l1, l2):
            layer.gain.uniform_(2.0, 4.0)
            layer.bias.uniform_(0.0, 0.5)
    x = torch.rand(5, 8, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, 4, dtype=torch.float64)
    (l2(l1(x)) * c).sum().backward()
    got = [p.grad.clone() for p in (*l1.parameters(), *l2.parameters())] + [x.grad.clone()]

    params = [p.detach().clone().requires_grad_(True) for p in (*l1.parameters(), *l2.parameters())]
    w1, g1, b1, w2, g2, b2 = params
    xr = x.detach().clone().requires_grad_(True)
    f = get_surrogate(psi)
    zero = torch.zeros(5, 6, dtype=torch.float64)
    s1, _ = bptt_lif_step(F.linear(xr, standardize_weight(w1, g1), b1), zero, lif, f)
    s2, _ = bptt_lif_step(F.linear(s1, standardize_weight(w2, g2), b2), zero[:, :4], lif, f)
    (s2 * c).sum().backward()
    want = [p.grad for p in params] + [xr.grad]
    assert s1.sum() > 0 and s2.sum() > 0
    assert all(w.abs().max() > 0 for w in want[:3])
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max() <= 1e-12


def test_t1_conv_equals_bptt():
    torch.manual_seed(1)
    lif = LIFParams(leak=0.0, threshold=0.6)
    factors = STLLRFactors(lambda_post=0.2, lambda_pre=0.75, alpha_post=0.0, alpha_pre=1.0)
    conv = Conv2dSTLLR(2, 3, 3, padding=1, lif=lif, factors=factors, psi="b").double()
    with torch.no_grad():
        conv.gain.uniform_(2.0, 3.0)
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    (conv(x) * c).sum().backward()

    w = conv.weight.detach().clone().requires_grad_(True)
    g = conv.gain.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    current = F.conv2d(xr, standardize_weight(w, g), b, padding=1)
    s, _ = bptt_lif_step(current, torch.zeros_like(current), lif, get_surrogate("b"))
    (s * c).sum().backward()
    for got, want in (
        (conv.weight.grad, w.grad),
        (conv.gain.grad, g.grad),
        (conv.bias.grad, b.grad),
        (x.grad, xr.grad),
    ):
        assert want.abs().max() > 0
        assert (got - want).abs().max() <= 1e-12


@pytest.mark.parametrize("mode", ["DFA", "sDFA"])
def test_dfa_injects_error_times_feedback(mode):
    torch.manual_seed(2)
    batch, hidden, classes = 4, 7, 3
    hook = FeedbackHook(classes, (hidden,), mode).double()
    readout = AccumulateReadout(hidden, classes).double()
    y = torch.tensor([0, 2, 1, 2])
    fb = FeedbackContext(F.one_hot(y, classes).double())
    h = torch.rand(batch, hidden, dtype=torch.float64, requires_grad=True)
    logits = readout(hook(h, fb))
    fb.set_output(logits)
    F.cross_entropy(logits, y).backward()

    probs = torch.exp(logits.detach()) / torch.exp(logits.detach()).sum(1, keepdim=True)
    err = probs - torch.eye(classes, dtype=torch.float64)[y]
    if mode == "sDFA":
        err = torch.sign(err)
    b = hook.feedback
    expected = torch.stack([sum(err[n, k] * b[k] for k in range(classes)) for n in range(batch)])
    assert (h.grad - expected).abs().max() <= 1e-12
    # not batch-averaged, while the readout still gets the mean-reduced CE gradient
    ce_err = probs - torch.eye(classes, dtype=torch.float64)[y]
    assert (readout.bias.grad - ce_err.sum(0) / batch).abs().max() <= 1e-12


def test_dfa_feedback_matrix_is_fixed_kaiming_uniform():
    torch.manual_seed(3)
    hook = FeedbackHook(20, (450,), "DFA")
    bound = (6.0 / 450) ** 0.5
    assert hook.feedback.shape == (20, 450)
    assert hook.feedback.abs().max() <= bound
    assert hook.feedback.abs().max() > 0.9 * bound
    assert "feedback" not in dict(hook.named_parameters())


def test_dfa_model_hidden_layer_gets_dfa_signal_not_bp():
    """In the SHD model the recurrent layer's weight gradient follows the DFA signal."""
    torch.manual_seed(4)
    x = (torch.rand(1, 3, 700) < 0.2).float()
    y = torch.tensor([1, 5, 7])
    grads = {}
    for mode in ("BP", "DFA"):
        torch.manual_seed(5)
        net = SHDNetSTLLR(hidden=16, feedback=mode)
        net.reset_state()
        F.cross_entropy(net(x[0], y), y).backward()
        grads[mode] = net.rec.bias.grad.clone()
    assert not torch.allclose(grads["BP"], grads["DFA"])
