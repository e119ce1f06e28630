"""The toolkit's Lava processes (``floating_pt``) equal the torch float model.

Small versions of every task model (SHD recurrent net, VGG with max and average
pooling, a narrow ResNet-18), in eval mode and float64, exported with
:func:`lava_models.float_exporter.export_float` (the float graph of ``to_float_graph``: Ŵ
after weight standardisation) and run by :func:`lava_models.runner.run_lava` on random
binary frames, batch 1.

* Inference: the reference is the torch model itself, with forward hooks on its
  S-TLLR layers recording their spikes and membranes ũ at every step. Spikes must be
  identical, membranes and logits within 1e-5 at every step.
* Learning: the device learns the effective weights Ŵ directly (``weight_std=False``
  semantics). The reference is the same torch model with weight standardisation
  switched off and ``weight``/``weight_rec`` overwritten by Ŵ, so its layers run stllr's
  autograd step functions (``STLLRStep``, ``STLLRRecurrentStep``, ``AccumulateStep``;
  the VGG/ResNet head is the model's ``nn.Linear``) on leaf copies of Ŵ. At every step
  the same third factor L is injected as the upstream gradient δ = L of each plastic
  layer's output (every plastic output is detached before the layers above read it, so
  each layer receives exactly its own L), and an SGD step ``W ← W − lr·∂/∂W`` follows at
  once, as the Lava process updates after every step; the forward of step t+1 uses the
  updated weights in both. Learned weights must agree within 1e-5, and outputs at every
  step as in inference.

Each case also shows it is not trivial: every spiking layer spikes and is not
saturated, and learning moves weights by far more than the tolerance.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

import lava_models.runtime
from hw_tests.parity import torch_inference as _torch_inference
from hw_tests.parity import torch_learning as _torch_learning
from lava_models.errors import UnsupportedNodeError
from lava_models.float_exporter import export_float, float_network, float_output_shapes
from lava_models.runner import run_lava
from quantization.convert import FloatSpiking, to_float_graph
from stllr.models.resnet import SpikingResNet18
from stllr.models.shd import SHDNetSTLLR
from stllr.models.vgg import VGGSTLLR

TOL = 1e-5
VGG_KW = dict(channels=(8, 16), pool_after=(0, 1))


def _resnet() -> SpikingResNet18:
    """Narrow ResNet-18 on 8×8 inputs with its standardised-weight gains tripled, as in
    test_lava_fixed_vs_emulator.py: with unit gains the random 4-channel blocks of the
    last stages fall silent for most seeds."""
    m = SpikingResNet18((2, 8, 8), 5, widths=(4, 4, 8, 8))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gain"):
                p.mul_(3.0)
    return m


FAMILIES = {  # name: (model factory, seed, steps, input rate, input value)
    "shd": (lambda: SHDNetSTLLR(num_inputs=40, hidden=32, num_classes=5), 0, 20, 0.3, 1.0),
    "vgg_max": (lambda: VGGSTLLR((2, 16, 16), 5, pooling="max", **VGG_KW), 0, 20, 0.3, 2.0),
    "vgg_avg": (lambda: VGGSTLLR((2, 16, 16), 5, pooling="avg", **VGG_KW), 1, 20, 0.3, 2.0),
    "resnet": (_resnet, 2, 16, 0.3, 2.0),
}


def _model(family: str):
    factory, seed, *_ = FAMILIES[family]
    torch.manual_seed(seed)
    return factory().double().eval()


def _frames(family: str, model, samples: int = 1, steps: int | None = None, seed: int = 100):
    """Random binary frames ``[N, T, *input_shape]`` (float64) scaled by the family's
    input value (2 for the conv nets, as the fixed test: enough activity in deep layers)."""
    _, s, t, rate, value = FAMILIES[family]
    gen = torch.Generator().manual_seed(seed + s)
    shape = (samples, steps or t, *model.input_shape)
    return (torch.rand(shape, generator=gen, dtype=torch.float64) < rate).double() * value


def _assert_matches_torch(model, res, out, mem) -> None:
    """Spikes identical, membranes and logits within TOL, at every step."""
    specs = {s.name: s for s in to_float_graph(model)}
    for name, ref in out.items():
        got = res.outputs[name]
        if isinstance(specs[name], FloatSpiking):
            np.testing.assert_array_equal(got, ref, err_msg=f"{name}: spikes")
            dv = np.abs(res.per_step[name]["v"] - mem[name]).max()
            assert dv <= TOL, f"{name}: max |Δ membrane| = {dv:.3g}"
            assert 0 < ref.sum() < ref.size, f"{name}: {int(ref.sum())} spikes of {ref.size}"
        else:
            d = np.abs(got - ref).max()
            assert d <= TOL, f"{name}: max |Δ logit| = {d:.3g}"
            assert np.abs(ref).max() > 1e3 * TOL, f"{name}: the logits stay near 0"


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_inference_equals_torch(family):
    model = _model(family)
    frames = _frames(family, model)
    out, mem = _torch_inference(model, frames)
    res = run_lava(float_network(model), frames[0].numpy(), timeout_s=120)
    assert set(res.outputs) == {s.name for s in to_float_graph(model)}
    _assert_matches_torch(model, res, out, mem)


LEARNING = {  # family: (plastic nodes, samples, steps per sample, lr)
    "shd": (["rec", "readout"], 2, 10, 0.05),  # recurrent (W and W_rec) + readout; a reset
    "vgg_avg": (["conv1", "head"], 1, 16, 0.05),  # conv1 reads a 2×2 average pool
    "resnet": (["b4.short", "head"], 1, 12, 0.05),  # stride-2 1×1 shortcut conv
}


@pytest.mark.parametrize("family", list(LEARNING))
def test_learning_equals_torch_stllr(family):
    plastic, samples, steps, lr = LEARNING[family]
    model = _model(family)
    frames = _frames(family, model, samples, steps, seed=300)
    net = float_network(model, lr=lr, plastic=plastic)
    shapes = float_output_shapes(net)
    rng = np.random.default_rng(7)
    signals = {k: rng.normal(0.0, 1.0, (samples, steps, *shapes[k])) for k in plastic}
    out, mem, weights = _torch_learning(model, frames, signals, plastic, lr)
    reads = {plastic[0]: ("weights",)} if family == "shd" else None
    res = run_lava(net, frames.numpy(), signals, var_reads=reads, timeout_s=120)
    _assert_matches_torch(model, res, out, mem)
    for name in plastic:
        w0 = net.node(name).weight.numpy()
        for key, ref in weights[name].items():
            got = res.weights(name)[key]
            d = np.abs(got - ref).max()
            assert d <= TOL, f"{name}.{key}: max |Δ W| = {d:.3g}"
            moved = np.abs(ref - (w0 if key == "w" else net.node(name).weight_rec.numpy()))
            assert moved.max() > 1e3 * TOL, f"{name}.{key}: weights hardly moved ({moved.max()})"
            assert (moved > TOL).mean() > 0.1, f"{name}.{key}: few weights moved"
    if reads:  # the public path (Var.get on a float64 Var) agrees with the record
        np.testing.assert_array_equal(res.vars["rec"]["weights"], res.weights("rec")["w"])
    # learning changed the forward of later steps (the updated weights are used)
    still, _ = _torch_inference(model, frames)
    last = net.nodes[-1].name
    assert not np.allclose(still[last], out[last], atol=1e3 * TOL)


# --- validation before Lava starts ------------------------------------------------------


@pytest.fixture
def no_lava_start(monkeypatch):
    def forbidden():
        raise AssertionError("Lava was imported before the network was validated")

    monkeypatch.setattr(lava_models.runtime, "import_lava", forbidden)
    before = set(mp.active_children())
    yield
    assert set(mp.active_children()) == before


def test_float_network_errors_before_lava(no_lava_start):
    model = _model("vgg_max")
    with pytest.raises(ValueError, match="'pool0'.*has no weights"):
        float_network(model, plastic=["pool0"])
    with pytest.raises(ValueError, match="'nowhere' is not in the network"):
        export_float(model, plastic=["nowhere"])
    specs = to_float_graph(model)
    with pytest.raises(ValueError, match="input_shape"):
        float_network(specs)
    with pytest.raises(UnsupportedNodeError, match="'conv0'"):
        export_float(specs, input_shape=(2, 16))  # a conv layer on a flat input
    net = float_network(model, plastic=["head"], lr=0.1)
    x = np.zeros((3, *model.input_shape))
    with pytest.raises(ValueError, match="not plastic"):
        run_lava(net, x, {"conv0": np.zeros((3, 8, 16, 16))})
    with pytest.raises(ValueError, match="finite"):
        run_lava(net, x, {"head": np.full((3, 5), np.nan)})
    with pytest.raises(ValueError, match="step_offset"):
        run_lava(net, x, step_offset=5)
