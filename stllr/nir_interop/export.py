"""Export a float S-TLLR model to a NIR graph (:func:`to_nir`, :func:`write_nir`).

Each spiking layer becomes a synapse node (``Affine`` or ``Conv2d`` holding the
standardised weight Ŵ, weight standardisation folded in) followed by a ``LIF`` node (an
``IF`` node when γ = 1); the recurrent layer is a nested ``NIRGraph`` ``<layer>`` of
``input → lif``, ``lif → rec → lif`` (``rec``: a ``Linear`` of Ŵ_rec), ``lif → output``,
the layout snnTorch writes and reads (a flat ``lif ⇄ rec`` cycle is mis-wired by its
importer); ``AvgPool2d`` and global average pooling become ``AvgPool2d`` nodes, a 2×2
``MaxPool2d`` of spikes a ``SumPool2d`` followed by ``Threshold`` 0.5 (for spikes in
{0, 1} the window's max is H(sum − 0.5); NIR 1.0 has no max pooling); a residual
sum becomes a ``Scale`` node of ones fed by both branches (NIR sums the edges into a
node); the recurrent CuLIF layer of ``SHDNeuronNetSTLLR`` a nested graph whose ``Delay``
of one step feeds a ``CubaLIF`` (:mod:`.cuba`); the SHD accumulate readout is ``Affine`` →
``LI``, the VGG/ResNet head an ``Affine`` into the output. The graph's metadata states dt
and the discrete-time conventions (docs/nir.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from stllr.errors import UserError
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.models.chain import SpikingChain
from stllr.models.resnet import BasicBlock, SpikingResNet18
from stllr.models.shd import SHDNetSTLLR
from stllr.models.shd_neurons import SHDNeuronNetSTLLR
from stllr.models.vgg import VGGSTLLR
from stllr.nir_interop import require_nir
from stllr.nir_interop.cuba import cuba_arrays, exportable_decays, node_metadata
from stllr.nir_interop.time_mapping import DEFAULT_DT, if_arrays, li_arrays, lif_arrays

#: what a discrete-time reader needs to run the graph as the toolkit does
CONVENTIONS = (
    "discrete time, one step of dt per input frame; forward Euler: v[t] = (1 - dt/tau) v[t-1] "
    "+ (dt r/tau) I[t]; spike when v > v_threshold; node metadata 'reset' = 'soft' subtracts "
    "v_threshold, 'hard' sets v_reset; a recurrent edge carries the spikes of step t-1; "
    "the edges into a node are summed; outputs are per-step values (logits), summed over "
    "steps for classification; a CubaLIF steps I[t] = (1 - dt/tau_syn) I[t-1] + (dt w_in/tau_syn) "
    "x[t], then v[t] = (1 - dt/tau_mem) v[t-1] + (dt r/tau_mem) I[t] (the same step's current, "
    "as snnTorch's Synaptic); a Delay node holds its input for delay/dt steps; a cycle "
    "through a Delay carries the values of step t-1 at its recurrent edge and the Delay's "
    "steps on top (the toolkit's CuLIF: Delay of dt in front of the CubaLIF, so its voltage "
    "reads the previous step's current)"
)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _Graph:
    """Nodes and edges being collected, with the shape of each node's output."""

    def __init__(self, nir, dt: float):
        self.nir = nir
        self.dt = dt
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}

    def add(self, name: str, node, shape, *sources: str) -> str:
        self.nodes[name] = node
        self.shapes[name] = tuple(int(s) for s in shape)
        self.edges += [(src, name) for src in sources]
        return name

    def lif(self, name: str, layer, shape, *synapses: str) -> str:
        meta = {"reset": layer.lif.reset, "stllr_leak": float(layer.lif.leak)}
        if layer.lif.gamma == 1.0:
            node = self.nir.IF(**if_arrays(layer.lif, shape, self.dt), metadata=meta)
        else:
            node = self.nir.LIF(**lif_arrays(layer.lif, shape, self.dt), metadata=meta)
        return self.add(name, node, shape, *synapses)

    def recurrent(self, name: str, layer: RecurrentLinearSTLLR, shape, synapse: str) -> str:
        """The nested graph ``name`` of a recurrent population fed by ``synapse``."""
        with torch.no_grad():
            _, w_rec = layer.standardized_weights()
        inner = _Graph(self.nir, self.dt)
        inner.add("input", self.nir.Input(input_type={"input": np.array(shape)}), shape)
        inner.lif("lif", layer, shape, "input")
        inner.add("rec", self.nir.Linear(weight=_np(w_rec)), shape, "lif")
        inner.edges.append(("rec", "lif"))
        inner.add("output", self.nir.Output(output_type={"output": np.array(shape)}), shape, "lif")
        sub = self.nir.NIRGraph(nodes=inner.nodes, edges=inner.edges, type_check=False)
        return self.add(name, sub, shape, synapse)

    def spiking(self, name: str, layer: nn.Module, src: str) -> str:
        """A ``LinearSTLLR`` / ``Conv2dSTLLR`` / ``RecurrentLinearSTLLR`` fed by ``src``."""
        with torch.no_grad():
            w = layer.standardized_weight()
        bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0])
        in_shape = self.shapes[src]
        if isinstance(layer, Conv2dSTLLR):
            o = layer._ops
            syn = self.nir.Conv2d(
                input_shape=in_shape[1:], weight=_np(w), stride=o.stride, padding=o.padding,
                dilation=o.dilation, groups=o.groups, bias=_np(bias),
            )  # fmt: skip
            shape = (layer.out_channels, *layer.output_shape(*in_shape[1:]))
        else:
            if len(in_shape) > 1:
                src = self.flatten(f"{name}.flatten", src)
            syn = self.nir.Affine(weight=_np(w), bias=_np(bias))
            shape = (layer.out_features,)
        self.add(f"{name}.syn", syn, shape, src)
        if isinstance(layer, RecurrentLinearSTLLR):
            return self.recurrent(name, layer, shape, f"{name}.syn")
        return self.lif(f"{name}.lif", layer, shape, f"{name}.syn")

    def flatten(self, name: str, src: str) -> str:
        shape = self.shapes[src]
        node = self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return self.add(name, node, (int(np.prod(shape)),), src)

    def avg_pool(self, name: str, kernel, src: str) -> str:
        c, h, w = self.shapes[src]
        k = np.array(kernel, dtype=np.int64)
        node = self.nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=np.int64))
        return self.add(name, node, (c, h // k[0], w // k[1]), src)

    def pool(self, name: str, pool: nn.Module, src: str) -> str:
        if isinstance(pool, nn.Identity):
            return src
        same = pool.kernel_size == pool.stride == 2 and pool.padding in (0, (0, 0))
        if isinstance(pool, nn.AvgPool2d) and same:
            return self.avg_pool(name, (2, 2), src)
        if isinstance(pool, nn.MaxPool2d) and same and pool.dilation in (1, (1, 1)):
            return self.max_pool(name, src)
        raise UserError(
            f"{name}: {type(pool).__name__}(kernel {pool.kernel_size}, stride {pool.stride}, "
            f"padding {pool.padding}) has no exact NIR node (2×2, stride 2, no padding maps)"
        )

    def max_pool(self, name: str, src: str) -> str:
        """2×2 max pooling of spikes: ``SumPool2d`` then ``Threshold`` 0.5 (module doc)."""
        c, h, w = self.shapes[src]
        k = np.array((2, 2), dtype=np.int64)
        pool = self.nir.SumPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=np.int64))
        shape = (c, h // 2, w // 2)
        self.add(f"{name}.sum", pool, shape, src)
        thr = self.nir.Threshold(threshold=np.full(shape, 0.5), metadata={"stllr": "max pool"})
        return self.add(name, thr, shape, f"{name}.sum")

    def head(self, model: SpikingModel, src: str) -> str:
        """Global average pooling, flatten and the ``nn.Linear`` head (VGG, ResNet)."""
        _, h, w = self.shapes[src]
        src = self.flatten("gap.flatten", self.avg_pool("gap", (h, w), src))
        lin = model.head
        return self.add("head", self.nir.Affine(weight=_np(lin.weight), bias=_np(lin.bias)),
                        (lin.out_features,), src)  # fmt: skip


def _shd(g: _Graph, model: SHDNetSTLLR, src: str) -> str:
    return _readout(g, model.readout, g.spiking("rec", model.rec, src))


def _shd_neurons(g: _Graph, model: SHDNeuronNetSTLLR, src: str) -> str:
    """The recurrent CuLIF layer as ``rec.syn`` (Affine Ŵ, b) → nested graph ``rec`` of
    ``input → delay``, ``delay → lif`` (CubaLIF), ``lif → rec → delay`` (Linear Ŵ_rec),
    ``lif → output`` (:mod:`.cuba`: the Delay of one step is the CuLIF voltage reading the
    previous step's current), then the readout."""
    layer = model.rec
    alpha, beta = exportable_decays("rec", layer.neurons)
    with torch.no_grad():
        w, w_rec = layer.standardized_weights()
    bias = layer.bias if layer.bias is not None else torch.zeros(w.shape[0])
    shape = (layer.out_features,)
    g.add("rec.syn", g.nir.Affine(weight=_np(w), bias=_np(bias)), shape, src)
    inner = _Graph(g.nir, g.dt)
    inner.add("input", g.nir.Input(input_type={"input": np.array(shape)}), shape)
    inner.add("delay", g.nir.Delay(delay=np.full(shape, g.dt)), shape, "input")
    meta = {**node_metadata(layer.neurons), "stllr_lambda_syn": float(layer.lambda_syn)}
    theta = layer.neurons.spec.threshold
    cuba = g.nir.CubaLIF(**cuba_arrays(alpha, beta, theta, shape[0], g.dt), metadata=meta)
    inner.add("lif", cuba, shape, "delay")
    inner.add("rec", g.nir.Linear(weight=_np(w_rec)), shape, "lif")
    inner.edges.append(("rec", "delay"))
    inner.add("output", g.nir.Output(output_type={"output": np.array(shape)}), shape, "lif")
    sub = g.nir.NIRGraph(nodes=inner.nodes, edges=inner.edges, type_check=False)
    return _readout(g, model.readout, g.add("rec", sub, shape, "rec.syn"))


def _readout(g: _Graph, ro: AccumulateReadout, h: str) -> str:
    """The SHD accumulate readout: ``Affine`` (W, b) → ``LI`` (``I`` when γ = 1)."""
    g.add("readout.syn", g.nir.Affine(weight=_np(ro.weight), bias=_np(ro.bias)),
          (ro.out_features,), h)  # fmt: skip
    meta, n = {"stllr_lambda_pre": float(ro.lambda_pre)}, ro.out_features
    if ro.gamma == 1.0:  # no leak: NIR's integrator
        li = g.nir.I(r=np.full(n, 1.0 / g.dt), metadata=meta)
    else:
        li = g.nir.LI(**li_arrays(ro.gamma, n, g.dt), metadata=meta)
    return g.add("readout.li", li, (n,), "readout.syn")


def _chain(g: _Graph, model: SpikingChain, src: str) -> str:
    for i, layer in enumerate(model.layers):
        src = g.spiking(f"{model.prefix}{i}", layer, src)
    return src


def _vgg(g: _Graph, model: VGGSTLLR, src: str) -> str:
    for i, (conv, pool) in enumerate(zip(model.convs, model.pools, strict=True)):
        src = g.pool(f"pool{i}", pool, g.spiking(f"conv{i}", conv, src))
    return g.head(model, src)


def _block(g: _Graph, name: str, block: BasicBlock, src: str) -> str:
    body = g.spiking(f"{name}.conv2", block.conv2, g.spiking(f"{name}.conv1", block.conv1, src))
    short = src
    if not isinstance(block.shortcut, nn.Identity):
        short = g.spiking(f"{name}.shortcut", block.shortcut, src)
    shape = g.shapes[body]
    ones = g.nir.Scale(scale=np.ones(shape, dtype=np.float32))
    return g.add(f"{name}.sum", ones, shape, body, short)


def _resnet(g: _Graph, model: SpikingResNet18, src: str) -> str:
    if model.family != "stllr":
        raise UserError("NIR export: the BPTT ResNet twin is not supported; export an S-TLLR model")
    src = g.avg_pool("pool", (2, 2), g.spiking("stem", model.stem, src))
    for i, block in enumerate(model.blocks):
        src = _block(g, f"block{i}", block, src)
    return g.head(model, src)


_EXPORTERS = (
    (SHDNetSTLLR, _shd),
    (SHDNeuronNetSTLLR, _shd_neurons),
    (SpikingChain, _chain),
    (VGGSTLLR, _vgg),
    (SpikingResNet18, _resnet),
)


def to_nir(model: SpikingModel, dt: float = DEFAULT_DT):
    """The NIR graph of ``model`` (float weights, evaluation semantics: dropout off)."""
    nir = require_nir()
    export = dict(_EXPORTERS).get(type(model))
    if export is None:
        names = ", ".join(c.__name__ for c, _ in _EXPORTERS)
        raise UserError(f"NIR export supports {names}; got {type(model).__name__}")
    g = _Graph(nir, dt)
    g.add("input", nir.Input(input_type={"input": np.array(model.input_shape)}),
          model.input_shape)  # fmt: skip
    out = export(g, model, "input")
    g.add("output", nir.Output(output_type={"output": np.array(g.shapes[out])}),
          g.shapes[out], out)  # fmt: skip
    meta = {"dt": float(dt), "conventions": CONVENTIONS, "producer": "stllr",
            "model": type(model).__name__}  # fmt: skip
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta, type_check=False)


def write_nir(model: SpikingModel, path: str | Path, dt: float = DEFAULT_DT) -> None:
    """Write ``model``'s NIR graph to ``path`` (HDF5, ``nir.write``)."""
    require_nir().write(str(path), to_nir(model, dt))
