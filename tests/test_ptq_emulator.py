"""Post-training quantization and the integer emulator against independent references.

References: the float task models themselves (eval mode, ``reset_state`` then one call
per step), a naive float simulation of the dequantized integer network written here,
brute-force searches for the exponents, and closed-form error bounds of the integer
decay (which rounds toward zero, so each step loses less than one state LSB).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from quantization.convert import register_converter, stllr_layer_spec
from quantization.emulator import IntegerEmulator
from quantization.learning_formats import psi_table
from quantization.network import Add, QNetwork, Readout, SpikingLayer
from quantization.ptq import PTQConfig, QuantizationError, quantize_input, quantize_model
from stllr.errors import UserError
from stllr.layers.stllr_layers import LinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.resnet import SpikingResNet18
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.models.vgg import VGGBPTT, VGGSTLLR
from stllr.neuron import LIFParams

T, B = 20, 4
VGG_KW = dict(channels=(8, 16), pool_after=(0, 1))


def _resnet(family: str) -> SpikingResNet18:
    """A narrow ResNet-18 whose standardised-weight gains are doubled: with unit gains the
    random 4-channel blocks fall silent after the second stage, which would leave the
    deep layers (and the logits) untested."""
    m = SpikingResNet18((2, 16, 16), 5, family=family, widths=(4, 4, 8, 8))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gain"):
                p.mul_(2.0)
    return m


FAMILIES = {
    "shd_stllr": lambda: SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5),
    "shd_bptt": lambda: SHDNetBPTT(num_inputs=40, hidden=32, num_classes=5),
    "vgg_stllr_max": lambda: VGGSTLLR((2, 16, 16), 5, pooling="max", **VGG_KW),
    "vgg_stllr_avg": lambda: VGGSTLLR((2, 16, 16), 5, pooling="avg", **VGG_KW),
    "vgg_bptt": lambda: VGGBPTT((2, 16, 16), 5, **VGG_KW),
    "resnet_stllr": lambda: _resnet("stllr"),
    "resnet_bptt": lambda: _resnet("bptt"),
}
FEEDFORWARD_AND_RECURRENT = [k for k in FAMILIES if not k.startswith("resnet")]


def _build(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = FAMILIES[family]().eval()
    gen = torch.Generator().manual_seed(seed + 100)
    x = (torch.rand(T, B, *model.input_shape, generator=gen) < 0.3).float() * 2
    return model, x


def _float_logits_sum(model, x) -> torch.Tensor:
    model.eval()
    model.reset_state()
    with torch.no_grad():
        return sum(model(x[t]) for t in range(x.shape[0])).double()


def _emulate(model, x, bits: int, record: tuple[str, ...] = ()):
    qnet, reports = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, reports, IntegerEmulator(qnet).run(x, record=record)


def _rel_err(res, ref: torch.Tensor) -> float:
    out = res.logits_sum.double() * res.logit_scale
    return float((out - ref).norm() / ref.norm())


def _overflows(res) -> dict[str, int]:
    return {k: v["overflowed"] for k, v in res.saturation.items() if v["overflowed"]}


# ---------------------------------------------------------------------------------------
# Float model vs emulator as the bit width grows
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FEEDFORWARD_AND_RECURRENT)
def test_emulator_converges_to_float_model(family):
    """Relative L2 error of the summed logits, emulator vs float model.

    It must fall from 4 → 8 → 12 bits and be ≤ 0.1 at 12 bits. Why 0.1: at 12 bits a
    weight or threshold carries at most 2^-12 of the layer's largest weight as rounding
    error, so the membranes differ from the float ones by ~10^-3 θ; only neurons that
    come that close to θ flip, and each flip changes one readout input by one spike.
    Measured over 4 seeds × these 5 models the 12-bit error was 0.001–0.048 (the 8-bit
    one 0.035–0.14, the 4-bit one 0.28–1.2), so 0.1 keeps a ≥ 2× margin while any
    systematic error (a wrong scale, decay or threshold) gives errors of order 1.
    """
    model, x = _build(family)
    ref = _float_logits_sum(model, x)
    errs = {}
    for bits in (4, 8, 12):
        _, _, res = _emulate(model, x, bits)
        errs[bits] = _rel_err(res, ref)
        if bits == 12:
            assert not _overflows(res), "nothing may saturate at 12 bits"
            assert all(c > 0 for c in res.spike_counts.values()), res.spike_counts
    assert errs[4] > errs[8] > errs[12], errs
    assert errs[12] <= 0.1, errs


def _resnet_layers(model: SpikingResNet18) -> dict[str, nn.Module]:
    """Spiking layers by the names :mod:`quantization.convert` gives them."""
    layers = {"stem": model.stem}
    for b, block in enumerate(model.blocks):
        layers[f"b{b}.conv1"] = block.conv1
        layers[f"b{b}.conv2"] = block.conv2
        if not isinstance(block.shortcut, nn.Identity):
            layers[f"b{b}.short"] = block.shortcut
    return layers


@pytest.mark.parametrize("family", ["resnet_stllr", "resnet_bptt"])
def test_resnet_layers_converge_when_driven_by_emulator_spikes(family):
    """ResNet-18 has 20 spiking layers in series; one spike flipped by rounding in the
    stem cascades (measured: 0.04% flips in the stem grow to ~12% by the last stage at 12
    bits), so end-to-end logits are not a measure of quantization error here. Instead
    every float layer is driven by the emulator's own input to that layer (the float
    sum of its spikes through the block structure, rebuilt here from the model's
    modules) and must reproduce the emulator's spikes: the fraction of differing
    (t, b, neuron) entries falls 4 → 8 → 12 bits and is ≤ 0.2% at 12 bits (measured
    0.015–0.03%; 4 bits: ~5%, 8 bits: ~0.4%; dropping the residual shift gives 2%).

    The head, driven the same way, obeys a closed-form bound: each mantissa of the head's
    effective weight (input scale folded in) is off by at most half an LSB ``2^(e−1)``,
    so per logit ``|Σ_t o_emu − Σ_t o_float| ≤ 2^(e−1)·Σ_t Σ_i |g_i[t]|`` with ``g`` the
    integer output of the global sum-pool that feeds it (the bias is zero and needs no
    rounding), plus float32 rounding of the float head.
    """
    model, x = _build(family)
    layers = _resnet_layers(model)
    fractions = {}
    for bits in (4, 8, 12):
        qnet, _, res = _emulate(model, x, bits, record=(*layers, "gap"))
        rec = {k: torch.stack(v).float() for k, v in res.records.items()}
        inputs = {"stem": x}
        prev = F.avg_pool2d(rec["stem"].flatten(0, 1), 2).unflatten(0, (T, B))
        for b in range(len(model.blocks)):
            inputs[f"b{b}.conv1"] = prev
            inputs[f"b{b}.conv2"] = rec[f"b{b}.conv1"]
            short = prev
            if f"b{b}.short" in layers:
                inputs[f"b{b}.short"] = prev
                short = rec[f"b{b}.short"]
            prev = rec[f"b{b}.conv2"] + short
        model.reset_state()
        differ = total = 0
        with torch.no_grad():
            for name, layer in layers.items():
                out = torch.stack([layer(inputs[name][t]) for t in range(T)])
                differ += int((out != rec[name]).sum())
                total += out.numel()
            gap = torch.stack([model.gap(prev[t]).flatten(1) for t in range(T)]).double()
            head = sum(model.head(gap[t].float()) for t in range(T)).double()
        fractions[bits] = differ / total
        if bits == 12:
            assert not _overflows(res)
            last = [k for k in layers if k.startswith("b7")]
            assert all(res.spike_counts[k] > 0 for k in last), res.spike_counts
            e = qnet.node("head").weight_exp
            bound = 2.0 ** (e - 1) * rec["gap"].double().abs().sum(dim=(0, 2))[:, None]
            diff = (res.logits_sum.double() * res.logit_scale - head).abs()
            assert bool((diff <= bound + 1e-5 * head.abs().max()).all())
    assert fractions[4] > fractions[8] > fractions[12], fractions
    assert fractions[12] <= 0.002, fractions


@pytest.mark.parametrize("family", list(FAMILIES))
def test_16_bit_overflow_is_reported_not_silent(family):
    """At 16 bits the threshold (in weight LSBs) and the membranes outgrow Lava's 24-bit
    state / 17-bit threshold. Either PTQ refuses (QuantizationError naming the layer and
    the threshold) or the emulator counts saturated currents or membranes. At 12 bits
    (checked in the tests above) nothing saturates, so the counts are not spurious."""
    model, x = _build(family)
    try:
        _, _, res = _emulate(model, x, 16)
    except QuantizationError as err:
        msg = str(err)
        assert "threshold" in msg and "17-bit" in msg
        assert msg.startswith("layer ") and msg.split()[1].rstrip(":") in _node_names(model)
        return
    sat = _overflows(res)
    assert any(k.endswith(("/current", "/membrane")) for k in sat), res.saturation


def _node_names(model) -> set[str]:
    qnet, _ = quantize_model(model, [torch.zeros(1, 1, *model.input_shape)], PTQConfig())
    return {n.name for n in qnet.nodes}


# ---------------------------------------------------------------------------------------
# An independent float simulation of the dequantized integer network (SHD S-TLLR)
# ---------------------------------------------------------------------------------------


def test_shd_emulator_equals_naive_float_simulation_of_dequantized_network():
    """Weights ``m·2^e``, threshold ``vth·2^e``, decay ``1 − dv/4096``, soft reset,
    ``I = W x + W_rec s[t−1] + b`` in float64. The emulator differs only by its decay
    rounding (toward zero, < 1 membrane LSB per step, so < t LSBs after t steps): spikes
    must agree at ≥ 99% of the (t, b, neuron) entries. For samples whose spike trains
    agree exactly, the readout (same rounding, no decay at t = 0) obeys
    ``|Σ_t o_emu − Σ_t o_float| < Σ_t t = T(T−1)/2`` readout LSBs per logit."""
    model, x = _build("shd_stllr")
    qnet, _, res = _emulate(model, x, 12, record=("rec",))
    rec, ro = qnet.node("rec"), qnet.node("readout")
    assert isinstance(rec, SpikingLayer) and isinstance(ro, Readout)
    lsb = 2.0**rec.weight_exp
    w = rec.weight.double() * lsb
    w_rec = rec.weight_rec.double() * lsb
    bias = (rec.bias_mant << rec.bias_exp).double() * lsb / 64
    theta = rec.vth * lsb
    decay = 1 - rec.dv / 4096
    assert rec.reset == "soft" and qnet.input_format.exp == 0  # 0/2 inputs stay integers
    ro_lsb = 2.0**ro.weight_exp / 64
    ro_w = ro.weight.double() * 2.0**ro.weight_exp
    ro_b = (ro.bias_mant << ro.bias_exp).double() * ro_lsb
    ro_decay = 1 - ro.dv / 4096
    v = torch.zeros(B, w.shape[0], dtype=torch.float64)
    s = torch.zeros_like(v)
    o = torch.zeros(B, ro_w.shape[0], dtype=torch.float64)
    spikes, o_sum = [], torch.zeros_like(o)
    for t in range(T):
        v = decay * v + x[t].double() @ w.T + s @ w_rec.T + bias
        s = (v > theta).double()
        v = v - theta * s
        o = ro_decay * o + s @ ro_w.T + ro_b
        o_sum += o
        spikes.append(s)
    spikes = torch.stack(spikes)
    emu = torch.stack(res.records["rec"]).double()
    agree = float((spikes == emu).double().mean())
    assert agree >= 0.99, agree
    assert 0.02 < float(emu.mean()) < 0.98  # neither silent nor saturated
    same = [b for b in range(B) if torch.equal(spikes[:, b], emu[:, b])]
    assert same, "no sample with identical spike trains"
    diff = (res.logits_sum.double() - o_sum / ro_lsb).abs()[same]
    assert bool((diff < T * (T - 1) / 2).all()), diff.max()


# ---------------------------------------------------------------------------------------
# PTQ details
# ---------------------------------------------------------------------------------------


def _brute_force_exponent(r: float, bits: int) -> int:
    """The smallest e with round(r / 2^e) ≤ 2^(bits−1) − 1, by scanning upward."""
    top = (1 << (bits - 1)) - 1
    for e in range(-150, 150):
        if round(r / 2.0**e) <= top:
            return e
    raise AssertionError("no exponent found")


def _effective_weights(family: str, model) -> dict[str, list[torch.Tensor]]:
    """Float weights each node must quantize, with the input scale folded in (by hand)."""
    if family == "shd_stllr":
        w, w_rec = model.rec.standardized_weights()
        return {"rec": [w.detach(), w_rec.detach()], "readout": [model.readout.weight.detach()]}
    out, scale = {}, 1.0
    hw = model.input_shape[1]
    for i, (conv, pool) in enumerate(zip(model.convs, model.pools, strict=True)):
        out[f"conv{i}"] = [conv.standardized_weight().detach() * scale]
        scale = 1.0
        if not isinstance(pool, nn.Identity):
            hw //= 2
            scale = 0.25 if isinstance(pool, nn.AvgPool2d) else 1.0  # sum-pool: 4× the mean
    out["head"] = [model.head.weight.detach() * scale / (hw * hw)]  # global average pool
    return out


def _brute_force_vth(r: float, theta: float, bits: int) -> int:
    """The largest integer threshold v (≤ 17 bits) at whose scale θ/v the range r fits."""
    top = (1 << (bits - 1)) - 1
    for v in range((1 << 17) - 1, 0, -1):
        if round(r / (theta / v)) <= top:
            return v
    return 0


@pytest.mark.parametrize("family", ["shd_stllr", "vgg_stllr_max", "vgg_stllr_avg"])
@pytest.mark.parametrize("bits", [3, 8, 12])
@pytest.mark.parametrize("scale", ["pow2", "threshold"])
def test_mantissas_exponents_and_thresholds(family, bits, scale):
    model, x = _build(family)
    qnet, reports = quantize_model(model, [x], PTQConfig(weight_bits=bits, scale=scale))
    top = (1 << (bits - 1)) - 1
    rep = {r.name: r for r in reports}
    lif = model.rec.lif if family == "shd_stllr" else model.convs[0].lif
    for name, tensors in _effective_weights(family, model).items():
        node = qnet.node(name)
        r = max(float(t.abs().max()) for t in tensors)
        e = _brute_force_exponent(r, bits)
        spiking = isinstance(node, SpikingLayer)
        if spiking and scale == "threshold":
            # exact threshold: s = θ/vth, the finest such scale at which max |W| fits
            vth = _brute_force_vth(r, lif.theta_eff, bits)
            s = lif.theta_eff / vth
            assert node.vth == vth == rep[name].vth
            assert round(r / (lif.theta_eff / (vth + 1))) > top  # one step finer overflows
            while 2.0**e < s:  # nominal exponent: the power-of-two rule's, raised to 2^e ≥ s
                e += 1
            assert node.weight_exp == e == rep[name].weight_exp, name
            assert node.gain == pytest.approx(2.0**e / s, rel=1e-12) and node.gain >= 1.0
            assert node.weight_lsb == pytest.approx(s, rel=1e-12)
            assert torch.equal(node.psi.table, psi_table(node.psi.variant, s / 64).table)
        else:
            s = 2.0**e
            assert node.weight_exp == e == rep[name].weight_exp, name
            assert round(r / 2.0 ** (e - 1)) > top  # minimality: one exponent lower overflows
            if spiking:
                assert node.vth == round(lif.theta_eff / s)
                assert node.gain == 1.0
        mants = [node.weight] + (
            [node.weight_rec] if getattr(node, "weight_rec", None) is not None else []
        )
        for m, t in zip(mants, tensors, strict=True):
            assert m.dtype == torch.int64
            assert int(m.min()) >= -top - 1 and int(m.max()) <= top
            assert torch.equal(m, torch.round(t.double() / s).to(torch.int64)), name
        assert rep[name].clipped == 0
        if spiking:
            assert node.dv == round((1 - lif.gamma) * 4096)


def test_threshold_scale_is_spike_equivalent_to_the_float_layer():
    """At the exact-threshold scale the integers are those of the float layer times
    ``gain``: m·2^e ≈ gain·W (half an LSB), vth·2^e = gain·θ (exactly, up to float
    rounding) and the bias likewise, so a float64 LIF with the dequantized weights and
    the *unrounded* threshold reproduces the emulator's spikes."""
    model, x = _build("shd_stllr")
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="threshold"))
    node = qnet.node("rec")
    theta = model.rec.lif.theta_eff
    assert node.vth * node.weight_lsb == pytest.approx(theta, rel=1e-12)
    w = model.rec.standardized_weights()[0].detach().double()
    err = node.weight.double() * node.weight_lsb - w
    assert float(err.abs().max()) <= node.weight_lsb / 2 + 1e-12
    assert node.gain * float(w.abs().max()) == pytest.approx(
        float(node.weight.abs().max()) * 2.0**node.weight_exp, rel=1 / 100
    )


def test_threshold_scale_edge_cases():
    from quantization.exponents import threshold_scale

    assert threshold_scale(0.0, 0.6, 8, 1000) == (1000, 0.6 / 1000)  # all-zero layer
    assert threshold_scale(1e-9, 0.6, 8, 1000)[0] == 1000  # capped at the 17-bit maximum
    assert threshold_scale(0.6 * 127, 0.6, 8, 1000) == (1, 0.6)  # coarsest exact scale
    assert threshold_scale(0.6 * 128, 0.6, 8, 1000)[0] == 0  # not representable
    for r in (0.013, 0.25, 0.6, 3.7):
        v, s = threshold_scale(r, 0.6, 8, (1 << 17) - 1)
        assert v == _brute_force_vth(r, 0.6, 8) and s == 0.6 / v
    with pytest.raises(ValueError):
        threshold_scale(-1.0, 0.6, 8, 10)


def test_unrepresentable_threshold_scale_is_an_error_naming_the_layer():
    from quantization.convert import DEFAULT_FACTORS, FloatSpiking
    from quantization.network import InputFormat
    from quantization.ptq import quantize_graph

    spec = FloatSpiking("big", ("input",), "dense", torch.full((2, 3), 10.0), None,
                        LIFParams(), "b", DEFAULT_FACTORS)  # fmt: skip
    fmt = InputFormat(exp=0, lo=0, hi=255)
    with pytest.raises(QuantizationError, match="big"):  # 10 > 1.5·θ: no exact scale fits
        quantize_graph([spec], fmt, PTQConfig(weight_bits=2, scale="threshold"))
    nodes, _ = quantize_graph([spec], fmt, PTQConfig(weight_bits=8, scale="threshold"))
    assert nodes[0].vth == 7 and int(nodes[0].weight.max()) == round(10.0 / (0.6 / 7))


def test_avg_pool_scale_is_folded_into_the_next_layer():
    """After a 2×2 average pool the integer network sums (4× the mean), so the next
    layer must quantize ``Ŵ/4``; after a max pool, ``Ŵ`` itself."""
    for pooling, factor in (("avg", 0.25), ("max", 1.0)):
        model, x = _build(f"vgg_stllr_{pooling}")
        w = model.convs[1].standardized_weight().detach().double() * factor
        qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="pow2"))
        node = qnet.node("conv1")
        e = _brute_force_exponent(float(w.abs().max()), 8)
        assert node.weight_exp == e
        assert torch.equal(node.weight, torch.round(w / 2.0**e).to(torch.int64))
        qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="threshold"))
        node = qnet.node("conv1")
        theta = model.convs[1].lif.theta_eff
        vth = _brute_force_vth(float(w.abs().max()), theta, 8)
        assert node.vth == vth
        assert torch.equal(node.weight, torch.round(w / (theta / vth)).to(torch.int64))
        pool = qnet.node("pool0")
        assert pool.mode == ("sum" if pooling == "avg" else "max") and pool.kernel == 2


def test_resnet_residual_add_puts_pooled_and_spiking_inputs_on_one_scale():
    """The first residual block adds spikes (scale 1) to the stem's 2×2 average pool
    (a sum-pool, scale 1/4): the spikes are shifted left by 2 bits, and the block's
    output keeps scale 1/4, which the next block's weights absorb."""
    model, x = _build("resnet_stllr")
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="pow2"))
    add0 = qnet.node("b0.add")
    assert isinstance(add0, Add) and add0.inputs == ("b0.conv2", "stem_pool")
    assert add0.shifts == (2, 0)
    add2 = qnet.node("b2.add")  # conv2 + strided shortcut conv: both spikes
    assert add2.shifts in ((), (0, 0))
    w = model.blocks[1].conv1.standardized_weight().detach().double() * 0.25
    node = qnet.node("b1.conv1")
    e = _brute_force_exponent(float(w.abs().max()), 8)
    assert node.weight_exp == e
    assert torch.equal(node.weight, torch.round(w / 2.0**e).to(torch.int64))
    # the exact-threshold scale leaves the Add shifts unchanged (its inputs are spikes)
    qnet_t, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="threshold"))
    assert qnet_t.node("b0.add").shifts == (2, 0)
    assert qnet_t.node("b2.add").shifts in ((), (0, 0))


def test_unrepresentable_threshold_raises_naming_the_layer():
    for factor, reason in ((1e6, "rounds to 0"), (1e-6, "beyond 17 bits")):
        model, x = _build("shd_stllr")
        with torch.no_grad():
            model.rec.gain.mul_(factor)
            model.rec.gain_rec.mul_(factor)
        with pytest.raises(QuantizationError, match=r"layer rec: threshold 0\.6") as info:
            quantize_model(model, [x], PTQConfig(weight_bits=8, scale="pow2"))
        assert "1 … 131071" in str(info.value), reason
    # the exact-threshold scale: huge weights fit no exact scale; tiny ones cap vth
    model, x = _build("shd_stllr")
    with torch.no_grad():
        model.rec.gain.mul_(1e6)
        model.rec.gain_rec.mul_(1e6)
    with pytest.raises(QuantizationError, match=r"layer rec: weight range .* threshold 0\.6"):
        quantize_model(model, [x], PTQConfig(weight_bits=8, scale="threshold"))
    model, x = _build("shd_stllr")
    with torch.no_grad():
        model.rec.gain.mul_(1e-6)
        model.rec.gain_rec.mul_(1e-6)
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8, scale="threshold"))
    assert qnet.node("rec").vth == (1 << 17) - 1


@pytest.mark.parametrize("percentile", [99.0, 90.0])
@pytest.mark.parametrize("scale", ["pow2", "threshold"])
def test_percentile_clips_weights_and_reports_them(percentile, scale):
    bits = 6
    model, x = _build("shd_stllr")
    cfg = PTQConfig(weight_bits=bits, percentile=percentile, scale=scale)
    qnet, reports = quantize_model(model, [x], cfg)
    top = (1 << (bits - 1)) - 1
    w, w_rec = (t.detach().double() for t in model.rec.standardized_weights())
    # range: the largest per-tensor percentile (linear interpolation, as numpy computes it)
    r = max(float(np.percentile(t.abs().numpy(), percentile)) for t in (w, w_rec))
    node = qnet.node("rec")
    if scale == "pow2":
        e = _brute_force_exponent(r, bits)
        assert node.weight_exp == e
        lsb = 2.0**e
    else:
        theta = model.rec.lif.theta_eff
        assert node.vth == _brute_force_vth(r, theta, bits)
        lsb = theta / node.vth
    raw = [torch.round(t / lsb) for t in (w, w_rec)]
    expected_clipped = sum(int(((m > top) | (m < -top - 1)).sum()) for m in raw)
    rep = next(r for r in reports if r.name == "rec")
    assert rep.clipped == expected_clipped > 0
    assert rep.total == w.numel() + w_rec.numel()
    for m, got in zip(raw, (node.weight, node.weight_rec), strict=True):
        assert torch.equal(got, m.clamp(-top - 1, top).to(torch.int64))  # saturated, not wrapped


# ---------------------------------------------------------------------------------------
# Save / load and timing conventions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["shd_stllr", "resnet_bptt", "vgg_stllr_avg"])
def test_save_load_round_trip_is_bit_identical(family, tmp_path):
    model, x = _build(family)
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
    path = tmp_path / "net.qnet"
    qnet.save(path)
    loaded = QNetwork.load(path)
    assert [type(n) for n in loaded.nodes] == [type(n) for n in qnet.nodes]
    for a, b in zip(qnet.nodes, loaded.nodes, strict=True):
        for f in dataclasses.fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(va, torch.Tensor):
                assert torch.equal(va, vb), (a.name, f.name)
            elif f.name == "psi" and va is not None:
                assert torch.equal(va.table, vb.table) and va.shift == vb.shift
            else:
                assert va == vb, (a.name, f.name)
    names = tuple(n.name for n in qnet.nodes)
    r1 = IntegerEmulator(qnet).run(x, record=names)
    r2 = IntegerEmulator(loaded).run(x, record=names)
    assert torch.equal(r1.logits_sum, r2.logits_sum) and r1.logit_scale == r2.logit_scale
    assert r1.spike_counts == r2.spike_counts and r1.saturation == r2.saturation
    for k in names:
        assert all(torch.equal(a, b) for a, b in zip(r1.records[k], r2.records[k], strict=True))


class _OneLayer(SpikingModel):
    """A single dense S-TLLR layer (no bias) whose spikes are the output."""

    def __init__(self):
        super().__init__((12,), 6)
        self.layer = LinearSTLLR(12, 6, bias=False, lif=LIFParams(leak=1.0, threshold=0.6))

    def forward(self, x, target=None):
        return self.layer(x)


register_converter(
    _OneLayer, lambda model, factors: [stllr_layer_spec(model.layer, "layer", ["input"], factors)]
)


def test_delay_one_shifts_a_single_layer_by_exactly_one_step():
    """Lava's Dense delivers the current computed at step t at step t + 1. With no bias a
    neuron at rest stays at rest at step 0, so the whole spike train moves by one step."""
    torch.manual_seed(3)
    model = _OneLayer().eval()
    x = (torch.rand(T, B, 12, generator=torch.Generator().manual_seed(4)) < 0.4).float() * 2
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
    assert [type(n) for n in qnet.nodes] == [SpikingLayer]
    xpad = torch.cat([x, torch.zeros_like(x[:1])])
    s0 = torch.stack(IntegerEmulator(qnet, delay=0).run(xpad, record=("layer",)).records["layer"])
    s1 = torch.stack(IntegerEmulator(qnet, delay=1).run(xpad, record=("layer",)).records["layer"])
    assert int(s0[:T].sum()) > 10
    assert int(s1[0].abs().sum()) == 0
    assert torch.equal(s1[1:], s0[:T])
    # and delay 0 is the float model's timing (same spikes up to rounding flips)
    model.reset_state()
    with torch.no_grad():
        ref = torch.stack([model(x[t]) for t in range(T)])
    assert float((ref == s0[:T]).float().mean()) >= 0.98


def test_delay_one_shifts_each_layer_of_the_shd_network():
    """Two delayed stages (hidden layer, readout): spikes move by one step and the
    readout's state by two (biases are zero; the recurrent current is delayed already)."""
    model, x = _build("shd_stllr")
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=8))
    xpad = torch.cat([x, torch.zeros_like(x[:2])])
    rec = ("rec", "readout")
    r0 = IntegerEmulator(qnet, delay=0).run(xpad, record=rec).records
    r1 = IntegerEmulator(qnet, delay=1).run(xpad, record=rec).records
    s0, s1 = torch.stack(r0["rec"]), torch.stack(r1["rec"])
    o0, o1 = torch.stack(r0["readout"]), torch.stack(r1["readout"])
    assert int(s1[0].sum()) == 0 and torch.equal(s1[1 : T + 1], s0[:T])
    assert int(o1[:2].abs().sum()) == 0 and torch.equal(o1[2:], o0[:T])


# --- input that the formats cannot hold: refused in one line, never computed with ----------


def _tiny_emulator() -> IntegerEmulator:
    w = torch.tensor([[3, -2, 1], [0, 5, -7]])
    layer = SpikingLayer("fc0", ("input",), "dense", w, -4, 300, 6, "soft")
    return IntegerEmulator(QNetwork((layer,), (3,), 2))  # input format [0, 255]


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.tensor([[0, 256, 1]]), r"value 256 is outside .* input format \[0, 255\]"),
        (torch.tensor([[0, -1, 1]]), r"value -1 is outside"),
        (torch.tensor([[2**40, 0, 0]]), r"value 1099511627776 is outside"),
        (torch.tensor([[0.5, 0.0, 1.0]]), r"values must be integers"),
        (torch.tensor([[float("nan"), 0.0, 1.0]]), r"values must be integers \(NaN"),
        (torch.tensor([[float("inf"), 0.0, 1.0]]), r"value inf is outside"),
        (torch.zeros(1, 4, dtype=torch.int64), r"must be \[B, 3\], got \[1, 4\]"),
        (torch.zeros(3, dtype=torch.int64), r"must be \[B, 3\], got \[3\]"),
        (torch.zeros(1, 3, dtype=torch.bool), r"got torch.bool"),
        (np.zeros((1, 3), dtype=np.int64), r"got ndarray"),
    ],
    ids=["256", "-1", "2^40", "fraction", "nan", "inf", "shape", "no-batch", "bool", "numpy"],
)
def test_emulator_refuses_input_its_format_cannot_hold(x, message):
    """Such input used to be computed with as it was (256 in an 8-bit input, 2^40, 0.5) or
    failed deep inside a kernel; it is now a one-line UserError, from forward and step."""
    emu = _tiny_emulator()
    for call in (emu.forward, emu.step):
        with pytest.raises(UserError, match=rf"IntegerEmulator.forward: .*{message}"):
            call(x)
    assert emu.step_count == 0  # refused before anything moved


def test_emulator_takes_the_whole_input_format():
    """The edges of the format are accepted, as integers or integral floats, with the same
    outputs (spikes of W·x with x at 0 and 255, checked against the weights)."""
    emu = _tiny_emulator()
    x = torch.tensor([[255, 0, 0], [0, 0, 255]])
    a = emu.forward(x)["fc0"]
    emu.reset()
    b = emu.forward(x.double())["fc0"]
    assert torch.equal(a, b)
    # W·x: [765, 0] and [255, -1785] weight LSBs at threshold 6: only positive sums spike
    assert a.tolist() == [[1, 0], [1, 0]]


def test_emulator_run_refuses_nan_and_other_shapes():
    """NaN frames used to become −2^63 after quantization; now a one-line UserError."""
    emu = _tiny_emulator()
    x = torch.zeros(4, 2, 3)
    x[2, 1, 0] = float("nan")
    with pytest.raises(UserError, match=r"IntegerEmulator.run: frames: NaN in the input frames"):
        emu.run(x)
    with pytest.raises(UserError, match=r"frames must be \[T, B, 3\], got \[4, 3\]"):
        emu.run(torch.zeros(4, 3))
    with pytest.raises(UserError, match=r"quantize_input: NaN in the input frames"):
        quantize_input(x, emu.qnet.input_format)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ptq_calibration_refuses_non_finite_frames(bad):
    """NaN in a calibration batch used to be skipped by the maxima: the NaN batch below
    turned the integral 0/2 frames' format (exp 0) into a fractional one (exp −6), and
    all-NaN calibration into exp −126; inf failed with a message about a "range"."""
    model, x = _build("shd_stllr")
    poisoned = torch.full_like(x, bad)
    with pytest.raises(UserError, match=r"PTQ calibration: batch 1 holds NaN or inf"):
        quantize_model(model, [x, poisoned], PTQConfig(weight_bits=8))
