"""The toolkit's current-based neuron (CuLIF) ↔ NIR ``Delay`` → ``CubaLIF`` (docs/nir.md).

The toolkit's CuLIF (docs/neurons.md §2) steps, with input ``c[t]``::

    v[t] = α·v̂[t−1] + (1−α)·i[t−1]        i[t] = β·i[t−1] + c[t]

so its voltage reads the **previous** step's current. NIR's ``CubaLIF``
(``τ_syn dI/dt = −I + w_in·x``, ``τ_mem dv/dt = (v_leak − v) + R·I``) is read in discrete
time as snnTorch's ``Synaptic`` steps it, the voltage fed the current of the **same** step::

    I[t] = (1 − dt/τ_syn)·I[t−1] + (dt·w_in/τ_syn)·x[t]
    v[t] = (1 − dt/τ_mem)·v̂[t−1] + (dt·r/τ_mem)·I[t]

Fed ``x[t] = c[t−1]`` (a ``Delay`` node of one step dt in front of it), ``I[t] = g_i·i[t−1]``
with ``g_i = dt·w_in/τ_syn``, and the two agree exactly when

    β = 1 − dt/τ_syn,   α = 1 − dt/τ_mem,   g_i·g_v = 1 − α   (g_v = dt·r/τ_mem),  v_leak = 0.

The export writes ``g_v = 1`` (``r = τ_mem/dt``, what snnTorch's importer requires) and
``g_i = 1 − α`` (``w_in = (1−α)·τ_syn/dt``): NIR's ``I`` is the toolkit's ``(1−α)·i``.
On import any gains map: the synaptic weights and bias are multiplied by
``k = g_i·g_v/(1−α)`` (exactly 1 in float32 for the toolkit's own graphs, else the
weights are scaled: an exact identity of the linear dynamics, rounded once in float32).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from stllr.errors import UserError
from stllr.neurons.layers import RecurrentNeuronSTLLR
from stllr.neurons.population import NeuronSpec

#: the node kinds of the toolkit's current-based neurons that have an exact NIR node
EXPORTABLE_KINDS = ("culif", "pculif")


class CubaMapping(NamedTuple):
    """A ``CubaLIF`` read as the toolkit's CuLIF: the spec, the exact decay logits
    (``σ(logit)`` = α, β in float32), the factor ``k`` on the synaptic weights and bias."""

    spec: NeuronSpec
    mem_logit: float
    syn_logit: float
    scale: float


def _scalar(t) -> float:
    return float(torch.as_tensor(t).detach().reshape(-1)[0])


def cuba_arrays(alpha: float, beta: float, threshold: float, n: int, dt: float) -> dict:
    """NIR ``CubaLIF`` fields (float64 arrays of shape ``n``) of a CuLIF population with
    voltage decay ``alpha``, current decay ``beta`` (module doc: ``r = τ_mem/dt``,
    ``w_in = (1−α)·τ_syn/dt``)."""
    tau_mem, tau_syn = dt / (1.0 - alpha), dt / (1.0 - beta)

    def full(value):
        return np.full(n, value, dtype=np.float64)

    return {
        "tau_syn": full(tau_syn), "tau_mem": full(tau_mem), "r": full(tau_mem / dt),
        "v_leak": full(0.0), "v_threshold": full(threshold), "v_reset": full(0.0),
        "w_in": full((1.0 - alpha) * tau_syn / dt),
    }  # fmt: skip


def exportable_decays(name: str, population) -> tuple[float, float]:
    """``(α, β)`` of a population that maps onto one ``CubaLIF``, else a one-line error
    naming the layer and the parameter."""
    spec = population.spec
    if spec.kind not in EXPORTABLE_KINDS:
        raise UserError(
            f"NIR export: layer '{name}': neuron '{spec.kind}' has no exact NIR node (NIR 1.0 "
            f"has no adaptation); exportable: {', '.join(EXPORTABLE_KINDS)}"
        )
    p = population.params()
    for field, value in (("alpha", p.alpha), ("beta", p.beta)):
        if torch.as_tensor(value).numel() != 1:
            raise UserError(
                f"NIR export: layer '{name}': parameter '{field}' has one value per neuron "
                "(decay_mode = neuron); one decay per layer maps (decay_mode = layer)"
            )
    return _scalar(p.alpha), _scalar(p.beta)


def node_metadata(population) -> dict:
    """The CubaLIF node's metadata: the reset and the exact decay logits."""
    return {
        "reset": population.spec.reset,
        "stllr_kind": population.spec.kind,
        "stllr_mem_logit": _scalar(population.mem_logit),
        "stllr_syn_logit": _scalar(population.syn_logit),
    }


def _uniform(where: str, field: str, values) -> float:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(arr == arr[0]) or not math.isfinite(arr[0]):
        raise UserError(
            f"{where}: field '{field}' must be one finite value for all neurons (one decay "
            f"per layer), got {np.unique(arr)[:4].tolist()}"
        )
    return float(arr[0])


def _logit(where: str, field: str, decay: float, stated) -> float:
    """The logit of ``decay`` in (0, 1): the node's stated one when it gives the same
    float32 decay, else ``log(d/(1−d))``; refused when float32(σ(logit)) ≠ float32(d)."""
    if not 0.0 < decay < 1.0:
        raise UserError(
            f"{where}: field '{field}' must be > dt so that its decay 1 − dt/τ is in (0, 1), "
            f"got decay {decay} (a graph without metadata 'dt' needs --dt; snnTorch's is 1e-4)"
        )
    candidates = [] if stated is None else [float(np.asarray(stated))]
    candidates.append(math.log(decay / (1.0 - decay)))
    for logit in candidates:
        if torch.sigmoid(torch.tensor(logit, dtype=torch.float32)) == np.float32(decay):
            return logit
    raise UserError(f"{where}: field '{field}' gives decay {decay}, not representable as σ(logit)")


def culif_from_cuba(where: str, node, dt: float) -> CubaMapping:
    """The toolkit CuLIF of a ``CubaLIF`` fed through a one-step ``Delay`` (module doc);
    a one-line :class:`UserError` naming the field when it cannot be represented."""
    meta = getattr(node, "metadata", {}) or {}
    tau_syn = _uniform(where, "tau_syn", node.tau_syn)
    tau_mem = _uniform(where, "tau_mem", node.tau_mem)
    if _uniform(where, "v_leak", node.v_leak) != 0.0:
        raise UserError(f"{where}: field 'v_leak' must be 0 (the toolkit has no resting offset)")
    theta = _uniform(where, "v_threshold", node.v_threshold)
    if node.v_reset is not None and _uniform(where, "v_reset", node.v_reset) != 0.0:
        raise UserError(f"{where}: field 'v_reset' must be 0 (reset to zero or subtractive)")
    alpha, beta = 1.0 - dt / tau_mem, 1.0 - dt / tau_syn
    mem_logit = _logit(where, "tau_mem", alpha, meta.get("stllr_mem_logit"))
    syn_logit = _logit(where, "tau_syn", beta, meta.get("stllr_syn_logit"))
    g_i = dt * _uniform(where, "w_in", node.w_in) / tau_syn
    g_v = dt * _uniform(where, "r", node.r) / tau_mem
    scale = g_i * g_v / (1.0 - alpha)
    if not (math.isfinite(scale) and scale > 0.0):
        raise UserError(f"{where}: fields 'w_in', 'r' must give a positive input gain, got {scale}")
    reset = meta.get("reset", "hard")
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    if reset not in ("soft", "hard"):
        raise UserError(f"{where}: metadata 'reset' must be 'soft' or 'hard', got {reset!r}")
    spec = NeuronSpec(
        kind="culif", tau_mem=-1.0 / math.log(alpha), tau_syn=-1.0 / math.log(beta),
        threshold=theta, reset=reset, decay_mode="layer",
    )  # fmt: skip
    return CubaMapping(spec, mem_logit, syn_logit, 1.0 if np.float32(scale) == 1 else scale)


def check_delay(where: str, node, dt: float) -> None:
    """A ``Delay`` in front of a ``CubaLIF`` must delay every neuron by one step dt."""
    delay = _uniform(where, "delay", node.delay)
    if np.float32(delay / dt) != np.float32(1.0):
        raise UserError(
            f"{where}: field 'delay' must be dt = {dt} (the CuLIF voltage reads the previous "
            f"step's current: one step), got {delay}"
        )


def culif_unit(where: str, node, dt: float, w, b, w_rec, opts: dict):
    """The toolkit's recurrent CuLIF layer of a ``Delay`` → ``CubaLIF`` fed by the synapse
    ``w``, ``b`` (``[out, in]``, ``[out]``) and the recurrent ``w_rec`` (``[out, out]``,
    None: no recurrent synapse, Ŵ_rec = 0); ``opts``: the layer's learning options."""
    m = culif_from_cuba(where, node, dt)
    meta = getattr(node, "metadata", {}) or {}
    beta = float(torch.sigmoid(torch.tensor(m.syn_logit, dtype=torch.float32)))
    lam = float(np.asarray(meta.get("stllr_lambda_syn", beta)))
    out, n_in = w.shape
    layer = RecurrentNeuronSTLLR(
        n_in, out, m.spec, bias=True, lambda_syn=lam, weight_std=False, **opts
    )

    def scaled(a) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a), dtype=torch.float32).clone()
        return t if m.scale == 1.0 else (t.double() * m.scale).float()

    with torch.no_grad():
        layer.weight.copy_(scaled(w))
        layer.bias.copy_(scaled(b))
        layer.weight_rec.copy_(torch.zeros(out, out) if w_rec is None else scaled(w_rec))
        layer.neurons.mem_logit.fill_(m.mem_logit)
        layer.neurons.syn_logit.fill_(m.syn_logit)
    return layer


def _kind_of(node) -> str:
    return type(node).__name__


def _weights(node) -> tuple[np.ndarray, np.ndarray | None]:
    bias = getattr(node, "bias", None)
    return np.asarray(node.weight), None if bias is None else np.asarray(bias)


def delayed_cuba_unit(name, nodes, preds, succs, dt, opts):
    """``Synapse → Delay → CubaLIF`` (a ``Linear`` back from the CubaLIF into the Delay:
    recurrent) as the toolkit's recurrent CuLIF layer (module doc); returns the unit, the
    nodes it absorbs (Delay, synapses) and its sources (``nodes``, ``preds``, ``succs``: the
    flattened graph)."""
    delay = preds[name][0]
    check_delay(f"NIR node '{delay}' (Delay)", nodes[delay], dt)
    ff = [p for p in preds[delay] if name not in preds[p]]
    rec = [p for p in preds[delay] if name in preds[p]]
    if len(ff) != 1 or _kind_of(nodes[ff[0]]) not in ("Affine", "Linear") or len(rec) > 1:
        raise UserError(
            f"NIR node '{delay}' (Delay): in front of CubaLIF '{name}' it needs one Affine/Linear "
            f"input synapse and at most one recurrent Linear from '{name}', got "
            f"{[(p, _kind_of(nodes[p])) for p in preds[delay]]}"
        )
    if rec and _kind_of(nodes[rec[0]]) not in ("Affine", "Linear"):
        raise UserError(f"NIR node '{rec[0]}': the recurrent synapse of '{name}' must be Linear")
    for n, into in ((ff[0], delay), (delay, name), *((r, delay) for r in rec)):
        if succs[n] != [into]:
            raise UserError(f"NIR node '{n}': a synapse into '{into}' must feed only it")
    w, b = _weights(nodes[ff[0]])
    b = np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32)
    w_rec = None
    if rec:
        w_rec, b_rec = _weights(nodes[rec[0]])
        b = b if b_rec is None else b + b_rec.astype(np.float32)  # added at every step
    unit = culif_unit(f"NIR node '{name}' (CubaLIF)", nodes[name], dt, w, b, w_rec, opts)
    return unit, [delay, ff[0], *rec], preds[ff[0]]
