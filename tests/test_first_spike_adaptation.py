"""On-device learning of a first-spike network (docs/first_spike.md, "On-device learning
of a first-spike network"): the device learner sends the quantized teaching signal of its
own output spikes, and the float learner's S-TLLR step equals the rule written as loops."""

from __future__ import annotations

import math

import torch

from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.functional.first_spike_teacher import FSTeacher
from tests.test_first_spike_deploy import _input, _net
from tests.test_first_spike_teacher import _naive


def test_device_learner_sends_the_quantized_teaching_signal_of_its_spikes():
    """DeviceLearner (host path): out's L is round(δ/2^l_exp) of the naive δ of the out
    spikes it emitted, fc1's round(δ·W_out/2^l_exp) with W_out as it was at that step."""
    from pipeline.learners import DeviceLearner, make_plastic

    net, x = _net("culif"), _input(batch=2, steps=40)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    plastic = make_plastic(qnet, ("fc1", "out"), [x], lr=0.02, seed=2)
    teacher = FSTeacher(0.2, 3.0)
    learner = DeviceLearner(plastic, ("fc1", "out"), window=40, teacher=teacher)
    xi = quantize_input(x, qnet.input_format)
    for j, label in enumerate((2, 4)):
        w_before = learner.emu.weights("out")["w"].clone()
        sig, outs = learner.learn_sample(xi[:, j : j + 1], label)
        delta = _naive(outs["out"].double(), torch.tensor([label]), 0.2, 3.0, False)[:, 0]
        spec = plastic.node("out").learning
        want = (delta / 2.0**spec.l_exp).round().clamp(-128, 127)
        assert torch.equal(sig["out"][:, 0].double(), want)
        assert (sig["out"] < 0).any() and (sig["out"] > 0).any()
        # fc1 at step 0 reads the deployed out weights of this sample's start
        w0 = w_before.double() * 2.0 ** plastic.node("out").weight_exp
        spec1 = plastic.node("fc1").learning
        want1 = ((delta[0] @ w0) / 2.0**spec1.l_exp).round().clamp(-128, 127)
        assert torch.equal(sig["fc1"][0, 0].double(), want1)
    moved = learner.network().node("out").weight != qnet.node("out").weight
    assert moved.any()


def _psi_e(v: float) -> float:
    return 1.0 / (5.0 * abs(v) + 1.0) ** 2


def test_float_learner_step_equals_the_rule_written_as_loops():
    """FloatFSLearner on ``out``: the CuLIF output layer (v = αv + (1−α)i, i = βi + c, hard
    reset), the traces P, P^i, Q and ΔW_ij = −η(α_pre·κ·Ψ_i·δ_i·P_j + α_post·δ_i·Q_i[t−1]·h_j)
    at every step, written per synapse from docs/neurons.md §3 and docs/rule.md §5."""
    from pipeline.float_fs_learner import FloatFSLearner
    from quantization.convert import DEFAULT_FACTORS as F

    net, x = _net("culif").double(), _input(batch=1, steps=40, seed=3).double()
    with torch.no_grad():
        net.out.weight.mul_(3.0)  # output spikes within 40 steps
    eta, label, teacher = 0.05, 3, FSTeacher(0.2, 2.0)
    learner = FloatFSLearner(net, ("out",), eta, window=40, teacher=teacher)
    learner.learn_sample(x, label)
    got = learner.model.out.weight.detach().double()

    # the reference: hidden spikes from the deployed model, the output layer by hand
    net.reset_state()
    hidden = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            hidden.append(net.body(x[t])[0].double().clone())
    pop = net.out_neuron.pop
    assert pop.spec.reset == "hard"
    alpha, beta = float(pop.params().alpha), float(pop.params().beta)
    theta, kappa = float(pop.spec.threshold), 1.0 - float(pop.params().alpha)
    w = net.out.weight.detach().double().clone()
    k_out, n_in = w.shape
    v, i = [0.0] * k_out, [0.0] * k_out
    p, pi, q = [0.0] * n_in, [0.0] * n_in, [0.0] * k_out
    raster = torch.zeros(x.shape[0], 1, k_out)
    for t, h in enumerate(hidden):
        p = [F.lambda_pre * p[j] + pi[j] for j in range(n_in)]
        pi = [beta * pi[j] + float(h[j]) for j in range(n_in)]
        psi = []
        for n in range(k_out):
            c = sum(float(w[n, j]) * float(h[j]) for j in range(n_in))
            v[n] = alpha * v[n] + (1.0 - alpha) * i[n]
            i[n] = beta * i[n] + c
            psi.append(_psi_e(v[n] - theta))
            if v[n] > theta:
                raster[t, 0, n] = 1.0
                v[n] = 0.0
        delta = _naive(raster[: t + 1], torch.tensor([label]), 0.2, 2.0, False)[t, 0]
        for n in range(k_out):
            for j in range(n_in):
                e = F.alpha_pre * kappa * psi[n] * p[j] + F.alpha_post * q[n] * float(h[j])
                w[n, j] -= eta * float(delta[n]) * e
        q = [F.lambda_post * q[n] + psi[n] for n in range(k_out)]
    assert raster.sum() > 0
    torch.testing.assert_close(got, w, rtol=0, atol=1e-5 * float(w.abs().max()))
    assert float((got - net.out.weight.detach().double()).abs().max()) > 1e-3
    assert math.isfinite(float(got.sum()))
