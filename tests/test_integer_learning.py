"""On-device S-TLLR in the batched integer emulator equals a naive integer reference exactly.

The reference (tests/reference_integer_stllr.py) loops over samples, neurons and
synapses in Python ints. Spikes, traces and the learned weights must be identical
after every step, for dense (soft reset), recurrent dense (hard reset), conv and
readout nodes, with stochastic and deterministic trace rounding, several factor sets
(negative α_post included) and a learning signal at every step.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from quantization.emulator import IntegerEmulator
from quantization.learning_formats import LearningSpec, psi_table
from quantization.network import QNetwork, Readout, SpikingLayer
from tests.reference_integer_stllr import RefLayer, all_indices


def _spec(**kw) -> LearningSpec:
    base = dict(
        lam_pre=3500, lam_post=2048, a_pre=64, a_post=-32, a_frac=6, p_frac=3, q_frac=5,
        l_exp=-6, lr_mant=90, lr_shift=14, trace_bits=7, trace_rounding="stochastic",
        w_min=-128, w_max=127, seed=11,
    )  # fmt: skip
    base.update(kw)
    return LearningSpec(**base)


def _to_dict(t: torch.Tensor) -> dict:
    return {i: int(t[i]) for i in all_indices(tuple(t.shape))}


def _run(node, in_shape, steps, batch, gen, density=0.4, signal_scale=60):
    qnet = QNetwork(nodes=(node,), input_shape=in_shape, num_classes=2)
    emu = IntegerEmulator(qnet)
    w = node.weight
    ref = RefLayer(
        "readout" if isinstance(node, Readout) else node.kind,
        _to_dict(w),
        node.learning,
        dv=node.dv,
        vth=getattr(node, "vth", 0),
        reset=getattr(node, "reset", "soft"),
        bias=None if node.bias_mant is None else [int(b) << node.bias_exp for b in node.bias_mant],
        w_rec=None if getattr(node, "weight_rec", None) is None else _to_dict(node.weight_rec),
        psi=None
        if isinstance(node, Readout)
        else (node.psi.table.tolist(), node.psi.shift, node.psi.half, node.psi.frac),
        padding=node.padding[0] if isinstance(node, SpikingLayer) else 0,
    )
    emu.reset()
    changed = 0
    for t in range(steps):
        x = (torch.rand((batch, *in_shape), generator=gen) < density).to(torch.int64)
        x = x * torch.randint(1, 3, x.shape, generator=gen)  # graded inputs (e.g. pooled)
        outs = emu.forward(x)
        out = outs[node.name]
        out_shape = tuple(out.shape[1:])
        sig = torch.randint(-signal_scale, signal_scale + 1, out.shape, generator=gen)
        xs = [_to_dict(x[b]) for b in range(batch)]
        ref_out = ref.step(xs, in_shape, out_shape, emu.t)
        for b in range(batch):
            assert _to_dict(out[b]) == ref_out[b], f"outputs differ at t={t}, sample {b}"
            st = emu.state[node.name].traces
            assert _to_dict(st.p[b]) == ref.state[b]["p"], f"pre-trace differs at t={t}"
            if st.q is not None:
                assert _to_dict(st.q[b]) == ref.state[b]["q"], f"post-trace differs at t={t}"
        emu.apply_signals({node.name: sig})  # learning from this step's signal
        ref.learn(xs, [_to_dict(sig[b]) for b in range(batch)], in_shape, out_shape, emu.t)
        w_now = emu.weights(node.name)["w"]
        assert _to_dict(w_now) == ref.w, f"weights differ after the update at t={t}"
        if ref.w_rec is not None:
            assert _to_dict(emu.weights(node.name)["w_rec"]) == ref.w_rec
        changed = int((w_now != w).sum())
    return changed, emu


def _dense(gen, n_in=7, n_out=5, spec=None, reset="soft", rec=False, psi="b"):
    w = torch.randint(-60, 61, (n_out, n_in), generator=gen)
    e = -7
    w_rec = torch.randint(-40, 41, (n_out, n_out), generator=gen) if rec else None
    return SpikingLayer(
        name="dense", inputs=("input",), kind="dense", weight=w, weight_exp=e, dv=1200,
        vth=70, reset=reset, bias_mant=torch.randint(-300, 300, (n_out,), generator=gen),
        bias_exp=1, weight_rec=w_rec,
        psi=psi_table(psi, 2.0**e / 64), learning=spec or _spec(),
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec_kw",
    [
        {},
        {"trace_rounding": "toward_zero"},
        {"a_post": 0, "lam_post": 0, "q_frac": 7},  # OTTT-like: no non-causal term
        {"a_pre": 127, "a_post": 127, "lr_shift": 33, "lr_mant": 127},  # noise wider than 32 bits
        {"lr_shift": -1, "lr_mant": 1, "trace_bits": 5},  # multiply instead of shift
    ],
)
def test_dense_update_equals_reference(spec_kw):
    gen = torch.Generator().manual_seed(3)
    node = _dense(gen, spec=_spec(**spec_kw))
    changed, _ = _run(node, (7,), steps=14, batch=3, gen=gen)
    assert changed > 0  # the rule really moved weights


@pytest.mark.parametrize("psi", ["a", "c", "d"])
def test_recurrent_hard_reset_equals_reference(psi):
    gen = torch.Generator().manual_seed(5)
    node = _dense(gen, spec=_spec(lam_pre=4096, q_frac=4), reset="hard", rec=True, psi=psi)
    changed, emu = _run(node, (7,), steps=12, batch=2, gen=gen)
    assert changed > 0


def test_conv_update_equals_reference():
    gen = torch.Generator().manual_seed(9)
    e = -6
    node = SpikingLayer(
        name="conv", inputs=("input",), kind="conv",
        weight=torch.randint(-50, 51, (3, 2, 3, 3), generator=gen), weight_exp=e, dv=2048,
        vth=40, reset="soft", bias_mant=torch.randint(-100, 100, (3,), generator=gen),
        padding=(1, 1), psi=psi_table("b", 2.0**e / 64), learning=_spec(p_frac=2),
    )  # fmt: skip
    changed, _ = _run(node, (2, 4, 4), steps=6, batch=2, gen=gen)
    assert changed > 0


def test_readout_update_equals_reference():
    gen = torch.Generator().manual_seed(13)
    node = Readout(
        name="ro", inputs=("input",), weight=torch.randint(-90, 91, (4, 9), generator=gen),
        weight_exp=-7, dv=30, bias_mant=torch.randint(-50, 50, (4,), generator=gen), bias_exp=2,
        learning=_spec(a_post=0, lam_pre=4055, p_frac=1, q_frac=0),
    )  # fmt: skip
    changed, _ = _run(node, (9,), steps=10, batch=3, gen=gen)
    assert changed > 0


def test_same_seed_same_weights_other_seed_differs():
    gen = torch.Generator().manual_seed(21)
    node = _dense(gen)
    runs = []
    for seed in (11, 11, 12):
        g = torch.Generator().manual_seed(0)
        n = dataclasses.replace(node, learning=dataclasses.replace(node.learning, seed=seed))
        _, emu = _run(n, (7,), steps=8, batch=2, gen=g)
        runs.append(emu.weights("dense")["w"].clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
