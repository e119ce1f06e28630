"""The current-based AdLIF (CuAdLIF) in the AdLIF node kind (quantization/nodes/adaptive.py;
docs/fixed_point.md, "Adaptive layers"): a hand-computed sequence, the emulator against
the naive per-sample integer reference (tests/reference_integer_adlif.py) and PTQ of a
float CuAdLIF network against the float model (stllr.neurons.dynamics.cuadlif_step)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.network import InputFormat, QNetwork
from quantization.nodes import AdaptiveLayer
from quantization.ptq import PTQConfig, quantize_model
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.neurons.population import NeuronSpec
from tests.reference_integer_adlif import RefAdaptive


def _i(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def test_a_hand_computed_sequence():
    """One neuron, W = 5, bias 8, du = 2047 (the current keeps 1/2), dv = 1024 (3/4),
    dw = 2048 (1/2), ka = 2^23 (h/2), kb = 100, vth = 10 (θ = 640), hard reset; inputs
    3, 0, 2, 0, 0, 0 (a = 15, 0, 10, 0, 0, 0). By hand (decays truncate toward zero):
    t0 u = 0 (a and the bias arrive next step), v = 0; t1 u = 15·64 + 8 = 968, v = 968
    fires, ω = 0; t2 u = 484 + 8 = 492, v = 492, ω = 484 + 100 = 584; t3 u = 246 + 640 + 8
    = 894, v = 369 + 894 − 584 = 679 fires, ω = 292 + 246 = 538; t4 u = 447 + 8 = 455,
    v = 455 − 538 = −83, ω = 269 + 339 + 100 = 708; t5 u = 227 + 8 = 235,
    v = −62 + 235 − 708 = −535, ω = 354 − 41 = 313."""
    node = AdaptiveLayer("ad", ("input",), _i([[5]]), 0, _i([1024]), _i([2048]), _i([1 << 23]),
                         _i([100]), 10, "hard", bias_mant=_i([8]), du=_i([2047]))  # fmt: skip
    emu = IntegerEmulator(QNetwork((node,), (1,), 1, InputFormat(0, 0, 3)))
    want = [(0, 0, 0, 0, 0), (1, 0, 0, 968, 968), (0, 492, 584, 492, 492),
            (1, 0, 538, 679, 894), (0, -83, 708, -83, 455), (0, -535, 313, -535, 235)]  # fmt: skip
    for x, (s, v, w, h, u) in zip((3, 0, 2, 0, 0, 0), want, strict=True):
        out = emu.forward(_i([[x]]))["ad"]
        st = emu.state["ad"]
        assert (int(out), int(st.v), int(st.w), int(st.h), int(st.u)) == (s, v, w, h, u)


@pytest.mark.parametrize("reset,rec", [("hard", True), ("soft", True), ("soft", False)])
def test_emulator_equals_the_naive_reference(reset, rec):
    g = torch.Generator().manual_seed(12)
    n_in, n = 9, 6
    w = torch.randint(-40, 41, (n, n_in), generator=g)
    w_rec = torch.randint(-30, 31, (n, n), generator=g) if rec else None
    dv, dw = torch.randint(200, 2000, (n,), generator=g), torch.randint(10, 600, (n,), generator=g)
    du = torch.randint(0, 4096, (n,), generator=g)
    du[0], du[1] = 0, 4095  # the longest memory and none
    ka, kb = torch.randint(0, 3 << 22, (n,), generator=g), torch.randint(0, 900, (n,), generator=g)
    bias = torch.randint(-50, 80, (n,), generator=g)
    node = AdaptiveLayer("ad", ("input",), w, 0, dv, dw, ka, kb, 12, reset, bias_mant=bias,
                         bias_exp=2, weight_rec=w_rec, du=du)  # fmt: skip
    emu = IntegerEmulator(QNetwork((node,), (n_in,), n, InputFormat(0, 0, 3)))
    ref = RefAdaptive(w.tolist(), None if w_rec is None else w_rec.tolist(),
                      [int(b) << 2 for b in bias], dv.tolist(), dw.tolist(), ka.tolist(),
                      kb.tolist(), 12, reset, du.tolist())  # fmt: skip
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


def test_current_decay_is_checked():
    with pytest.raises(ValueError, match="du must be"):
        AdaptiveLayer("ad", ("input",), _i([[1]]), 0, _i([1]), _i([1]), _i([0]), _i([0]), 1,
                      "hard", du=_i([4096]))  # fmt: skip


def _float_cuadlif(mode="neuron", reset="hard"):
    torch.manual_seed(0)
    spec = NeuronSpec("cuadlif", tau_mem=5.0, tau_syn=4.0, tau_adapt=20.0, threshold=0.5,
                      reset=reset, decay_mode=mode)  # fmt: skip
    m = SHDNeuronNetSTLLR(spec, num_inputs=40, hidden=32, num_classes=5).eval()
    with torch.no_grad():
        m.rec.bias.normal_(0.0, 0.2)
        m.rec.neurons.b.mul_(0.5)
    return m


def _follow(m, node, x, qnet) -> tuple[float, float, float, int]:
    """Runs the float model and the emulator (``qnet`` with ``node`` as its layer) side by
    side: ``(largest error of h, w, i before the first differing spike, fraction of equal
    spikes, largest |w| compared, float spikes)``; errors in the float model's units."""
    p = m.rec.neurons.params()
    kappa = (1.0 - p.alpha.detach().double()).expand(node.out_channels)
    lsb = node.weight_lsb / 64
    emu = IntegerEmulator(dataclasses.replace(qnet, nodes=(node, *qnet.nodes[1:])))
    for mod in m.modules():
        if hasattr(mod, "reset_state") and mod is not m:
            mod.reset_state()
    same = total = fired = 0
    diverged = False
    err = adapted = 0.0
    i_prev = None
    with torch.no_grad():
        for t in range(x.shape[0]):
            s_float = m.rec(x[t])
            out = emu.forward(x[t].to(torch.int64))["rec"].float()
            fl, st = m.rec.state.neuron, emu.state["rec"]
            if not diverged:
                err = max(err, float((st.h.double() * lsb - fl.h.double()).abs().max()))
                err = max(err, float((st.w.double() * lsb / kappa - fl.w.double()).abs().max()))
                if i_prev is not None:  # u[t] = κ·i[t−1] / L
                    err = max(err, float((st.u.double() * lsb - kappa * i_prev).abs().max()))
                adapted = max(adapted, float(fl.w.abs().max()))
            i_prev = fl.i.double().clone()
            diverged = diverged or not torch.equal(out, s_float)
            same += int((out == s_float).sum())
            fired += int(s_float.sum())
            total += out.numel()
    return err, same / total, adapted, fired


@pytest.mark.parametrize("mode", ["neuron", "layer"])
def test_ptq_of_a_cuadlif_network_follows_the_float_model(mode):
    """12-bit PTQ: before any spike differs, the integer voltage h, current u and ω (× LSB;
    u against κ·i[t−1], ω / κ against w) are within 4·10⁻³ of the float h, i and w (the
    AdLIF's test holds 2·10⁻³: the current sums the weights' rounding over ~1/(1 − β) ≈ 4.5
    steps and drives v up to ~5 θ here); over 30 steps ≥ 98 % of the spikes agree. The
    same node with its current decay ignored (du = 4095: no current memory) misses the
    float model by more than 0.05."""
    m = _float_cuadlif(mode)
    x = (torch.rand(30, 4, 40, generator=torch.Generator().manual_seed(1)) < 0.25).float()
    qnet, _ = quantize_model(m, [x], PTQConfig(weight_bits=12))
    node = qnet.nodes[0]
    assert isinstance(node, AdaptiveLayer) and node.current_based
    err, agree, adapted, fired = _follow(m, node, x, qnet)
    assert err < 4e-3 and agree >= 0.98
    assert adapted > 0.05 and fired > 20  # adaptation and spikes while compared
    memoryless = dataclasses.replace(node, du=torch.full_like(node.du, 4095))
    err_wrong, _, _, _ = _follow(m, memoryless, x, qnet)
    assert err_wrong > 0.05


def test_the_footprint_counts_the_current_decay():
    """pipeline.cost.footprint: a CuAdLIF layer holds one 12-bit ``du`` per neuron more."""
    from types import SimpleNamespace

    from pipeline.cost import footprint

    ad = AdaptiveLayer("ad", ("input",), _i([[1, 2]] * 3), 0, _i([9] * 3), _i([9] * 3),
                       _i([0] * 3), _i([0] * 3), 1, "hard")  # fmt: skip
    cu = dataclasses.replace(ad, du=_i([7] * 3))
    (a,), (c,) = (footprint(SimpleNamespace(nodes=(n,))) for n in (ad, cu))
    assert c["param_bytes"] - a["param_bytes"] == 3 * 12 / 8
