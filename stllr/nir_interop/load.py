"""Build an S-TLLR model from a NIR graph (:func:`from_nir`, :func:`read_nir`).

Nested ``NIRGraph`` nodes are flattened first (:mod:`.graph`). Node patterns mapped
(anything else is refused with the node's name and kind):

- ``Affine``/``Linear``/``Conv2d`` → a spiking neuron (synapse with the neuron as its only
  target) → ``LinearSTLLR``/``Conv2dSTLLR``; with a ``Linear``/``Affine`` on an edge from
  the neuron back to itself → ``RecurrentLinearSTLLR`` (a recurrent ``Affine``'s bias is
  added to the input synapse's bias: both are added at every step). The spiking neuron
  is ``LIF``, ``IF`` (no leak) or a ``CubaLIF`` whose current has no memory
  (:mod:`.time_mapping`).
- ``Affine``/``Linear`` → ``Delay`` (one step dt) → ``CubaLIF``, with a ``Linear`` from the
  CubaLIF back into the Delay (recurrent) or without → the toolkit's recurrent CuLIF layer
  (:mod:`.cuba`; no recurrent synapse: Ŵ_rec = 0), which maps only as the hidden layer of
  ``SHDNeuronNetSTLLR``. The weights are taken as Ŵ: the layers are built with
  ``weight_std=False`` so that they multiply by exactly the graph's weights.
- ``Affine``/``Linear`` → ``LI`` or ``I`` → ``AccumulateReadout`` (λ_pre from the node's
  metadata ``stllr_lambda_pre``, else 0.99).
- ``Affine``/``Linear`` not into a neuron → ``nn.Linear`` (a per-step logit).
- ``SumPool2d`` of spikes → ``Threshold`` (0 < θ < 1) → ``nn.MaxPool2d``: for spikes in
  {0, 1}, max = H(sum − θ). ``SumPool2d`` otherwise → a sum pool; ``AvgPool2d``,
  ``Flatten``, ``Scale``, ``Input``, ``Output``.

The edges into a node are summed (NIR's convention). Time constants follow
:mod:`.time_mapping`. The result is a toolkit model class when the units fit one
(:mod:`.lower`), else a generic :class:`NIRNetwork`.
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
from stllr.neurons.layers import RecurrentNeuronSTLLR
from stllr.nir_interop import require_nir
from stllr.nir_interop.cuba import delayed_cuba_unit
from stllr.nir_interop.graph import flatten
from stllr.nir_interop.lower import CLASSES, toolkit_model
from stllr.nir_interop.time_mapping import (
    DEFAULT_DT,
    check_memoryless_current,
    leak_free,
    leak_from_tau,
    threshold_from_nir,
)

_DENSE = ("Affine", "Linear")
_SPIKING = ("LIF", "IF", "CubaLIF")
_READOUT = ("LI", "I")


class NIRNetwork(SpikingModel):
    """A model built from a NIR graph: ``units`` run in ``order``, each fed the sum of its
    ``sources``' outputs of the same step; the output is the sum of ``outputs``."""

    family = "stllr"

    def __init__(self, input_shape, num_classes, order, units: dict, sources: dict, outputs):
        super().__init__(tuple(input_shape), num_classes)
        self.units = nn.ModuleDict(units)
        self.order = list(order)
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
    """The toolkit LIF of a spiking NIR neuron (``LIF``, ``IF``, memoryless ``CubaLIF``)."""
    kind = _kind(node)
    where = f"NIR node '{name}' ({kind})"
    meta = getattr(node, "metadata", {}) or {}
    if kind == "IF":
        leak = leak_free(where, node.r, dt)
    else:
        if kind == "CubaLIF":
            check_memoryless_current(where, node.tau_syn, node.w_in, dt)
        tau, field = (node.tau, "tau") if kind == "LIF" else (node.tau_mem, "tau_mem")
        leak = leak_from_tau(where, tau, node.r, node.v_leak, dt, field)
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


def _spiking_unit(name, lif_node, syn_name, syn, rec, dt, opts) -> nn.Module:
    """The S-TLLR layer of a synapse node → LIF node (→ recurrent Linear); ``opts``: the
    layers' learning options (``factors``, ``psi``) when given."""
    lif = _lif_params(name, lif_node, dt)
    w, b = _synapse(syn_name, syn)
    b = np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32)
    w_rec, b_rec = _synapse(*rec) if rec is not None else (None, None)
    if b_rec is not None:
        b = b + b_rec.astype(np.float32)  # added at every step, as b is
    if _kind(syn) == "Conv2d":
        pad = syn.padding
        if isinstance(pad, str):
            raise UserError(f"NIR node '{syn_name}' (Conv2d): field 'padding' must be integers")
        layer = Conv2dSTLLR(
            w.shape[1] * int(syn.groups), w.shape[0], tuple(w.shape[2:]),
            stride=tuple(int(s) for s in np.ravel(syn.stride)),
            padding=tuple(int(p) for p in np.ravel(pad)),
            dilation=tuple(int(d) for d in np.ravel(syn.dilation)),
            groups=int(syn.groups), bias=True, lif=lif, weight_std=False, **opts,
        )  # fmt: skip
    else:
        cls = RecurrentLinearSTLLR if rec is not None else LinearSTLLR
        layer = cls(w.shape[1], w.shape[0], bias=True, lif=lif, weight_std=False, **opts)
    with torch.no_grad():
        layer.weight.copy_(_t(w))
        layer.bias.copy_(_t(b))
        if w_rec is not None:
            layer.weight_rec.copy_(_t(w_rec))
    return layer


def _readout_unit(name, li, syn_name, syn, dt) -> nn.Module:
    where = f"NIR node '{name}' ({_kind(li)})"
    if _kind(li) == "I":
        leak = leak_free(where, li.r, dt)
    else:
        leak = leak_from_tau(where, li.tau, li.r, li.v_leak, dt)
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


def _pool_unit(node, kind: str) -> nn.Module:
    """``kind``: ``avg``, ``sum`` or ``max`` (a sum pool of spikes thresholded, see module doc)."""
    k = tuple(int(v) for v in np.ravel(node.kernel_size))
    s = tuple(int(v) for v in np.ravel(node.stride))
    p = tuple(int(v) for v in np.ravel(node.padding))
    if kind == "max":
        return nn.MaxPool2d(k, s, p)
    return nn.AvgPool2d(k, s, p, divisor_override=1 if kind == "sum" else None)


def _max_pool_threshold(name, nodes, preds, succs) -> str | None:
    """The ``Threshold`` node that makes the ``SumPool2d`` ``name`` a max pool, or None:
    its only successor, with one θ in (0, 1), and every input a spiking neuron."""
    after = succs[name]
    if len(after) != 1 or _kind(nodes[after[0]]) != "Threshold":
        return None
    theta = np.unique(np.asarray(nodes[after[0]].threshold, dtype=np.float64))
    binary = all(_kind(nodes[p]) in _SPIKING for p in preds[name])
    return after[0] if binary and theta.size == 1 and 0.0 < theta[0] < 1.0 else None


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


def _options(factors, psi) -> dict:
    opts = {} if factors is None else {"factors": factors}
    return opts if not psi else {**opts, "psi": psi}


def from_nir(graph, dt: float | None = None, factors=None, psi: str = "", feedback: str = "BP"):
    """The S-TLLR model computing ``graph`` step by step: a toolkit model class when the
    graph has the shape of one (:mod:`.lower`), else an :class:`NIRNetwork`.

    ``dt`` defaults to the graph's metadata ``dt``, else :data:`DEFAULT_DT`. ``factors``
    (:class:`~stllr.factors.STLLRFactors`), ``psi`` and ``feedback`` set how the layers
    learn when fine-tuned (default: each layer's own).
    """
    meta = graph.metadata or {}
    dt = float(np.asarray(meta.get("dt", DEFAULT_DT))) if dt is None else dt
    nodes, edges = flatten(graph.nodes, graph.edges)
    opts = _options(factors, psi)
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b in edges:
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
        if kind == "CubaLIF" and [_kind(nodes[p]) for p in preds[name]] == ["Delay"]:
            units[name], folded, sources[name] = delayed_cuba_unit(
                name, nodes, preds, succs, dt, opts
            )
            absorbed.update(folded)
        elif kind in (*_SPIKING, *_READOUT):
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
            if kind in _READOUT:
                if rec or _kind(nodes[syn_name]) == "Conv2d":
                    raise UserError(
                        f"NIR node '{name}' ({kind}): only a dense, non-recurrent readout maps"
                    )
                units[name] = _readout_unit(name, node, syn_name, nodes[syn_name], dt)
            else:
                if len(rec) > 1 or (rec and _kind(nodes[rec[0]]) not in _DENSE):
                    raise UserError(
                        f"NIR node '{name}' ({kind}): at most one Linear recurrent synapse maps"
                    )
                r = (rec[0], nodes[rec[0]]) if rec else None
                units[name] = _spiking_unit(name, node, syn_name, nodes[syn_name], r, dt, opts)
                absorbed.update(rec)
            absorbed.add(syn_name)
            sources[name] = preds[syn_name]
    for name, node in nodes.items():
        kind = _kind(node)
        if kind == "SumPool2d" and _max_pool_threshold(name, nodes, preds, succs):
            thr = _max_pool_threshold(name, nodes, preds, succs)
            units[thr], sources[thr] = _pool_unit(node, "max"), preds[name]
            absorbed.update((name, thr))
    for name, node in nodes.items():
        kind = _kind(node)
        if name in absorbed or name in units or kind in ("Input", "Output"):
            continue
        if kind in _DENSE:
            units[name] = _linear_unit(node)
        elif kind in ("AvgPool2d", "SumPool2d"):
            units[name] = _pool_unit(node, "avg" if kind == "AvgPool2d" else "sum")
        elif kind == "Flatten":
            units[name] = _Flatten()
        elif kind == "Scale":
            units[name] = _Scale(node.scale)
        elif kind == "Threshold":
            raise UserError(
                f"NIR node '{name}': kind Threshold maps only as max pooling (SumPool2d of "
                "spikes → Threshold with one value in (0, 1))"
            )
        else:
            raise UserError(
                f"NIR node '{name}': kind {kind} has no S-TLLR counterpart (supported: LIF, IF, "
                f"CubaLIF, LI, I, Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Threshold after "
                f"SumPool2d, Flatten, Scale, Input, Output)"
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
    parts = (
        input_shape, int(np.prod(out_shape)),
        [renamed[n] for n in order], {renamed[n]: units[n] for n in order},
        {renamed[n]: [rn[s] for s in sources[n]] for n in order},
        [rn[s] for s in preds[outputs[0]]],
    )  # fmt: skip
    model = toolkit_model(*parts, feedback=feedback)
    if model is None and any(isinstance(u, RecurrentNeuronSTLLR) for u in units.values()):
        raise UserError(
            "NIR graph: a CubaLIF with current memory maps only as the recurrent layer of an "
            "SHD network (Input → Affine → Delay → CubaLIF (⇄ Linear) → Affine → LI/I → Output)"
        )
    return model if model is not None else NIRNetwork(*parts)


def require_toolkit_model(model, source: str) -> SpikingModel:
    """``model`` when it is a toolkit model class (deployable), else a one-line error."""
    if isinstance(model, NIRNetwork):
        raise UserError(
            f"{source}: the graph runs in float but has the shape of no network the toolkit "
            f"deploys ({CLASSES}); units: {', '.join(model.order)}"
        )
    return model


def read_graph(path: str | Path):
    """The NIR graph in the file ``path``; a one-line :class:`UserError` for a file that
    is not a NIR graph."""
    nir = require_nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIR file")
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as exc:  # h5py/nir raise many kinds for a file that is not NIR
        raise UserError(f"{path}: not a readable NIR graph ({type(exc).__name__}: {exc})") from exc
    return graph


def read_nir(path: str | Path, dt: float | None = None, **options) -> SpikingModel:
    """:func:`from_nir` of the graph in the file ``path`` (``options``: as there)."""
    graph = read_graph(path)
    try:
        return from_nir(graph, dt, **options)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
