"""Deploying the convolutional first-spike networks ``fs_gesture`` / ``fs_plane``
(docs/first_spike.md, "Networks" and "In the pipeline"): the converted integer network
against the float network (spikes of every layer, FS decisions), the new ``Flatten``
kind and the neuron after a pooling (a depthwise 1×1 layer) against naive loops, and the
pipeline's acceptance of these archs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.deployable import check_deployable
from quantization.emulator import IntegerEmulator
from quantization.network import Flatten, InputFormat, Pool, QNetwork, SpikingLayer
from quantization.nodes import kind_of
from quantization.ptq import PTQConfig, quantize_input, quantize_model
from stllr.config import ExperimentConfig
from stllr.errors import UserError
from stllr.models.neuron_kinds import NeuronSpec
from stllr.models.spiking_output import FSConvNet
from stllr.spike_metrics import fs_decision
from stllr.spike_training import run_sequence
from tests.reference_integer_stllr import UV, decay

GESTURE, PLANE = (3, 1, 1), (5, 2, 2)
NAMES = ["conv0", "conv1", "pool1", "pooled1", "conv2", "pool2", "pooled2", "flat", "fc", "out"]


def _net(kind: str, first=PLANE) -> FSConvNet:
    """A small fs_gesture/fs_plane (2×12×12 input, channels 4-6-6, FC 16, 4 classes); the
    Xavier weights are tripled so that every layer, the output too, fires."""
    torch.manual_seed(0)
    net = FSConvNet((2, 12, 12), 4, (4, 6, 6), 16, first, NeuronSpec(kind, 5.0, 5.0, 0.5),
                    NeuronSpec(kind, 20.0, 20.0, 1.0)).eval()  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net


def _input(batch: int = 8, steps: int = 40, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 2, 12, 12, generator=g) < 0.3).float()


def _float_spikes(net: FSConvNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every spiking layer's float spikes ``[T, B, ...]`` by node name (forward hooks on the
    six hidden neuron modules, in the order of FSConvNet.body), and the output's."""
    hidden = ["conv0", "conv1", "pooled1", "conv2", "pooled2", "fc"]
    got: dict[str, list] = {n: [] for n in hidden}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: got[n].append(out.detach()))
             for n, m in zip(hidden, net.neurons, strict=True)]  # fmt: skip
    try:
        with torch.no_grad():
            s, v = run_sequence(net, x)
    finally:
        for h in hooks:
            h.remove()
    spikes = {n: torch.stack(got[n]) for n in hidden}
    spikes["out"] = s
    spikes["out_v"] = v
    return spikes


def _per_layer_agreement(net, x, bits: int) -> dict[str, float]:
    """Each integer spiking layer of the PTQ'd network, with the weightless nodes before it
    (pooling, flatten), run alone on the float spikes of the layer before (or the input):
    the fraction of its spikes equal to the float layer's. Rounding is then the only
    difference, not errors carried in from earlier layers."""
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=bits))
    ref = _float_spikes(net, x)
    agree, source, chain = {}, "input", []
    for node in qnet.nodes:
        chain.append(node)
        if not isinstance(node, SpikingLayer):
            continue
        xi = x if source == "input" else ref[source]
        first = dataclasses.replace(chain[0], inputs=("input",))
        fmt = qnet.input_format if source == "input" else InputFormat(0, 0, 1)  # spikes
        alone = QNetwork(nodes=(first, *chain[1:]), input_shape=tuple(xi.shape[2:]),
                         num_classes=node.out_channels, input_format=fmt, meta={})  # fmt: skip
        s = torch.stack(IntegerEmulator(alone).run(xi, record=(node.name,)).records[node.name])
        agree[node.name] = float((s.float() == ref[node.name]).float().mean())
        source, chain = node.name, []
    return agree


@pytest.mark.parametrize("first", [GESTURE, PLANE])
def test_converted_nodes_compose_existing_kinds(first):
    net = _net("culif", first)
    qnet, _ = quantize_model(net, [_input(batch=2, steps=4)], PTQConfig(weight_bits=8))
    assert [n.name for n in qnet.nodes] == NAMES
    by = {n.name: n for n in qnet.nodes}
    assert by["conv0"].kind == "conv" and by["conv0"].stride == first[1:2] * 2
    assert by["conv0"].padding == first[2:] * 2
    assert isinstance(by["pool1"], Pool) and by["pool1"].mode == "max"
    for name, c in (("pooled1", 6), ("pooled2", 6)):  # the neuron after a pooling
        n = by[name]
        assert n.kind == "conv" and n.groups == c and tuple(n.weight.shape) == (c, 1, 1, 1)
        assert len(set(n.weight.flatten().tolist())) == 1  # one unit weight, quantized
    assert isinstance(by["flat"], Flatten)
    assert by["fc"].kind == "dense" and by["fc"].weight_rec is not None
    assert all(n.du < 4095 for n in qnet.nodes if isinstance(n, SpikingLayer))


@pytest.mark.parametrize(("first", "kind"), [(GESTURE, "culif"), (PLANE, "lif")])
def test_every_integer_layer_spikes_like_its_float_layer(first, kind):
    """Given the float spikes of the layer before, an integer layer (with the integer
    pooling / flatten before it) computes the float recursion on rounded weights and
    12-bit decays, so its spikes differ only where the float membrane lies within that
    rounding of θ: at 12 weight bits at most 0.5 % of any layer's spikes differ, fewer than
    at 8 bits in total. A wrong decay, current delay, pooling, scale or flatten order
    changes far more (a flatten in (H, W, C) order: 92 % of ``fc``'s spikes agree)."""
    net, x = _net(kind, first), _input()
    a8 = _per_layer_agreement(net, x, 8)
    a12 = _per_layer_agreement(net, x, 12)
    assert list(a12) == ["conv0", "conv1", "pooled1", "conv2", "pooled2", "fc", "out"]
    assert min(a12.values()) >= 0.995, a12
    assert sum(a12.values()) > sum(a8.values())


def test_whole_network_decides_like_the_float_network():
    """The whole fs_plane example (errors now carried from layer to layer) at 8 bits: every
    layer fires, at least 95 % of every layer's spikes agree with the float network's, and
    the FS decisions equal the float network's."""
    net, x = _net("culif", PLANE), _input()
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    layers = [n.name for n in qnet.nodes if isinstance(n, SpikingLayer)]
    res = IntegerEmulator(qnet).run(x, record=tuple(layers))
    ref = _float_spikes(net, x)
    for n in layers:
        assert ref[n].sum() > 0, n
        assert float((torch.stack(res.records[n]).float() == ref[n]).float().mean()) >= 0.95, n
    assert res.predictions().tolist() == fs_decision(ref["out"], ref["out_v"]).tolist()


def _naive_depthwise(node: SpikingLayer, x: np.ndarray) -> np.ndarray:
    """The neuron after a pooling written from docs/fixed_point.md ("Current-based layers")
    in Python ints, one neuron at a time: ``a[t] = m_c · x[t]`` (one weight per channel),
    ``u[t] = wrap24(decay(u[t−1], du + 1) + (a[t−1] << 6))`` (the toolkit's LIF, ``du =
    4095``: ``u[t] = a[t] << 6``, no memory and no delay), ``v[t] = clip24(decay(v[t−1], dv)
    + u[t])``, spike when ``v > vth << 6``, then the reset. ``x`` ``[T, B, C, H, W]``."""
    steps, batch, c, h, w = x.shape
    out = np.zeros(x.shape, dtype=np.int64)
    theta = node.vth * 64
    for b in range(batch):
        for ch in range(c):
            m = int(node.weight[ch, 0, 0, 0])
            for i in range(h):
                for j in range(w):
                    u = v = 0
                    a_prev = 0
                    for t in range(steps):
                        if node.du == 4095:  # the toolkit's LIF
                            a_prev = m * int(x[t, b, ch, i, j])
                        u = decay(u, node.du + 1) + a_prev * 64
                        u = u - 2 * UV if u > UV else u + 2 * UV if u <= -UV else u
                        v = min(max(decay(v, node.dv) + u, -UV + 1), UV - 1)
                        if v > theta:
                            out[t, b, ch, i, j] = 1
                            v = v - theta if node.reset == "soft" else 0
                        a_prev = m * int(x[t, b, ch, i, j])
    return out


@pytest.mark.parametrize("kind", ["culif", "lif"])
def test_neuron_after_pooling_against_a_naive_loop(kind):
    net, x = _net(kind, GESTURE), _input(batch=3, steps=30)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    res = IntegerEmulator(qnet).run(x, record=("pool1", "pooled1", "pool2", "pooled2"))
    for pool, name in (("pool1", "pooled1"), ("pool2", "pooled2")):
        pooled = torch.stack(res.records[pool]).numpy()
        assert pooled.max() == 1 and pooled.min() == 0
        got = torch.stack(res.records[name]).numpy()
        want = _naive_depthwise(qnet.node(name), pooled)
        assert 0 < want.sum() < want.size
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_flatten_against_an_index_loop():
    """``y[c·H·W + h·W + w] = x[c, h, w]``, batched (torch) and one sample (numpy), and the
    dense layer after it reads the float model's ``flatten(1)`` order."""
    node = Flatten("flat", ("pool",))
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5) * 7 - 100
    want = torch.zeros(2, 60, dtype=torch.int64)
    for b in range(2):
        for c in range(3):
            for h in range(4):
                for w in range(5):
                    want[b, c * 20 + h * 5 + w] = x[b, c, h, w]
    kind = kind_of(node)
    torch.testing.assert_close(kind.forward(node, None, [x], None, 0, 0).out, want)
    one = kind.forward(node, None, [x[1].numpy()], None, 0, 0).out
    np.testing.assert_array_equal(one, want[1].numpy())
    assert kind.out_shape(node, [(3, 4, 5)]) == (60,)
    assert kind.value_bound(node, [9], [(3, 4, 5)]) == 9
    assert kind.from_float(node, {"pool": 0.25}, None).scale == 0.25


def test_emulator_fs_decision_of_a_conv_network_equals_a_batch_one_loop(tmp_path):
    """Saved, loaded and stepped one sample at a time, the conv network's FS class is the
    first output spike (lowest index on ties), else the highest membrane (naive loop)."""
    net, x = _net("culif", PLANE), _input(batch=6)
    qnet, _ = quantize_model(net, [x], PTQConfig(weight_bits=8))
    qnet.save(tmp_path / "q.pt")
    loaded = QNetwork.load(tmp_path / "q.pt")
    batched = IntegerEmulator(loaded).run(x).predictions().tolist()
    emu = IntegerEmulator(loaded)
    for b in range(x.shape[1]):
        emu.reset()
        pred, peak = None, None
        for t in range(x.shape[0]):
            s = emu.forward(quantize_input(x[t, b : b + 1], loaded.input_format))["out"][0]
            v = emu.state["out"].v[0].double()
            peak = v if peak is None else torch.maximum(peak, v)
            if pred is None and int(s.sum()) > 0:
                pred = int(s.nonzero()[0])
        assert batched[b] == (pred if pred is not None else int(peak.argmax()))


def test_pipeline_accepts_the_conv_first_spike_archs_and_names_what_it_refuses():
    cfg = ExperimentConfig(task="gesture32-standin", arch="fs_gesture", method="bptt",
                           readout="first_spike", neuron="culif", out_neuron="culif")  # fmt: skip
    check_deployable(cfg, "x.toml")
    check_deployable(dataclasses.replace(cfg, arch="fs_plane", neuron="lif"), "x.toml")
    with pytest.raises(UserError, match="x.toml: train.arch = 'vgg9' with readout first_spike"):
        check_deployable(dataclasses.replace(cfg, arch="vgg9"), "x.toml")
    with pytest.raises(UserError, match="train.neuron = 'adlif' in a first-spike network"):
        check_deployable(dataclasses.replace(cfg, neuron="adlif"), "x.toml")


@pytest.mark.parametrize(
    ("task", "data_task", "arch", "out_threshold", "lr"),
    [("fs-gesture32-standin", "gesture32-standin", "fs_gesture", 1.0, 1e-4),
     ("fs-dvsplane-standin", "dvsplane-standin", "fs_plane", 2.0, 1e-3)],
)  # fmt: skip
def test_the_conv_first_spike_pipeline_configs_resolve(task, data_task, arch, out_threshold, lr):
    """``--task fs-gesture32-standin`` / ``fs-dvsplane-standin`` read their own configs (the
    reference's culif_dvsgesture / culif_dvsplane on the stand-ins) into their own run
    folders, and pass the deployability check; ``fc`` and ``out`` adapt over every step of
    the sample (window = the frames plus the empty ones), gesture at η 10⁻⁴ (10⁻³ was
    harmful there, docs/first_spike.md)."""
    from pipeline.resolve import resolve_run

    cfg, out = resolve_run(task=task)
    t = cfg.train
    assert (t.task, t.arch, t.readout, t.neuron, t.out_neuron) == (
        data_task, arch, "first_spike", "culif", "culif")  # fmt: skip
    assert t.out_threshold == out_threshold and cfg.quantize.qat_epochs == 0
    assert out.name == "pipeline_" + task.replace("-", "_")
    a = cfg.adaptation
    assert tuple(a.layers) == ("fc", "out") and a.signal == "host" and a.lr == lr
    assert a.window == t.n_time_bins + t.empty_bins
