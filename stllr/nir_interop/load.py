"""Build an S-TLLR model from a NIR graph (:func:`from_nir`, :func:`read_nir`).

Node patterns mapped (anything else is refused with the node's name and kind):

- ``Affine``/``Linear``/``Conv2d`` → ``LIF`` (synapse with the LIF as its only target) →
  ``LinearSTLLR``/``Conv2dSTLLR``; with a ``Linear`` on an edge from the ``LIF`` back to
  itself → ``RecurrentLinearSTLLR``. The weights are taken as Ŵ: the layers are built with
  ``weight_std=False`` so that they multiply by exactly the graph's weights.
- ``Affine``/``Linear`` → ``LI`` → ``AccumulateReadout`` (λ_pre from the node's metadata
  ``stllr_lambda_pre``, else 0.99).
- ``Affine``/``Linear`` not into a neuron → ``nn.Linear`` (a per-step logit).
- ``AvgPool2d``, ``Flatten``, ``Scale``, ``Input``, ``Output``.

The edges into a node are summed (NIR's convention). Time constants follow
:mod:`.time_mapping`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stllr.errors import UserError
from stllr.layers.readout import AccumulateReadout
from stllr.layers.stllr_layers import Conv2dSTLLR, LinearSTLLR, RecurrentLinearSTLLR
from stllr.models.base import SpikingModel
from stllr.neuron import LIFParams
from stllr.nir_interop import require_nir
from stllr.nir_interop.time_mapping import DEFAULT_DT, leak_from_tau, threshold_from_nir

_DENSE = ("Affine", "Linear")


class NIRNetwork(SpikingModel):
    """A model built from a NIR graph: ``units`` run in ``order``, each fed the sum of its
    ``sources``' outputs of the same step; the output is the sum of ``outputs``."""

    family = "stllr"

    def __init__(self, input_shape, num_classes, units: dict, sources: dict, outputs):
        super().__init__(tuple(input_shape), num_classes)
        self.units = nn.ModuleDict(units)
        self.order = list(units)
        self.sources = {k: list(v) for k, v in sources.items()}
        self.outputs = list(outputs)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        values = {"input": x}

        def gather(names):
            total = values[names[0]]
            for n in names[1:]:
                total = total + values[n]
            return total

        for name in self.order:
            values[name] = self.units[name](gather(self.sources[name]))
        return gather(self.outputs)


class _Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


class _Scale(nn.Module):
    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))
        self.identity = bool(np.all(np.asarray(scale) == 1.0))

    def forward(self, x):
        return x if self.identity else x * self.scale


def _kind(node) -> str:
    return type(node).__name__


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32).clone()


def _lif_params(name: str, node, dt: float) -> LIFParams:
    where = f"NIR node '{name}' (LIF)"
    leak = leak_from_tau(where, node.tau, node.r, node.v_leak, dt)
    meta = getattr(node, "metadata", {}) or {}
    if "stllr_leak" in meta:  # the exact leak the toolkit exported (same γ, checked above)
        leak = float(np.asarray(meta["stllr_leak"]))
    theta = threshold_from_nir(where, node.v_threshold, node.v_reset)
    reset = meta.get("reset", "hard")
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    if reset not in ("soft", "hard"):
        raise UserError(f"{where}: metadata 'reset' must be 'soft' or 'hard', got {reset!r}")
    return LIFParams(leak=leak, threshold=theta, reset=reset)


def _synapse(name: str, node) -> tuple[np.ndarray, np.ndarray | None]:
    bias = getattr(node, "bias", None)
    return np.asarray(node.weight), None if bias is None else np.asarray(bias)


def _spiking_unit(name, lif_node, syn_name, syn, rec, dt) -> nn.Module:
    """The S-TLLR layer of a synapse node → LIF node (→ recurrent Linear)."""
    lif = _lif_params(name, lif_node, dt)
    w, b = _synapse(syn_name, syn)
    if _kind(syn) == "Conv2d":
        pad = syn.padding
        if isinstance(pad, str):
            raise UserError(f"NIR node '{syn_name}' (Conv2d): field 'padding' must be integers")
        layer = Conv2dSTLLR(
            w.shape[1] * int(syn.groups), w.shape[0], tuple(w.shape[2:]),
            stride=tuple(int(s) for s in np.ravel(syn.stride)),
            padding=tuple(int(p) for p in np.ravel(pad)),
            dilation=tuple(int(d) for d in np.ravel(syn.dilation)),
            groups=int(syn.groups), bias=True, lif=lif, weight_std=False,
        )  # fmt: skip
    else:
        cls = RecurrentLinearSTLLR if rec is not None else LinearSTLLR
        layer = cls(w.shape[1], w.shape[0], bias=True, lif=lif, weight_std=False)
    with torch.no_grad():
        layer.weight.copy_(_t(w))
        layer.bias.copy_(_t(b) if b is not None else torch.zeros(w.shape[0]))
        if rec is not None:
            rec_name, rec_node = rec
            w_rec, b_rec = _synapse(rec_name, rec_node)
            if b_rec is not None and np.any(b_rec != 0):
                raise UserError(
                    f"NIR node '{rec_name}': field 'bias' of a recurrent synapse must be 0"
                )
            layer.weight_rec.copy_(_t(w_rec))
    return layer


def _readout_unit(name, li, syn_name, syn, dt) -> nn.Module:
    leak = leak_from_tau(f"NIR node '{name}' (LI)", li.tau, li.r, li.v_leak, dt)
    meta = getattr(li, "metadata", {}) or {}
    lam = float(np.asarray(meta.get("stllr_lambda_pre", 0.99)))
    w, b = _synapse(syn_name, syn)
    ro = AccumulateReadout(w.shape[1], w.shape[0], bias=True, leak=leak, lambda_pre=lam)
    with torch.no_grad():
        ro.weight.copy_(_t(w))
        ro.bias.copy_(_t(b) if b is not None else torch.zeros(w.shape[0]))
    return ro


def _linear_unit(syn) -> nn.Module:
    w, b = _synapse("", syn)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        lin.weight.copy_(_t(w))
        if b is not None:
            lin.bias.copy_(_t(b))
    return lin


def _pool_unit(name, node) -> nn.Module:
    k = tuple(int(v) for v in np.ravel(node.kernel_size))
    s = tuple(int(v) for v in np.ravel(node.stride))
    p = tuple(int(v) for v in np.ravel(node.padding))
    return nn.AvgPool2d(k, s, p)


def _topological(names, preds) -> list[str]:
    order, done, visiting = [], set(), set()

    def visit(n):
        if n in done:
            return
        if n in visiting:
            raise UserError(
                f"NIR graph: a cycle through node '{n}' that is not a recurrent LIF synapse"
            )
        visiting.add(n)
        for p in preds.get(n, ()):
            visit(p)
        visiting.discard(n)
        done.add(n)
        order.append(n)

    for n in names:
        visit(n)
    return order


def from_nir(graph, dt: float | None = None) -> NIRNetwork:
    """An :class:`NIRNetwork` of S-TLLR layers computing ``graph`` step by step.

    ``dt`` defaults to the graph's metadata ``dt``, else :data:`DEFAULT_DT`.
    """
    meta = graph.metadata or {}
    dt = float(np.asarray(meta.get("dt", DEFAULT_DT))) if dt is None else dt
    nodes = graph.nodes
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        if a not in nodes or b not in nodes:
            raise UserError(f"NIR graph: edge ({a!r}, {b!r}) names a node that does not exist")
        preds[b].append(a)
        succs[a].append(b)
    inputs = [n for n, v in nodes.items() if _kind(v) == "Input"]
    outputs = [n for n, v in nodes.items() if _kind(v) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"NIR graph: needs one Input and one Output node, got {inputs}, {outputs}")
    absorbed: set[str] = set()  # synapse nodes folded into a neuron unit
    units: dict[str, nn.Module] = {}
    sources: dict[str, list[str]] = {}
    for name, node in nodes.items():
        kind = _kind(node)
        if kind in ("LIF", "LI"):
            ff = [p for p in preds[name] if name not in preds[p]]
            rec = [p for p in preds[name] if name in preds[p]]
            if len(ff) != 1 or _kind(nodes[ff[0]]) not in (*_DENSE, "Conv2d"):
                raise UserError(
                    f"NIR node '{name}' ({kind}): needs exactly one Affine/Linear/Conv2d input "
                    f"synapse, got {[(p, _kind(nodes[p])) for p in ff]}"
                )
            syn_name = ff[0]
            if succs[syn_name] != [name]:
                raise UserError(f"NIR node '{syn_name}': a synapse into '{name}' must feed only it")
            if kind == "LI":
                if rec or _kind(nodes[syn_name]) == "Conv2d":
                    raise UserError(
                        f"NIR node '{name}' (LI): only a dense, non-recurrent readout maps"
                    )
                units[name] = _readout_unit(name, node, syn_name, nodes[syn_name], dt)
            else:
                if len(rec) > 1 or (rec and _kind(nodes[rec[0]]) not in _DENSE):
                    raise UserError(
                        f"NIR node '{name}' (LIF): at most one Linear recurrent synapse maps"
                    )
                r = (rec[0], nodes[rec[0]]) if rec else None
                units[name] = _spiking_unit(name, node, syn_name, nodes[syn_name], r, dt)
                absorbed.update(rec)
            absorbed.add(syn_name)
            sources[name] = preds[syn_name]
    for name, node in nodes.items():
        kind = _kind(node)
        if name in absorbed or name in units or kind in ("Input", "Output"):
            continue
        if kind in _DENSE:
            units[name] = _linear_unit(node)
        elif kind == "AvgPool2d":
            units[name] = _pool_unit(name, node)
        elif kind == "Flatten":
            units[name] = _Flatten()
        elif kind == "Scale":
            units[name] = _Scale(node.scale)
        else:
            raise UserError(
                f"NIR node '{name}': kind {kind} has no S-TLLR counterpart (supported: LIF, LI, "
                f"Affine, Linear, Conv2d, AvgPool2d, Flatten, Scale, Input, Output)"
            )
        sources[name] = preds[name]
    for name, src in sources.items():
        if not src:
            raise UserError(f"NIR node '{name}': no input edge")
    order = [n for n in _topological(list(units), sources) if n in units and n != inputs[0]]
    input_shape = tuple(int(v) for v in np.ravel(nodes[inputs[0]].input_type["input"]))
    out_shape = np.ravel(nodes[outputs[0]].output_type["output"])
    renamed = {n: n.replace(".", "_") for n in order}  # ModuleDict keys cannot hold '.'
    rn = {**renamed, inputs[0]: "input"}
    return NIRNetwork(
        input_shape, int(np.prod(out_shape)),
        {renamed[n]: units[n] for n in order},
        {renamed[n]: [rn[s] for s in sources[n]] for n in order},
        [rn[s] for s in preds[outputs[0]]],
    )  # fmt: skip


def read_nir(path: str | Path, dt: float | None = None) -> NIRNetwork:
    """:func:`from_nir` of the graph in the file ``path``; a one-line :class:`UserError`
    for a file that is not a NIR graph."""
    nir = require_nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIR file")
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as exc:  # h5py/nir raise many kinds for a file that is not NIR
        raise UserError(f"{path}: not a readable NIR graph ({type(exc).__name__}: {exc})") from exc
    return from_nir(graph, dt)
