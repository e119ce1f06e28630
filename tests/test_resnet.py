"""Spiking ResNet-18: shape, parameter count, T = 1 parity with BPTT, learning signal."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stllr.config import ExperimentConfig
from stllr.factors import STLLRFactors
from stllr.models.factory import build_model
from stllr.models.resnet import SpikingResNet18
from stllr.training import train_batch

NARROW = (4, 8, 8, 8)


def test_full_resnet18_shape_and_size():
    model = SpikingResNet18((2, 48, 48), 10)
    n = sum(p.numel() for p in model.parameters())
    # 11.2 M convolution weights of ResNet-18 (+ WS gains, biases, the 1x1 shortcuts, head)
    assert 11.0e6 < n < 11.5e6
    model.reset_state()
    with torch.no_grad():
        assert model(torch.rand(2, 2, 48, 48)).shape == (2, 10)


def test_t1_stllr_resnet_equals_bptt_resnet():
    """At T = 1 with α_post = 0, the S-TLLR ResNet's gradients equal the BPTT twin's."""
    torch.manual_seed(0)
    factors = STLLRFactors(0.2, 0.75, 0.0, 1.0)
    stllr = SpikingResNet18((2, 8, 8), 3, "stllr", NARROW, factors).double()
    bptt = SpikingResNet18((2, 8, 8), 3, "bptt", NARROW, factors).double()
    src = dict(stllr.named_parameters())
    dst = {n.replace(".conv.", "."): p for n, p in bptt.named_parameters()}
    assert src.keys() == dst.keys()
    with torch.no_grad():
        for name, a in src.items():
            if name.endswith(".bias") and name != "head.bias":
                a.uniform_(0.2, 0.6)  # drive every layer to spike
            dst[name].copy_(a)
    x = torch.rand(4, 2, 8, 8, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 1])
    for m in (stllr, bptt):
        m.reset_state()
        F.cross_entropy(m(x), y).backward()
    for name, a in src.items():
        assert (a.grad - dst[name].grad).abs().max() <= 1e-10, name
    assert stllr.stem.weight.grad.abs().max() > 0
    assert stllr.blocks[-1].conv2.weight.grad.abs().max() > 0


def test_resnet_trains_through_factory():
    cfg = ExperimentConfig(
        arch="resnet18", method="stllr", channels=NARROW, factors=(0.2, 0.75, -1.0, 1.0), window=2
    )
    torch.manual_seed(1)
    model, mode = build_model(cfg, (2, 16, 16), 5)
    x = torch.rand(4, 3, 2, 16, 16) * 2  # [T, B, C, H, W]
    y = torch.tensor([0, 1, 2])
    before = model.head.bias.detach().clone()
    train_batch(model, x, y, torch.optim.Adam(model.parameters(), 1e-2), mode=mode, window=2)
    assert not torch.equal(before, model.head.bias)
