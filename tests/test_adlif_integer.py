"""The AdLIF node kind (quantization/nodes/adaptive.py; docs/fixed_point.md, "Adaptive
layers"): a hand-computed sequence, a naive per-sample integer reference
(tests/reference_integer_adlif.py) for dense + recurrent nodes with per-neuron constants,
and PTQ of a float AdLIF network against the float model."""

from __future__ import annotations

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.errors import UnsupportedNodeError
from quantization.network import InputFormat, QNetwork
from quantization.nodes import AdaptiveLayer
from quantization.ptq import PTQConfig, quantize_model
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec
from tests.reference_integer_adlif import RefAdaptive


def _i(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def test_a_hand_computed_sequence():
    """One neuron, W = 5, dv = 1024 (keeps 3/4), dw = 2048 (1/2), ka = 2^23 (h/2), kb = 100,
    vth = 10 (θ = 640), hard reset; inputs 3, 0, 2, 0, 0, 0. By hand (decay truncates
    toward zero): t0 v = 960 > 640 fires, ω = 0; t1 v = 0, ω = 960/2 + 100 = 580;
    t2 v = 640 − 580 = 60, ω = 290; t3 v = 45 − 290 = −245, ω = 145 + 30 = 175;
    t4 v = −183 − 175 = −358, ω = 87 − 122 = −35; t5 v = −268 + 35 = −233, ω = −17 − 179."""
    node = AdaptiveLayer("ad", ("input",), _i([[5]]), 0, _i([1024]), _i([2048]), _i([1 << 23]),
                         _i([100]), 10, "hard")  # fmt: skip
    emu = IntegerEmulator(QNetwork((node,), (1,), 1, InputFormat(0, 0, 3)))
    want = [(1, 0, 0, 960), (0, 0, 580, 0), (0, 60, 290, 60), (0, -245, 175, -245),
            (0, -358, -35, -358), (0, -233, -196, -233)]  # fmt: skip
    for x, (s, v, w, h) in zip((3, 0, 2, 0, 0, 0), want, strict=True):
        out = emu.forward(_i([[x]]))["ad"]
        st = emu.state["ad"]
        assert (int(out), int(st.v), int(st.w), int(st.h)) == (s, v, w, h)


@pytest.mark.parametrize("reset,rec", [("hard", True), ("soft", True), ("hard", False)])
def test_emulator_equals_the_naive_reference(reset, rec):
    g = torch.Generator().manual_seed(11)
    n_in, n = 9, 6
    w = torch.randint(-40, 41, (n, n_in), generator=g)
    w_rec = torch.randint(-30, 31, (n, n), generator=g) if rec else None
    dv, dw = torch.randint(200, 2000, (n,), generator=g), torch.randint(10, 600, (n,), generator=g)
    ka, kb = torch.randint(0, 3 << 22, (n,), generator=g), torch.randint(0, 900, (n,), generator=g)
    bias = torch.randint(-50, 80, (n,), generator=g)
    node = AdaptiveLayer("ad", ("input",), w, 0, dv, dw, ka, kb, 12, reset, bias_mant=bias,
                         bias_exp=2, weight_rec=w_rec)  # fmt: skip
    emu = IntegerEmulator(QNetwork((node,), (n_in,), n, InputFormat(0, 0, 3)))
    ref = RefAdaptive(w.tolist(), None if w_rec is None else w_rec.tolist(),
                      [int(b) << 2 for b in bias], dv.tolist(), dw.tolist(), ka.tolist(),
                      kb.tolist(), 12, reset)  # fmt: skip
    fired = negative = 0
    for _ in range(40):
        x = torch.randint(0, 4, (3, n_in), generator=g) * (torch.rand(3, n_in, generator=g) < 0.5)
        out = emu.forward(x)["ad"]
        want = ref.step(x.tolist())
        st = emu.state["ad"]
        assert out.tolist() == want
        for key in ("v", "w", "h", "u"):
            assert getattr(st, key).tolist() == [r[key] for r in ref.state], key
        fired += int(out.sum())
        negative += int((st.w < 0).sum())
    assert fired > 0 and negative > 0  # spikes, and the adaptation's negative branch


def test_constants_are_checked():
    with pytest.raises(ValueError, match="ka must be"):
        AdaptiveLayer("ad", ("input",), _i([[1]]), 0, _i([1]), _i([1]), _i([(1 << 24) + 1]),
                      _i([0]), 1, "hard")  # fmt: skip


def _float_adlif(mode="neuron", reset="hard"):
    torch.manual_seed(0)
    spec = NeuronSpec("adlif", tau_mem=5.0, tau_adapt=20.0, threshold=0.5, reset=reset,
                      decay_mode=mode)  # fmt: skip
    m = SHDNeuronNetSTLLR(spec, num_inputs=40, hidden=32, num_classes=5).eval()
    with torch.no_grad():
        m.rec.bias.normal_(0.0, 0.2)
        m.rec.neurons.b.mul_(0.5)
    return m


@pytest.mark.parametrize("mode", ["neuron", "layer"])
def test_ptq_of_an_adlif_network_follows_the_float_model(mode):
    """12-bit PTQ: before any spike differs, the integer voltage h (× LSB) is within 2·10⁻³
    of the float voltage and ω (× LSB / κ) within 2·10⁻³ of the float adaptation w; over 30
    steps ≥ 98 % of the spikes agree."""
    m = _float_adlif(mode)
    x = (torch.rand(30, 4, 40, generator=torch.Generator().manual_seed(1)) < 0.25).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=12))
    node = qnet.nodes[0]
    assert isinstance(node, AdaptiveLayer)
    p = m.rec.neurons.params()
    kappa = (1.0 - p.alpha.detach().double()).expand(32)
    lsb = node.weight_lsb / 64
    emu = IntegerEmulator(qnet)
    for mod in m.modules():
        if hasattr(mod, "reset_state") and mod is not m:
            mod.reset_state()
    same = total = 0
    diverged = False
    adapted = 0.0
    with torch.no_grad():
        for t in range(30):
            s_float = m.rec(x[t])
            out = emu.forward(x[t].to(torch.int64))["rec"].float()
            fl, st = m.rec.state.neuron, emu.state["rec"]
            if not diverged:
                assert torch.allclose(st.h.double() * lsb, fl.h.double(), atol=2e-3)
                assert torch.allclose(st.w.double() * lsb / kappa, fl.w.double(), atol=2e-3)
                adapted = max(adapted, float(fl.w.abs().max()))
            diverged = diverged or not torch.equal(out, s_float)
            same += int((out == s_float).sum())
            total += out.numel()
    assert same / total >= 0.98
    assert adapted > 0.05  # the adaptation was active while compared


def test_a_negative_coupling_is_refused_not_clamped():
    """ka is unsigned: a float a < 0 (which the toolkit's training never makes, it clamps
    a to [0, 1]) would have been quantized to 0 silently; PTQ names the layer instead."""
    m = _float_adlif("neuron")
    with torch.no_grad():
        m.rec.neurons.a[3] = -0.2
    x = (torch.rand(5, 2, 40, generator=torch.Generator().manual_seed(1)) < 0.25).float()
    with pytest.raises(UnsupportedNodeError, match=r"rec: the AdLIF coupling needs"):
        quantize_model(m, [x], PTQConfig(weight_bits=8))
