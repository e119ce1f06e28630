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


def _culif_step(w_in, xs, state, alpha, beta, theta):
    """One CuLIF step of a layer written per neuron (v = αv + (1−α)i, i = βi + Σ_j w_ij x_j,
    hard reset to 0 above θ): returns (spikes, Ψ(v − θ) before reset)."""
    v, i = state
    spikes, psi = [], []
    for n in range(len(v)):
        c = sum(float(w_in[n][j]) * xs[j] for j in range(len(xs)))
        v[n] = alpha * v[n] + (1.0 - alpha) * i[n]
        i[n] = beta * i[n] + c
        psi.append(_psi_e(v[n] - theta))
        spikes.append(1.0 if v[n] > theta else 0.0)
        if v[n] > theta:
            v[n] = 0.0
    return spikes, psi


def test_conv_float_learner_step_equals_the_rule_written_as_loops():
    """FloatFSLearner on fs_plane's ``fc`` (W and W_rec) and ``out``: the two CuLIF layers
    by hand on the pooled spikes of the deployed conv layers, the traces P, P^i of x and
    R, R^i of s_fc[t−1], Q, and per synapse ΔW_ij = −η(α_pre·κ·Ψ_i·δ_i·P_j + α_post·δ_i·
    Q_i[t−1]·x_j) with ``out``'s δ the teaching signal and fc's δ_k = Σ_n δ_n·κ_out·W_out,nk
    (W_out before this step's update), W_rec the same with R and s[t−1]
    (docs/neurons.md §3b, docs/first_spike.md "On-device learning")."""
    from pipeline.float_fs_learner import FloatFSLearner
    from quantization.convert import DEFAULT_FACTORS as F
    from tests.test_first_spike_conv_deploy import PLANE
    from tests.test_first_spike_conv_deploy import _input as conv_input
    from tests.test_first_spike_conv_deploy import _net as conv_net

    net, x = conv_net("culif", PLANE).double(), conv_input(batch=1, steps=30, seed=4).double()
    eta, label, teacher, steps = 0.05, 2, FSTeacher(0.2, 2.0), x.shape[0]
    learner = FloatFSLearner(net, ("fc", "out"), eta, window=steps, teacher=teacher)
    learner.learn_sample(x, label)
    got = [learner.model.fc.weight, learner.model.rec.weight, learner.model.out.weight]

    # the reference: the pooled, flattened spikes feeding fc from the deployed model
    flat = []
    hook = net.fc.register_forward_hook(lambda _m, a, _o: flat.append(a[0][0].tolist()))
    net.reset_state()
    with torch.no_grad():
        for t in range(steps):
            net(x[t])
    hook.remove()
    consts = []
    for neurons in (net.neurons[-1], net.out_neuron):
        pop = neurons.pop
        assert pop.spec.reset == "hard"
        a, b = float(pop.params().alpha), float(pop.params().beta)
        consts.append((a, b, float(pop.spec.threshold), 1.0 - a))
    (a_f, b_f, th_f, k_f), (a_o, b_o, th_o, k_o) = consts
    w = net.fc.weight.detach().tolist()
    w_rec = net.rec.weight.detach().tolist()
    w_out = net.out.weight.detach().tolist()
    n_h, n_in, k_out = len(w), len(flat[0]), len(w_out)
    st_f, st_o = ([0.0] * n_h, [0.0] * n_h), ([0.0] * k_out, [0.0] * k_out)
    p, pi = [0.0] * n_in, [0.0] * n_in  # traces of x (fc)
    r, ri = [0.0] * n_h, [0.0] * n_h  # traces of s_fc[t−1] (fc's W_rec)
    po, poi = [0.0] * n_h, [0.0] * n_h  # traces of s_fc[t] (out)
    q_f, q_o = [0.0] * n_h, [0.0] * k_out
    s_prev = [0.0] * n_h
    raster = torch.zeros(steps, 1, k_out)
    for t in range(steps):
        xs = flat[t]
        w_cat = [w[k] + w_rec[k] for k in range(n_h)]
        s, psi_f = _culif_step(w_cat, xs + s_prev, st_f, a_f, b_f, th_f)
        s_out, psi_o = _culif_step(w_out, s, st_o, a_o, b_o, th_o)
        raster[t, 0] = torch.tensor(s_out)
        p = [F.lambda_pre * p[j] + pi[j] for j in range(n_in)]
        pi = [b_f * pi[j] + xs[j] for j in range(n_in)]
        r = [F.lambda_pre * r[j] + ri[j] for j in range(n_h)]
        ri = [b_f * ri[j] + s_prev[j] for j in range(n_h)]
        po = [F.lambda_pre * po[j] + poi[j] for j in range(n_h)]
        poi = [b_o * poi[j] + s[j] for j in range(n_h)]
        delta = _naive(raster[: t + 1], torch.tensor([label]), 0.2, 2.0, False)[t, 0].tolist()
        d_f = [sum(delta[n] * k_o * w_out[n][k] for n in range(k_out)) for k in range(n_h)]
        for n in range(k_out):
            for j in range(n_h):
                e = F.alpha_pre * k_o * psi_o[n] * po[j] + F.alpha_post * q_o[n] * s[j]
                w_out[n][j] -= eta * delta[n] * e
        for k in range(n_h):
            for j in range(n_in):
                e = F.alpha_pre * k_f * psi_f[k] * p[j] + F.alpha_post * q_f[k] * xs[j]
                w[k][j] -= eta * d_f[k] * e
            for j in range(n_h):
                e = F.alpha_pre * k_f * psi_f[k] * r[j] + F.alpha_post * q_f[k] * s_prev[j]
                w_rec[k][j] -= eta * d_f[k] * e
        q_f = [F.lambda_post * q_f[k] + psi_f[k] for k in range(n_h)]
        q_o = [F.lambda_post * q_o[n] + psi_o[n] for n in range(k_out)]
        s_prev = s
    assert raster.sum() > 0
    for name, g, want, w0 in zip(
        ("fc", "rec", "out"), got, (w, w_rec, w_out),
        (net.fc.weight, net.rec.weight, net.out.weight), strict=True,
    ):  # fmt: skip
        want = torch.tensor(want, dtype=torch.float64)
        torch.testing.assert_close(g.detach(), want, rtol=0, atol=1e-9, msg=name)
        assert float((g.detach() - w0.detach()).abs().max()) > 1e-4, name


def test_conv_float_learner_refuses_a_layer_not_feeding_out():
    """Only ``out`` and ``fc`` (the layer feeding it) learn from the host's signal."""
    import pytest

    from pipeline.float_fs_learner import FloatFSLearner
    from stllr.errors import UserError
    from tests.test_first_spike_conv_deploy import _net as conv_net

    with pytest.raises(UserError, match="'fc'"):
        FloatFSLearner(conv_net("culif"), ("fc1", "out"), 0.1, 10, FSTeacher(0.2, 2.0))


def test_conv_device_learner_teaches_fc_and_its_recurrent_weights():
    """DeviceLearner on fs_plane's ``fc`` and ``out`` (``fc`` found as the node feeding
    ``out``): out's L is round(δ/2^l_exp) of the naive δ of its own spikes, fc's at step 0
    round(δ·W_out/2^l_exp) with the deployed W_out; both W and fc's W_rec move."""
    from pipeline.learners import DeviceLearner, make_plastic
    from tests.test_first_spike_conv_deploy import _input as conv_input
    from tests.test_first_spike_conv_deploy import _net as conv_net

    net, x = conv_net("culif"), conv_input(batch=2, steps=30)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    assert qnet.node("out").inputs == ("fc",)
    plastic = make_plastic(qnet, ("fc", "out"), [x], lr=0.05, seed=2)
    learner = DeviceLearner(plastic, ("fc", "out"), window=30, teacher=FSTeacher(0.2, 2.0))
    xi = quantize_input(x, qnet.input_format)
    w_out = plastic.node("out").weight.double() * 2.0 ** plastic.node("out").weight_exp
    sig, outs = learner.learn_sample(xi[:, :1], 1)
    delta = _naive(outs["out"].double(), torch.tensor([1]), 0.2, 2.0, False)[:, 0]
    spec, spec_fc = plastic.node("out").learning, plastic.node("fc").learning
    want = (delta / 2.0**spec.l_exp).round().clamp(-128, 127)
    assert torch.equal(sig["out"][:, 0].double(), want)
    want_fc = ((delta[0] @ w_out) / 2.0**spec_fc.l_exp).round().clamp(-128, 127)
    assert torch.equal(sig["fc"][0, 0].double(), want_fc)
    assert (sig["fc"] != 0).any()
    learned = learner.network()
    for name, attr in (("out", "weight"), ("fc", "weight"), ("fc", "weight_rec")):
        moved = getattr(learned.node(name), attr) != getattr(qnet.node(name), attr)
        assert moved.any(), (name, attr)
