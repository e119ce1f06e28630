"""NIR interchange (issue #18): stllr → NIR file → stllr gives the same spikes and logits,
and graphs the toolkit cannot represent exactly are refused with a one-line error.

The reference is the exported model itself: the imported network is built from the file
alone (no model class, no checkpoint), so equal spikes at every layer and every step show
that the weights (Ŵ with weight standardisation folded in), the LIF constants (τ ↔ γ, r,
threshold, reset), the recurrent edge, pooling and the readout survived the trip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stllr.errors import UserError
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.chain import SpikingChain
from stllr.models.resnet import SpikingResNet18
from stllr.models.shd import SHDNetSTLLR
from stllr.models.vgg import VGGSTLLR
from stllr.neuron import LIFParams

nir = pytest.importorskip("nir")

from stllr.nir_interop.export import to_nir, write_nir  # noqa: E402
from stllr.nir_interop.load import from_nir, read_nir  # noqa: E402

SPIKING = (Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR)


def _lively(model: torch.nn.Module, gain: float) -> torch.nn.Module:
    """Raise the WS gains and biases so that every layer of a narrow random net spikes."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SPIKING):
                m.gain.fill_(gain)
                m.bias.uniform_(0.0, 0.3)
        head = getattr(model, "head", None)
        if head is not None:
            head.bias.uniform_(-1.0, 1.0)
    return model.eval()


def _run(model, x):
    """Per-step outputs ``[T, B, K]`` and every spiking layer's spikes, in call order."""
    spikes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out.clone()))
        for m in model.modules()
        if isinstance(m, SPIKING)
    ]
    model.reset_state()
    with torch.no_grad():
        out = torch.stack([model(x[t]).clone() for t in range(x.shape[0])])
    for h in hooks:
        h.remove()
    return out, spikes


def _round_trip(model, x, tmp_path):
    path = tmp_path / "model.nir"
    write_nir(model, path)
    imported = read_nir(path).eval()
    (a, sa), (b, sb) = _run(model, x), _run(imported, x)
    assert len(sa) == len(sb) and len(sa) > 0
    for i, (u, v) in enumerate(zip(sa, sb, strict=True)):
        assert torch.equal(u, v), f"spikes of call {i} differ"
    # every layer spikes somewhere, so equal spikes say something
    per_layer = len(sa) // x.shape[0]
    for layer in range(per_layer):
        assert sum(float(s.sum()) for s in sa[layer::per_layer]) > 0, f"layer {layer} silent"
    assert a.abs().max() > 0
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    return imported


def test_shd_rsnn_round_trip_is_exact(tmp_path):
    model = SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5).eval()
    x = (torch.rand(25, 3, 40, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    imported = _round_trip(model, x, tmp_path)
    assert isinstance(imported, SHDNetSTLLR)  # the class the toolkit trains and deploys
    rec = imported.rec
    assert isinstance(rec, RecurrentLinearSTLLR) and rec.lif == model.rec.lif
    assert imported.readout.gamma == model.readout.gamma


def test_vgg9_round_trip_is_exact(tmp_path):
    model = _lively(VGGSTLLR((2, 16, 16), 4, channels=(8,) * 8, pooling="avg"), gain=2.0)
    x = (torch.rand(6, 2, 2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    assert isinstance(_round_trip(model, x, tmp_path), VGGSTLLR)


def test_resnet18_round_trip_is_exact(tmp_path):
    model = _lively(SpikingResNet18((2, 8, 8), 4, widths=(8, 8, 8, 8)), gain=2.0)
    x = (torch.rand(6, 2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    _round_trip(model, x, tmp_path)


def test_hard_reset_chain_round_trip(tmp_path):
    lif = LIFParams(leak=1.0, threshold=0.7, reset="hard")
    model = SpikingChain.dense([12, 10, 6], lif).eval()
    x = (torch.rand(10, 4, 12, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 2
    imported = _round_trip(model, x, tmp_path)
    assert isinstance(imported, SpikingChain) and imported.layers[0].lif.reset == "hard"


def test_graph_states_dt_and_time_constants():
    model = SHDNetSTLLR(num_inputs=6, hidden=4, num_classes=2)
    g = to_nir(model, dt=1e-3)
    assert g.metadata["dt"] == 1e-3 and "forward Euler" in g.metadata["conventions"]
    sub = g.nodes["rec"]  # the recurrent population: a nested graph, as snnTorch writes it
    lif = sub.nodes["lif"]
    gamma = model.rec.lif.gamma
    np.testing.assert_allclose(1 - 1e-3 / lif.tau, gamma, rtol=1e-12)  # γ = 1 − dt/τ
    np.testing.assert_allclose(lif.r * 1e-3 / lif.tau, 1.0, rtol=1e-12)  # dt·R/τ = 1
    assert {("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")} == set(sub.edges)
    assert ("rec.syn", "rec") in g.edges and ("rec", "readout.syn") in g.edges


def test_vgg9_max_pooling_round_trip_is_exact(tmp_path):
    """NIR 1.0 has no max pooling: the graph holds SumPool2d → Threshold 0.5, which is the
    window's max for spikes in {0, 1}; the import turns the pair back into MaxPool2d."""
    model = _lively(VGGSTLLR((2, 16, 16), 4, channels=(8,) * 8, pooling="max"), gain=2.0)
    g = to_nir(model)
    assert type(g.nodes["pool1.sum"]).__name__ == "SumPool2d"
    assert float(np.unique(g.nodes["pool1"].threshold)[0]) == 0.5
    x = (torch.rand(6, 2, 2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    imported = _round_trip(model, x, tmp_path)
    assert isinstance(imported, VGGSTLLR)
    assert [type(p).__name__ for p in imported.pools] == [type(p).__name__ for p in model.pools]


def _graph_with_lif(**override):
    """Affine 3 → LIF 2 (γ = 0.5 at dt = 1) with fields replaced by ``override``."""
    params = dict(
        tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2),
        v_threshold=np.full(2, 0.6), v_reset=np.zeros(2),
    )  # fmt: skip
    params.update(override)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)),
        "lif": nir.LIF(**params),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def test_exact_graph_from_elsewhere_maps_to_hard_reset():
    net = from_nir(_graph_with_lif())
    assert isinstance(net, SpikingChain)
    lif = net.layers[0].lif
    assert lif.reset == "hard" and lif.gamma == pytest.approx(0.5) and lif.threshold == 0.6


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("v_leak", np.full(2, 0.1), "field 'v_leak' must be 0"),
        ("r", np.full(2, 1.0), "field 'r' must be"),
        ("tau", np.array([2.0, 3.0]), "field 'tau' must be one finite value"),
        ("tau", np.full(2, 0.5), "field 'tau' must be > dt"),
        ("v_threshold", np.full(2, 0.3), "field 'v_threshold' must be ≥ 0.5"),
        ("v_reset", np.full(2, -1.0), "field 'v_reset' must be 0"),
    ],
)
def test_inexact_lif_parameters_are_refused(field, value, message):
    with pytest.raises(UserError, match=message) as err:
        from_nir(_graph_with_lif(**{field: value}))
    assert "NIR node 'lif' (LIF)" in str(err.value) and "\n" not in str(err.value)


def _graph_with(neuron, readout=None):
    """Affine 3 → ``neuron`` 2 (→ Affine 2 → ``readout`` 2), dt = 1 ms, seeded weights."""
    g = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=g.uniform(0, 0.5, (2, 3)), bias=g.uniform(0, 0.1, 2)),
        "n": neuron,
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "fc"), ("fc", "n")]
    if readout is None:
        edges.append(("n", "output"))
    else:
        nodes["ro"] = nir.Affine(weight=g.uniform(-1, 1, (2, 2)), bias=g.uniform(-1, 1, 2))
        nodes["li"] = readout
        edges += [("n", "ro"), ("ro", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}, type_check=False)


def _if_loop(graph, x, theta):
    """IF by hand: v += W·x + b; s = v > θ; v = 0 where s (hard reset), per step."""
    fc = graph.nodes["fc"]
    w, b = torch.tensor(fc.weight, dtype=torch.float32), torch.tensor(fc.bias, dtype=torch.float32)
    v, out = torch.zeros(x.shape[1], 2), []
    for t in range(x.shape[0]):
        v = v + (x[t] @ w.T + b)
        s = (v > theta).float()
        v = v * (1 - s)
        out.append(s)
    return torch.stack(out)


def test_if_and_integrator_import_as_leak_free_neurons(tmp_path):
    """NIR IF (dt·r = 1) is the toolkit's LIF with γ = 1 and NIR I the readout with γ = 1,
    checked against loops written here; exported again they are IF and I nodes."""
    r = np.full(2, 1e3)  # 1/dt
    neuron = nir.IF(r=r, v_threshold=np.full(2, 0.6), v_reset=np.zeros(2))
    graph = _graph_with(neuron, nir.I(r=r))
    model = from_nir(graph).eval()
    assert model.units["n"].lif.gamma == 1.0 and model.units["li"].gamma == 1.0
    x = (torch.rand(40, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    chain = from_nir(_graph_with(neuron)).eval()
    assert torch.equal(_run(chain, x)[0], _if_loop(graph, x, 0.6))
    path = tmp_path / "if.nir"
    write_nir(chain, path)
    assert type(nir.read(str(path), type_check=False).nodes["fc0.lif"]).__name__ == "IF"
    # the integrator readout: o[t] = o[t−1] + W_ro·s[t] + b_ro (in float64 here)
    ro = graph.nodes["ro"]
    spikes = _if_loop(graph, x, 0.6).double().numpy()
    o, want = np.zeros((3, 2)), []
    for t in range(x.shape[0]):
        o = o + spikes[t] @ ro.weight.T + ro.bias
        want.append(o)
    got = _run(model, x)[0].double().numpy()
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-6, atol=1e-4)  # float32 sums


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (nir.IF(r=np.full(2, 2e3), v_threshold=np.full(2, 0.6), v_reset=np.zeros(2)),
         r"NIR node 'n' \(IF\): field 'r' must be 1/dt"),
        (nir.CubaLIF(tau_syn=np.full(2, 2e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 2.0),
                     v_leak=np.zeros(2), v_threshold=np.full(2, 0.6), w_in=np.full(2, 2.0)),
         r"NIR node 'n' \(CubaLIF\): field 'tau_syn' must be dt = 0.001"),
        (nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 2.0),
                     v_leak=np.zeros(2), v_threshold=np.full(2, 0.6), w_in=np.full(2, 3.0)),
         r"NIR node 'n' \(CubaLIF\): field 'w_in' must be"),
        (nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 1.0),
                     v_leak=np.zeros(2), v_threshold=np.full(2, 0.6), w_in=np.full(2, 1.0)),
         r"NIR node 'n' \(CubaLIF\): field 'r' must be"),
    ],
    ids=["if-gain", "cuba-tau_syn", "cuba-w_in", "cuba-r"],
)  # fmt: skip
def test_neurons_the_toolkit_cannot_represent_are_refused(node, message):
    with pytest.raises(UserError, match=message) as err:
        from_nir(_graph_with(node))
    assert "\n" not in str(err.value)


def test_memoryless_cuba_lif_is_a_lif():
    """CubaLIF with τ_syn = dt and w_in = 1 (the current is this step's input) imports as
    the LIF of its membrane: the same spikes as the equivalent LIF graph."""
    cuba = nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 2.0),
                       v_leak=np.zeros(2), v_threshold=np.full(2, 0.6), w_in=np.full(2, 1.0),
                       v_reset=np.zeros(2))  # fmt: skip
    lif = nir.LIF(tau=np.full(2, 2e-3), r=np.full(2, 2.0), v_leak=np.zeros(2),
                  v_threshold=np.full(2, 0.6), v_reset=np.zeros(2))  # fmt: skip
    a, b = from_nir(_graph_with(cuba)).eval(), from_nir(_graph_with(lif)).eval()
    assert a.layers[0].lif == b.layers[0].lif and a.layers[0].lif.gamma == pytest.approx(0.5)


def test_nested_graph_is_flattened():
    """A population written as a nested graph (input → lif → output) imports like a flat one."""
    flat = _graph_with_lif()
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}), "lif": flat.nodes["lif"],
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "lif"), ("lif", "output")], type_check=False,
    )  # fmt: skip
    nodes = {**{k: v for k, v in flat.nodes.items() if k != "lif"}, "pop": sub}
    edges = [("input", "fc"), ("fc", "pop"), ("pop", "output")]
    nested = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)
    x = (torch.rand(10, 2, 3, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    a, b = from_nir(flat).eval(), from_nir(nested).eval()
    assert torch.equal(_run(a, x)[0], _run(b, x)[0]) and _run(a, x)[0].sum() > 0


def test_unknown_node_kind_is_named():
    g = _graph_with_lif()
    g.nodes["delay"] = nir.Delay(delay=np.ones(2))
    g.edges = [("input", "fc"), ("fc", "lif"), ("lif", "delay"), ("delay", "output")]
    with pytest.raises(UserError, match="NIR node 'delay': kind Delay has no S-TLLR counterpart"):
        from_nir(g)


def test_file_that_is_not_nir(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    with pytest.raises(UserError, match="bad.nir: not a readable NIR graph"):
        read_nir(bad)


def test_cli_export_then_import_a_trained_checkpoint(tmp_path, capsys):
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.cli.main import main

    demo = ["demo", "--epochs", "1", "--train-samples", "40", "--test-samples", "20"]
    demo += ["--hidden", "16", "--window", "5", "--data-dir", str(tmp_path / "data")]
    assert main([*demo, "--out-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    best = tmp_path / "runs" / "demo_stllr" / "trial_1" / "best.pt"
    out = tmp_path / "shd.nir"
    assert main(["export", str(best), "--format", "nir", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["import", str(out)]) == 0
    assert "SHDNetSTLLR" in capsys.readouterr().out

    trained = load_checkpoint(best).model
    x = (torch.rand(30, 2, trained.input_shape[0], generator=torch.Generator()) < 0.2).float()
    (a, sa), (b, sb) = _run(trained, x), _run(read_nir(out), x)
    assert all(torch.equal(u, v) for u, v in zip(sa, sb, strict=True))
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)

    assert main(["import", str(tmp_path / "missing.nir")]) == 2
    assert "missing.nir: no such NIR file" in capsys.readouterr().err


def test_imported_network_fine_tunes_with_stllr(tmp_path):
    """A graph from elsewhere keeps learning: S-TLLR batches lower the training loss."""
    from stllr.training import evaluate_batch, train_batch

    torch.manual_seed(0)
    path = tmp_path / "shd.nir"
    write_nir(SHDNetSTLLR(num_inputs=20, hidden=24, num_classes=3), path)
    model = read_nir(path)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(4)
    rates = torch.full((12, 20), 0.05)
    for c in range(3):  # class c drives its own third of the channels
        rates[y == c, c * 6 : c * 6 + 6] = 0.5
    x = (torch.rand(20, 12, 20, generator=g) < rates).float()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    before = torch.nn.functional.cross_entropy(evaluate_batch(model, x).logits, y)
    w0 = model.rec.weight_rec.detach().clone()
    for _ in range(15):
        train_batch(model, x, y, opt, mode="stllr", window=10)
    after = torch.nn.functional.cross_entropy(evaluate_batch(model, x).logits, y)
    assert not torch.equal(model.rec.weight_rec, w0)
    assert after < 0.5 * before, (before, after)


def test_the_writer_of_a_graph_is_read_from_its_metadata(tmp_path):
    from pipeline.nir_import import describe
    from stllr.nir_interop.graph import producer
    from stllr.nir_interop.load import read_graph

    path = tmp_path / "m.nir"
    write_nir(SpikingChain.dense([4, 3], LIFParams()), path)
    assert producer(read_graph(path).metadata) == "stllr"  # read back from the file
    assert producer({}) == "" and producer({"framework": b"norse"}) == "norse"
    info = {"file": str(path), "producer": "", "sha256": "ab" * 32, "model": "X", "dt": 1e-3}
    assert "written by a framework its metadata does not name" in describe(info)


# --- the current-based neuron (CuLIF) ↔ Delay → CubaLIF (docs/nir.md, stllr/nir_interop/cuba.py)


def _culif_net(kind="culif", reset="hard", decay_mode="layer"):
    from stllr.models.shd_neurons import SHDNeuronNetSTLLR
    from stllr.neurons.population import NeuronSpec

    torch.manual_seed(0)
    spec = NeuronSpec(kind, tau_mem=4.0, tau_syn=6.0, threshold=0.3, reset=reset,
                      decay_mode=decay_mode)  # fmt: skip
    model = SHDNeuronNetSTLLR(spec, num_inputs=12, hidden=10, num_classes=5)
    with torch.no_grad():
        model.rec.bias.uniform_(-0.2, 0.2)
        model.rec.gain_rec.fill_(2.0)
        if kind == "pculif":  # trained decays, not the initial ones
            model.rec.neurons.mem_logit.fill_(0.7)
            model.rec.neurons.syn_logit.fill_(1.9)
    return model.eval()


def _culif_run(model, x):
    """Per-step logits ``[T, B, K]`` and the hidden spikes ``[T, B, H]``."""
    spikes = []
    hook = model.rec.register_forward_hook(lambda _m, _i, out: spikes.append(out.clone()))
    model.reset_state()
    with torch.no_grad():
        out = torch.stack([model(x[t]).clone() for t in range(x.shape[0])])
    hook.remove()
    return out, torch.stack(spikes)


def _culif_inputs():
    return (torch.rand(40, 3, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()


@pytest.mark.parametrize(("kind", "reset"), [("culif", "hard"), ("pculif", "soft")])
def test_culif_shd_round_trip_is_exact(kind, reset, tmp_path):
    from stllr.models.shd_neurons import SHDNeuronNetSTLLR

    model = _culif_net(kind, reset)
    path = tmp_path / "culif.nir"
    write_nir(model, path)
    imported = read_nir(path).eval()
    assert isinstance(imported, SHDNeuronNetSTLLR)
    assert imported.rec.neurons.spec.kind == "culif" and imported.rec.neurons.spec.reset == reset
    x = _culif_inputs()
    (a, sa), (b, sb) = _culif_run(model, x), _culif_run(imported, x)
    assert sa.sum() > 50 and torch.equal(sa, sb)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    with torch.no_grad():  # the recurrent weights change the spikes: equal spikes test them
        imported.rec.weight_rec.zero_()
    assert not torch.equal(_culif_run(imported, x)[1], sa)


def _cuba_graph_by_hand(graph, x):
    """The hidden spikes of the exported graph stepped as docs/nir.md states, in float64,
    from the NIR fields alone: u[t] = W·x[t] + b + W_rec·s[t−1] (the cycle's edge carries
    step t−1), the Delay gives d[t] = u[t − delay/dt], then
    I[t] = (1 − dt/τ_syn)·I[t−1] + (dt·w_in/τ_syn)·d[t],
    v[t] = (1 − dt/τ_mem)·v̂[t−1] + (dt·r/τ_mem)·I[t], s = v > θ, hard reset to v_reset."""
    dt = float(graph.metadata["dt"])
    syn, sub = graph.nodes["rec.syn"], graph.nodes["rec"]
    cuba, w_rec = sub.nodes["lif"], np.asarray(sub.nodes["rec"].weight, np.float64)
    w, b = np.asarray(syn.weight, np.float64), np.asarray(syn.bias, np.float64)
    steps = int(round(float(sub.nodes["delay"].delay[0]) / dt))
    a_syn, a_mem = 1 - dt / cuba.tau_syn, 1 - dt / cuba.tau_mem
    g_i, g_v = dt * cuba.w_in / cuba.tau_syn, dt * cuba.r / cuba.tau_mem
    xs = x.double().numpy()
    n = w.shape[0]
    cur, v, s = np.zeros((x.shape[1], n)), np.zeros((x.shape[1], n)), np.zeros((x.shape[1], n))
    us, out = [], []
    for t in range(xs.shape[0]):
        us.append(xs[t] @ w.T + b + s @ w_rec.T)
        d = us[t - steps] if t >= steps else np.zeros_like(us[0])
        cur = a_syn * cur + g_i * d
        v = a_mem * v + g_v * cur
        s = (v > cuba.v_threshold).astype(np.float64)
        v = np.where(s > 0, cuba.v_reset, v)
        out.append(s)
    return torch.tensor(np.stack(out), dtype=torch.float32)


def test_culif_graph_steps_as_documented():
    """The exported nodes, stepped by an independent loop of NIR's CubaLIF read as
    docs/nir.md says, give the toolkit CuLIF's spikes: the one-step Delay is its voltage
    reading the previous current; without it (delay 0) the spikes differ."""
    model = _culif_net("culif", "hard")
    graph = to_nir(model)
    assert graph.nodes["rec"].nodes["lif"].metadata["reset"] == "hard"
    x = _culif_inputs()
    _, ours = _culif_run(model, x)
    assert ours.sum() > 50 and torch.equal(_cuba_graph_by_hand(graph, x), ours)
    graph.nodes["rec"].nodes["delay"].delay[:] = 0.0
    assert not torch.equal(_cuba_graph_by_hand(graph, x), ours)


def test_culif_graph_states_time_constants_and_gains():
    """τ = dt/(1 − decay) for both decays; gains dt·w_in/τ_syn = 1 − α and dt·r/τ_mem = 1."""
    model = _culif_net("culif")
    graph = to_nir(model, dt=1e-3)
    cuba = graph.nodes["rec"].nodes["lif"]
    alpha, beta = np.exp(-1 / 4.0), np.exp(-1 / 6.0)  # τ_mem = 4, τ_syn = 6 steps
    np.testing.assert_allclose(cuba.tau_mem, 1e-3 / (1 - alpha), rtol=1e-6)
    np.testing.assert_allclose(cuba.tau_syn, 1e-3 / (1 - beta), rtol=1e-6)
    np.testing.assert_allclose(1e-3 * cuba.w_in / cuba.tau_syn, 1 - alpha, rtol=1e-6)
    np.testing.assert_allclose(1e-3 * cuba.r / cuba.tau_mem, 1.0, rtol=1e-12)
    assert float(cuba.v_threshold[0]) == 0.3 and np.all(cuba.v_leak == 0)
    np.testing.assert_allclose(graph.nodes["rec"].nodes["delay"].delay, 1e-3)
    assert "Delay" in graph.metadata["conventions"]


def test_foreign_cuba_gains_scale_the_weights():
    """A CubaLIF whose gains are not the toolkit's (here w_in·dt/τ_syn = 1, r·dt/τ_mem = 2)
    imports with weights × g_i·g_v/(1 − α), the same spikes as the graph stepped by hand."""
    model = _culif_net("culif")
    graph = to_nir(model)
    cuba = graph.nodes["rec"].nodes["lif"]
    cuba.w_in = cuba.tau_syn / 1e-3
    cuba.r = 2 * cuba.tau_mem / 1e-3
    x = _culif_inputs()
    imported = from_nir(graph).eval()
    _, theirs = _culif_run(imported, x)
    assert theirs.sum() > 50 and torch.equal(_cuba_graph_by_hand(graph, x), theirs)
    torch.testing.assert_close(
        imported.rec.weight, model.rec.standardized_weights()[0] * 2 / (1 - np.exp(-1 / 4.0))
    )


def test_culif_export_refuses_what_has_no_exact_node():
    with pytest.raises(UserError, match=r"layer 'rec': neuron 'adlif' has no exact NIR node"):
        to_nir(_culif_net("adlif"))
    with pytest.raises(UserError, match=r"layer 'rec': parameter 'alpha' has one value per neuron"):
        to_nir(_culif_net("pculif", decay_mode="neuron"))


def _flat_cuba_graph(**changes):
    graph = to_nir(_culif_net("culif"))
    for key, value in changes.items():
        node, field = key.split("__")
        target = graph.nodes["rec"].nodes[node]
        setattr(target, field, value(getattr(target, field)))
    return graph


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"delay__delay": lambda d: 2 * d},
         r"NIR node 'rec.delay' \(Delay\): field 'delay' must be dt"),
        ({"lif__tau_mem": lambda t: t * np.linspace(1, 2, t.size)},
         r"NIR node 'rec.lif' \(CubaLIF\): field 'tau_mem' must be one finite value"),
        ({"lif__v_leak": lambda v: v + 0.1},
         r"NIR node 'rec.lif' \(CubaLIF\): field 'v_leak' must be 0"),
        ({"lif__tau_syn": lambda t: 0.5e-3 + 0 * t},
         r"NIR node 'rec.lif' \(CubaLIF\): field 'tau_syn' must be > dt"),
    ],
)  # fmt: skip
def test_inexact_culif_graph_is_refused(changes, message):
    with pytest.raises(UserError, match=message):
        from_nir(_flat_cuba_graph(**changes))


def test_cuba_with_memory_needs_its_delay_and_the_shd_shape():
    import nir

    graph = to_nir(_culif_net("culif"))
    sub = graph.nodes["rec"]
    # without the Delay: a CubaLIF whose voltage reads the same step's current
    sub.edges = [("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    del sub.nodes["delay"]
    with pytest.raises(
        UserError, match=r"NIR node 'rec.lif' \(CubaLIF\): field 'tau_syn' must be dt"
    ):
        from_nir(graph)
    # with its Delay but no readout: not the SHD network
    graph = to_nir(_culif_net("culif"))
    nodes = {k: v for k, v in graph.nodes.items() if not k.startswith("readout")}
    nodes["output"] = nir.Output(output_type={"output": np.array([10])})
    edges = [(a, b) for a, b in graph.edges if not b.startswith("readout") and a != "readout.li"]
    edges.append(("rec", "output"))
    with pytest.raises(UserError, match=r"CubaLIF with current memory maps only as the recurrent"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def test_cli_exports_a_culif_checkpoint(tmp_path, capsys):
    """``stllr export --format nir`` of a checkpoint of the SHD network with neuron = culif
    writes Delay → CubaLIF; ``stllr import`` reads it back as SHDNeuronNetSTLLR."""
    from stllr.cli.checkpoint import load_checkpoint
    from stllr.cli.main import main
    from stllr.config import ExperimentConfig
    from stllr.models.factory import build_model

    cfg = ExperimentConfig(
        task="shd-standin", arch="shd_rsnn", neuron="culif", hidden=8, threshold=0.3,
        data=str(tmp_path / "data"), standin_train=20, standin_test=10,
    )  # fmt: skip
    model, _ = build_model(cfg, (700,), 20)
    ckpt = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": cfg.as_dict()}, ckpt)
    out = tmp_path / "culif.nir"
    assert main(["export", str(ckpt), "--format", "nir", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["import", str(out)]) == 0
    assert "SHDNeuronNetSTLLR" in capsys.readouterr().out
    trained = load_checkpoint(ckpt).model
    x = (torch.rand(20, 2, 700, generator=torch.Generator().manual_seed(1)) < 0.1).float()
    (a, sa), (b, sb) = _culif_run(trained, x), _culif_run(read_nir(out), x)
    assert sa.sum() > 0 and torch.equal(sa, sb)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
