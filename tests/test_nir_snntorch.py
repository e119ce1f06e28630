"""NIR between the toolkit and snnTorch (issue #18), both directions, on the same input.

snnTorch's NIR conventions, adapted here: it hard-codes dt = 1e-4 s (β = 1 − dt/τ), so
the toolkit exports with ``dt=1e-4`` and imports snnTorch's graphs with ``dt=1e-4`` (they
state no dt); its importer builds every LIF with ``reset_mechanism="zero"`` and
``reset_delay=False`` (the toolkit's hard reset) and ignores node metadata, so only
hard-reset toolkit models mean the same there; its exporter needs per-neuron β and
threshold tensors (a scalar gives 0-d NIR arrays that fail nir's type check) and the
sample input's batch dimension ignored. Skipped when snnTorch (extra ``nir-interop``) is
not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")
pytest.importorskip("nirtorch")

from snntorch import utils as snn_utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402

from stllr.errors import UserError  # noqa: E402
from stllr.layers.stllr_layers import LinearSTLLR, RecurrentLinearSTLLR  # noqa: E402
from stllr.models.chain import SpikingChain  # noqa: E402
from stllr.models.shd_neurons import SHDNeuronNetSTLLR  # noqa: E402
from stllr.neuron import LIFParams  # noqa: E402
from stllr.neurons.population import NeuronSpec  # noqa: E402
from stllr.nir_interop.export import to_nir, write_nir  # noqa: E402
from stllr.nir_interop.load import from_nir  # noqa: E402

SNNTORCH_DT = 1e-4
HARD = LIFParams(leak=1.0, threshold=0.7, reset="hard")


def _inputs(n_in: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(30, 4, n_in, generator=g) < 0.5).float() * 2


def _steps(step, x):
    with torch.no_grad():
        return torch.stack([step(x[t]) for t in range(x.shape[0])])


@pytest.mark.parametrize("recurrent", [False, True], ids=["feedforward", "recurrent"])
def test_toolkit_graph_runs_the_same_in_snntorch(recurrent):
    """The recurrent layer is written as a nested graph (snnTorch's own RLeaky layout):
    snnTorch's importer re-wires a flat ``lif ⇄ rec`` cycle so that the input reaches the
    neuron through W_rec (``_create_rnn_subgraph``), but leaves a nested graph as it is."""
    first = (RecurrentLinearSTLLR if recurrent else LinearSTLLR)(12, 10, lif=HARD)
    model = SpikingChain((12,), [first, LinearSTLLR(10, 6, lif=HARD)]).eval()
    net = import_from_nir(to_nir(model, dt=SNNTORCH_DT))
    x = _inputs(12)
    model.reset_state()
    ours = _steps(model, x)
    if recurrent:  # the recurrent weights change the spikes, so equal spikes test them
        with torch.no_grad():
            w_rec = first.weight_rec.clone()
            first.weight_rec.zero_()
            model.reset_state()
            assert not torch.equal(_steps(model, x), ours)
            first.weight_rec.copy_(w_rec)
    state = None

    def step(xt):
        nonlocal state
        out, state = net(xt, state)  # nirtorch keeps recurrent state in this dict
        return out

    theirs = _steps(step, x)
    assert ours.sum() > 0 and torch.equal(ours, theirs)


def test_snntorch_graph_runs_the_same_in_the_toolkit(tmp_path):
    def leaky(n):
        return snn.Leaky(
            beta=torch.full((n,), 0.8), threshold=torch.full((n,), 0.7),
            reset_mechanism="zero", reset_delay=False, init_hidden=True,
        )  # fmt: skip

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 10), leaky(10), torch.nn.Linear(10, 6), leaky(6))
    graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
    model = from_nir(graph, dt=SNNTORCH_DT).eval()
    x = _inputs(12)
    snn_utils.reset(net)
    theirs = _steps(net, x)
    ours = _steps(model, x)
    assert theirs.sum() > 0 and torch.equal(ours, theirs)
    assert isinstance(model, SpikingChain) and all(u.lif.reset == "hard" for u in model.layers)


def _leaky_args(n):
    return {
        "beta": torch.full((n,), 0.8), "threshold": torch.full((n,), 0.7),
        "reset_mechanism": "zero", "reset_delay": False, "init_hidden": True,
    }  # fmt: skip


def test_snntorch_recurrent_and_synaptic_graph_runs_the_same_in_the_toolkit():
    """snnTorch's RLeaky (all-to-all, its recurrent Linear with a bias) and a Synaptic
    neuron whose current has no memory (α = 0: a LIF) import as the toolkit's recurrent
    layer and LIF, with the same spikes as snnTorch's own forward pass."""
    torch.manual_seed(0)
    rleaky = snn.RLeaky(linear_features=10, **_leaky_args(10))
    with torch.no_grad():
        rleaky.recurrent.bias.uniform_(-0.2, 0.2)
        rleaky.recurrent.weight.mul_(3.0)
    synaptic = snn.Synaptic(alpha=torch.zeros(6), **_leaky_args(6))
    net = torch.nn.Sequential(torch.nn.Linear(12, 10), rleaky, torch.nn.Linear(10, 6), synaptic)
    graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"CubaLIF", "Affine", "LIF"}
    model = from_nir(graph, dt=SNNTORCH_DT).eval()
    assert isinstance(model, SpikingChain) and isinstance(model.layers[0], RecurrentLinearSTLLR)
    x = _inputs(12)
    snn_utils.reset(net)
    theirs = _steps(net, x)
    ours = _steps(model, x)
    assert theirs.sum() > 20 and torch.equal(ours, theirs)


def _synaptic(n):
    return snn.Synaptic(
        alpha=torch.full((n,), 0.6), beta=torch.full((n,), 0.8), threshold=torch.full((n,), 0.3),
        reset_mechanism="zero", reset_delay=False, init_hidden=True,
    )  # fmt: skip


def _culif_spikes(model, x):
    """The hidden spikes ``[T, B, H]`` of an SHDNeuronNetSTLLR."""
    spikes = []
    hook = model.rec.register_forward_hook(lambda _m, _i, out: spikes.append(out.clone()))
    model.reset_state()
    _steps(model, x)
    hook.remove()
    return torch.stack(spikes)


def test_snntorch_synaptic_is_the_toolkit_culif_one_step_earlier():
    """snnTorch's Synaptic (α = 0.6: a current with memory) feeds its voltage the current
    of the same step; the toolkit's CuLIF reads the previous step's. Its graph is refused
    as it is (naming tau_syn); with a Delay of dt in front of the CubaLIF (and a readout,
    the SHD shape) it imports as SHDNeuronNetSTLLR whose spikes are snnTorch's one step
    later, exactly (snnTorch's gains w_in·dt/τ_syn = r·dt/τ_mem = 1 scale the weights by
    1/(1 − β_snnTorch))."""
    import nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 10), _synaptic(10))
    graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
    with pytest.raises(UserError, match=r"NIR node '1' \(CubaLIF\): field 'tau_syn' must be dt"):
        from_nir(graph, dt=SNNTORCH_DT)
    nodes = {k: v for k, v in graph.nodes.items() if k != "output"}
    nodes["delay"] = nir.Delay(delay=np.full(10, SNNTORCH_DT))
    readout = torch.nn.Linear(10, 5)
    nodes["ro.syn"] = nir.Affine(weight=readout.weight.detach().numpy(),
                                 bias=readout.bias.detach().numpy())  # fmt: skip
    nodes["ro"] = nir.I(r=np.full(5, 1 / SNNTORCH_DT))
    nodes["output"] = nir.Output(output_type={"output": np.array([5])})
    edges = [("input", "0"), ("0", "delay"), ("delay", "1"), ("1", "ro.syn"), ("ro.syn", "ro"),
             ("ro", "output")]  # fmt: skip
    model = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=SNNTORCH_DT)
    assert isinstance(model.eval(), SHDNeuronNetSTLLR)
    x = _inputs(12)
    snn_utils.reset(net)
    theirs = _steps(net, x)
    ours = _culif_spikes(model, x)
    assert theirs.sum() > 50 and ours[0].sum() == 0 and torch.equal(ours[1:], theirs[:-1])


def test_toolkit_culif_in_snntorch_is_one_step_earlier():
    """snnTorch 1.0.0 cannot read the toolkit's CuLIF graph (its importer has no Delay);
    the same CubaLIF without the Delay (recurrent weights 0, as a loop of two steps has no
    snnTorch counterpart) is its Synaptic, whose spikes are the toolkit's one step earlier."""
    import nir

    torch.manual_seed(0)
    spec = NeuronSpec("culif", tau_mem=4.0, tau_syn=6.0, threshold=0.3)
    model = SHDNeuronNetSTLLR(spec, num_inputs=12, hidden=10, num_classes=5).eval()
    with torch.no_grad():
        model.rec.weight_rec.zero_()
        model.rec.bias.uniform_(-0.2, 0.2)
    graph = to_nir(model, dt=SNNTORCH_DT)
    with pytest.raises(ValueError, match="Delay"):
        import_from_nir(graph)
    flat = nir.NIRGraph(
        nodes={"input": graph.nodes["input"], "syn": graph.nodes["rec.syn"],
               "lif": graph.nodes["rec"].nodes["lif"],
               "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "syn"), ("syn", "lif"), ("lif", "output")], type_check=False,
    )  # fmt: skip
    net = import_from_nir(flat)
    state = None

    def step(xt):
        nonlocal state
        out, state = net(xt, state)
        return out

    x = _inputs(12)
    theirs = _steps(step, x)
    ours = _culif_spikes(model, x)
    assert ours.sum() > 50 and torch.equal(ours[1:], theirs[:-1])


def test_soft_reset_graph_is_marked_for_other_readers(tmp_path):
    """snnTorch reads every LIF as reset-to-zero; the toolkit's node metadata says soft."""
    model = SpikingChain.dense([6, 4], LIFParams()).eval()
    path = tmp_path / "soft.nir"
    write_nir(model, path)
    import nir

    assert nir.read(str(path), type_check=False).nodes["fc0.lif"].metadata["reset"] == "soft"
