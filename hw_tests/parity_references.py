"""The references of the parity checks, shared with the parity tests in ``hw_tests/``:
the torch float S-TLLR model with recorded states (Lava ``floating_pt``), the batch-1
integer emulator (Lava ``fixed_pt``), the delay-1 emulator and the hard-reset dense and
conv chain models (Lava's built-in ``Dense``/``Conv`` + ``LIF``), and the bounds and
step counts of the parity table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lava_models.exporter import output_shapes
from quantization.convert import node_modules, register_converter, stllr_layer_spec
from quantization.emulator import IntegerEmulator
from quantization.network import QNetwork
from quantization.ptq import PTQConfig, quantize_model
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.chain import SpikingChain
from stllr.neuron import LIFParams
from stllr.neurons.layers import RecurrentNeuronSTLLR

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # float paths: membranes, logits and weights
LEARN_STEPS = 100  # on-device learning steps of the fixed check
LR = 0.05
STLLR_LAYERS = (Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR, RecurrentNeuronSTLLR)
#: the layers with a recurrent weight ``weight_rec`` (learned, standardised with ``weight``)
RECURRENT_LAYERS = (RecurrentLinearSTLLR, RecurrentNeuronSTLLR)


# =======================================================================================
# References shared with the parity tests
# =======================================================================================

# --- torch float S-TLLR (hw_tests/test_lava_float_vs_torch.py) --------------------------


def weighted_modules(model) -> dict[str, nn.Module]:
    """The float graph's weighted node names → the torch modules that compute them (the
    converter's own record, :func:`quantization.convert.node_modules`)."""
    return node_modules(model)


class Recorder:
    """Forward hooks on the weighted modules: their output (and, for S-TLLR layers, the
    membrane ũ) at every step. With ``detach`` the layers above read a detached copy, so
    a gradient injected at a layer's output reaches that layer's weights only."""

    def __init__(self, modules: dict[str, nn.Module], detach: bool = False):
        self.out = {k: [] for k in modules}
        self.mem = {k: [] for k, m in modules.items() if isinstance(m, STLLR_LAYERS)}
        self.live: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(k, detach)) for k, m in modules.items()]

    def _hook(self, name, detach):
        def hook(module, args, output):
            self.live[name] = output
            self.out[name].append(output[0].detach().numpy().copy())
            if name in self.mem:
                self.mem[name].append(_membrane(module)[0].detach().numpy().copy())
            return output.detach() if detach else None

        return hook

    def stacked(self):
        return ({k: np.stack(v) for k, v in self.out.items()},
                {k: np.stack(v) for k, v in self.mem.items()})  # fmt: skip

    def remove(self):
        for h in self.handles:
            h.remove()


def _membrane(module) -> torch.Tensor:
    """The membrane after reset: ũ of the LIF layers, v̂ of the neuron populations."""
    if isinstance(module, RecurrentNeuronSTLLR):
        return module.state.neuron.v
    return module.state.u


def torch_inference(model, frames):
    """Outputs and membranes of every weighted module at every step, ``[N·T, ...]``."""
    rec = Recorder(weighted_modules(model))
    try:
        with torch.no_grad():
            for sample in frames:
                model.reset_state()
                for x in sample:
                    model(x[None])
    finally:
        rec.remove()
    return rec.stacked()


def effective_weight_model(model):
    """A copy whose S-TLLR layers multiply by leaf copies of Ŵ (weight standardisation
    off: ``weight`` ← Ŵ, ``weight_rec`` ← Ŵ_rec), every parameter frozen."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RECURRENT_LAYERS) and m.weight_std:
                w, w_rec = (t.clone() for t in m.standardized_weights())
                m.weight.copy_(w)
                m.weight_rec.copy_(w_rec)
                m.weight_std = False
            elif isinstance(m, STLLR_LAYERS) and m.weight_std:
                m.weight.copy_(m.standardized_weight().clone())
                m.weight_std = False
    for p in model.parameters():
        p.requires_grad_(False)
    model.reset_state()
    return model


def torch_learning(model, frames, signals, plastic, lr):
    """Online S-TLLR on Ŵ with δ = L injected at each plastic layer (module docstring).

    Returns outputs/membranes like :func:`torch_inference` and the learned weights
    ``{name: {"w": ..., ["w_rec": ...]}}``."""
    model = effective_weight_model(model)
    mods = weighted_modules(model)
    leaves = {}
    for name in plastic:
        m = mods[name]
        leaves[name] = [m.weight] + ([m.weight_rec] if isinstance(m, RECURRENT_LAYERS) else [])
        for w in leaves[name]:
            w.requires_grad_(True)
    rec = Recorder(mods, detach=True)
    flat = [w for ws in leaves.values() for w in ws]
    try:
        for i, sample in enumerate(frames):
            model.reset_state()
            for t, x in enumerate(sample):
                model(x[None])
                loss = sum((torch.as_tensor(signals[k][i, t])[None] * rec.live[k]).sum()
                           for k in plastic)  # fmt: skip
                grads = torch.autograd.grad(loss, flat)
                with torch.no_grad():
                    for w, g in zip(flat, grads, strict=True):
                        w -= lr * g
    finally:
        rec.remove()
    out, mem = rec.stacked()
    weights = {k: dict(zip(("w", "w_rec")[: len(ws)], (w.detach().numpy().copy() for w in ws),
                           strict=True)) for k, ws in leaves.items()}  # fmt: skip
    return out, mem, weights


# --- the batch-1 integer emulator (hw_tests/test_lava_fixed_vs_emulator.py) -------------


@dataclass
class Reference:
    outputs: dict[str, np.ndarray]  # node → [steps, ...]
    emu: IntegerEmulator


def emulate(qnet, frames, signals=None, step_offset: int = 0) -> Reference:
    """The emulator, batch 1: ``reset()`` before every sample, one ``step`` per frame."""
    emu = IntegerEmulator(qnet, delay=0)
    emu.step_count = step_offset
    outs = {n.name: [] for n in qnet.nodes}
    frames = np.asarray(frames)
    signals = signals or {}
    for i in range(frames.shape[0]):
        emu.reset()
        for t in range(frames.shape[1]):
            sig = {k: torch.as_tensor(v[i, t])[None] for k, v in signals.items()}
            o = emu.step(torch.as_tensor(frames[i, t])[None], signals=sig or None)
            for n in qnet.nodes:
                outs[n.name].append(o[n.name][0].numpy())
    return Reference({k: np.stack(v) for k, v in outs.items()}, emu)


def integer_signals(qnet, names, steps: int, seed: int, shape_prefix=()) -> dict[str, np.ndarray]:
    """Uniform integer learning signals in [−60, 60], one per output neuron per step."""
    rng = np.random.default_rng(seed)
    shapes = output_shapes(qnet)
    return {n: rng.integers(-60, 61, (*shape_prefix, steps, *shapes[n])) for n in names}


# --- Lava's built-in Dense/Conv + LIF (hw_tests/test_emulator_vs_lava_builtin*.py) -----


def emulate_delay1(qnet: QNetwork, x: np.ndarray) -> dict:
    """``IntegerEmulator(qnet, delay=1)`` on ``[T, ...]``: s, u, v of every node and step."""
    emu = IntegerEmulator(qnet, delay=1)
    rec = {n.name: {"s": [], "u": [], "v": []} for n in qnet.nodes}
    for t in range(x.shape[0]):
        outs = emu.step(torch.as_tensor(x[t])[None])
        for n in qnet.nodes:
            st = emu.state[n.name]
            for key, val in (("s", outs[n.name]), ("u", st.u), ("v", st.v)):
                rec[n.name][key].append(val[0].numpy().astype(np.int64))
    return {k: {q: np.stack(v) for q, v in r.items()} for k, r in rec.items()}


# (sizes, [(leak, threshold)] per layer, input rate)
DENSE_ARCHS = {
    "2layer": ((30, 20, 10), [(2.0, 0.6), (0.5, 0.8)], 0.3),
    "3layer": ((30, 24, 16, 8), [(3.0, 0.5), (0.0, 0.7), (1.0, 0.55)], 0.35),
}


def dense_chain_qnet(arch: str, seed: int, bits: int, steps: int = 30):
    """PTQ of a hard-reset dense chain with non-zero biases; binary input ``[T, in]``."""
    sizes, lif_cfg, rate = DENSE_ARCHS[arch]
    torch.manual_seed(seed)
    lifs = [LIFParams(leak=lk, threshold=th, reset="hard") for lk, th in lif_cfg]
    model = SpikingChain.dense(sizes, lifs)
    with torch.no_grad():
        for layer in model.layers:  # non-zero biases, and a gain that drives the next layer
            layer.bias.uniform_(-0.7, 0.4)
            layer.gain.fill_(2.0)
    g = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(steps, 1, sizes[0], generator=g) < rate).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, x[:, 0].numpy().astype(np.int64)


class ConvChain(SpikingModel):
    """Conv2dSTLLR layers, then optional LinearSTLLR layers on the flattened output."""

    def __init__(self, input_shape, convs, denses):
        super().__init__(tuple(input_shape), denses[-1][0] if denses else convs[-1][1])
        self.convs = torch.nn.ModuleList(Conv2dSTLLR(**kw) for kw in convs_kwargs(convs))
        shape = tuple(input_shape)
        for layer in self.convs:
            shape = (layer.out_channels, *layer.output_shape(*shape[1:]))
        n_in, fcs = int(np.prod(shape)), []
        for n_out, lif in denses:
            fcs.append(LinearSTLLR(n_in, n_out, lif=lif))
            n_in = n_out
        self.fcs = torch.nn.ModuleList(fcs)

    def forward(self, x, target=None):
        for layer in self.convs:
            x = layer(x)
        if len(self.fcs):
            x = x.flatten(1)  # [C, H, W] row-major: the order of the dense weight's columns
        for layer in self.fcs:
            x = layer(x)
        return x


def convs_kwargs(convs):
    for c_in, c_out, k, extra, lif in convs:
        yield {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, "lif": lif, **extra}


def _convert_conv_chain(model, factors):
    specs, prev = [], "input"
    layers = [(f"conv{i}", m) for i, m in enumerate(model.convs)]
    layers += [(f"fc{i}", m) for i, m in enumerate(model.fcs)]
    for name, layer in layers:
        specs.append(stllr_layer_spec(layer, name, (prev,), factors))
        prev = name
    return specs


register_converter(ConvChain, _convert_conv_chain)


def hard_lif(leak, threshold) -> LIFParams:
    return LIFParams(leak=leak, threshold=threshold, reset="hard")


# name: (input [C, H, W], convs (c_in, c_out, kernel, kwargs, lif), denses (out, lif), rate)
CONV_ARCHS = {
    # padding 1, then stride 2 / padding 0, then a dense layer on the flattened 3×3 map
    "pad1-stride2-fc": (
        (2, 8, 8),
        [
            (2, 4, 3, {"padding": 1}, hard_lif(1.0, 0.6)),
            (4, 3, 3, {"stride": 2}, hard_lif(0.5, 0.5)),
        ],
        [(6, hard_lif(2.0, 0.6))],
        0.3,
    ),
    # non-square everything (catches H/W swaps), groups and dilation, no dense layer
    "asym-groups-dilation": (
        (2, 9, 7),
        [
            (2, 4, (3, 2), {"stride": (2, 1), "padding": (1, 0)}, hard_lif(2.0, 0.5)),
            (4, 4, 3, {"groups": 2, "dilation": (1, 2), "padding": (1, 2)}, hard_lif(0.0, 0.6)),
        ],
        [],
        0.35,
    ),
}


def conv_chain_qnet(arch: str, seed: int, bits: int, steps: int = 20):
    """PTQ of a hard-reset conv (→ dense) chain; binary input ``[T, C, H, W]``."""
    in_shape, convs, denses, rate = CONV_ARCHS[arch]
    torch.manual_seed(seed)
    model = ConvChain(in_shape, convs, denses)
    with torch.no_grad():  # non-zero biases, and a gain that drives the next layer
        for layer in (*model.convs, *model.fcs):
            layer.bias.uniform_(-0.8, 0.7)
            layer.gain.fill_(2.0)
    g = torch.Generator().manual_seed(1000 + seed)
    x = (torch.rand(steps, 1, *in_shape, generator=g) < rate).float()
    qnet, _ = quantize_model(model, [x], PTQConfig(weight_bits=bits))
    return qnet, x[:, 0].numpy().astype(np.int64)


def run_builtin_with_deadline(qnet: QNetwork, x: np.ndarray, timeout_s: float) -> dict:
    """:func:`lava_models.builtin.run_builtin` with the table's deadline."""
    from lava_models.builtin import run_builtin

    return run_builtin(qnet, x, timeout_s=timeout_s)
