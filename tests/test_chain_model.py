"""stllr.models.chain.SpikingChain: its forward against the layers applied by hand, the
node names of its quantized graph, and its errors."""

from __future__ import annotations

import pytest
import torch

from quantization.ptq import PTQConfig, quantize_model
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR
from stllr.models.chain import SpikingChain
from stllr.neuron import LIFParams

LIF = LIFParams(leak=1.0, threshold=0.5)


def test_forward_is_the_layers_in_order_with_a_row_major_flatten():
    torch.manual_seed(0)
    conv = Conv2dSTLLR(2, 3, 3, padding=1, lif=LIF)
    fc = LinearSTLLR(3 * 4 * 5, 6, lif=LIF)
    chain = SpikingChain((2, 4, 5), [conv, fc]).eval()
    twin = [Conv2dSTLLR(2, 3, 3, padding=1, lif=LIF), LinearSTLLR(60, 6, lif=LIF)]
    for a, b in zip(twin, [conv, fc], strict=True):
        a.load_state_dict(b.state_dict())
    x = (torch.rand(5, 4, 2, 4, 5) < 0.4).float()
    chain.reset_state()
    for m in twin:
        m.reset_state()
    with torch.no_grad():
        for t in range(5):
            by_hand = twin[1](twin[0](x[t]).reshape(4, -1))
            assert torch.equal(chain(x[t]), by_hand)
    assert chain.num_classes == 6


def test_dense_builds_the_sizes_and_names_the_quantized_nodes():
    chain = SpikingChain.dense([7, 5, 3], [LIF, LIFParams(leak=0.5, threshold=0.7)], prefix="l")
    assert [(m.in_features, m.out_features) for m in chain.layers] == [(7, 5), (5, 3)]
    assert chain.layers[1].lif.threshold == 0.7 and chain.num_classes == 3
    x = (torch.rand(6, 2, 7) < 0.5).float()
    qnet, _ = quantize_model(chain, [x], PTQConfig(weight_bits=8))
    assert [n.name for n in qnet.nodes] == ["l0", "l1"] == chain.node_names()
    assert [n.inputs for n in qnet.nodes] == [("input",), ("l0",)]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one layer"):
        SpikingChain((3,), [])
    with pytest.raises(ValueError, match="3 sizes need 2 LIFParams"):
        SpikingChain.dense([4, 3, 2], [LIF])
