"""Inference of a quantized network on Lava's built-in ``Dense`` + ``LIF`` processes.

Covers the :class:`~quantization.network.QNetwork` s whose neurons *are* Lava's LIF:
every node a dense :class:`~quantization.network.SpikingLayer` with ``reset == "hard"``,
no recurrent weights, ``weight_bits ≤ 8`` and one input (``"input"`` or another such
layer). Anything else raises :class:`UnsupportedNodeError` naming the node, before
Lava is imported.

Mapping per node (LAVA.md §4; integer semantics of :mod:`quantization.loihi`)::

    Dense(weights = m << 1, weight_exp = −1, num_weight_bits = 8, sign_mode = MIXED)
    LIF(du = 4095, dv = node.dv, vth = node.vth,
        bias_mant = node.bias_mant, bias_exp = node.bias_exp)

Lava's fixed ``Dense`` clips MIXED weights to [−256, 255] and truncates their
``8 − num_weight_bits + 1 = 1`` lowest bit; storing the signed ≤ 8-bit mantissa ``m``
as ``2m`` (even, in [−256, 254]) loses nothing, and ``weight_exp = −1`` halves the
(even) sum back, so ``a = Σ_j m_ij s_j`` exactly. ``sign_mode`` is forced to MIXED:
auto-detection makes an all-non-positive matrix INHIBITORY, which clips ``−2m`` to
[0, 255]: ``2·(−128)`` becomes −255 and a step with two such inputs active is off by
one (an all-non-negative matrix, auto-detected EXCITATORY, would happen to stay exact).

Timing: each ``Dense`` sends the previous step's sum, so layer ``k`` (1-based) sees the
input of step ``t`` at step ``t + k``; :class:`quantization.emulator.IntegerEmulator`
with ``delay=1`` reproduces this. ``s``, ``u`` and ``v`` are read at the end of every
step (``v`` after the reset).

Lava (through :func:`lava_models.runtime.import_lava`) and the toolkit (torch) are
imported lazily: at module level this file needs only numpy, so it stays cheap to
import and harmless when Lava's model discovery executes it as a sibling of a Process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the module imports only numpy at top level (LAVA.md §7, pitfall 4)
    from quantization.network import QNetwork, SpikingLayer

#: Signed mantissa range that ``m << 1`` keeps inside Lava's MIXED clip [−256, 255].
WEIGHT_MIN, WEIGHT_MAX = -128, 127
#: Lava LIF register ranges (``PyLifModelBitAcc`` docstring).
DV_MAX = 4095
VTH_MAX = (1 << 17) - 1
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1
#: ``du`` that gives Lava's LIF no current memory (``u[t] = a[t] << 6``).
DU_NONE = 4095
#: Export of the weight mantissas (see the module docstring).
EXPORT_SHIFT = 1
NUM_WEIGHT_BITS = 8


class UnsupportedNodeError(ValueError):
    """A node that Lava's built-in Dense + LIF cannot run bit-exactly (names the node)."""


def check_builtin_supported(qnet: QNetwork) -> None:
    """Raise :class:`UnsupportedNodeError` unless every node maps onto Dense + LIF."""
    from quantization.network import SpikingLayer

    if not qnet.nodes:
        raise UnsupportedNodeError("QNetwork has no nodes")
    seen = {"input"}
    for n in qnet.nodes:
        where = f"node {n.name!r} ({type(n).__name__})"
        if not isinstance(n, SpikingLayer):
            raise UnsupportedNodeError(
                f"{where}: Lava's built-in LIF runs only dense spiking layers; "
                "readouts, pools and adds need the toolkit's own processes"
            )
        if n.kind != "dense":
            raise UnsupportedNodeError(f"{where}: kind {n.kind!r} is not supported (dense only)")
        if n.weight_rec is not None:
            raise UnsupportedNodeError(f"{where}: recurrent weights are not supported")
        if n.reset != "hard":
            raise UnsupportedNodeError(
                f"{where}: reset {n.reset!r} is not supported (Lava's LIF resets v to 0: 'hard')"
            )
        if n.weight_bits > 8:
            raise UnsupportedNodeError(
                f"{where}: weight_bits = {n.weight_bits}; Lava's Dense holds at most 8 bits"
            )
        if len(n.inputs) != 1 or n.inputs[0] not in seen:
            raise UnsupportedNodeError(
                f"{where}: inputs {n.inputs} must be one earlier spiking layer or 'input'"
            )
        w = n.weight
        if w.dim() != 2 or w.numel() == 0:
            raise UnsupportedNodeError(f"{where}: weight shape {tuple(w.shape)} is not [out, in]")
        lo, hi = int(w.min()), int(w.max())
        if lo < WEIGHT_MIN or hi > WEIGHT_MAX:
            raise UnsupportedNodeError(
                f"{where}: weight mantissas span [{lo}, {hi}], beyond [{WEIGHT_MIN}, {WEIGHT_MAX}]"
            )
        if not 0 <= n.dv <= DV_MAX:
            raise UnsupportedNodeError(f"{where}: dv = {n.dv} is not a 12-bit decay (0 … 4095)")
        if not 0 <= n.vth <= VTH_MAX:
            raise UnsupportedNodeError(f"{where}: vth = {n.vth} is beyond 17 bits")
        if n.bias_mant is not None:
            b_lo, b_hi = int(n.bias_mant.min()), int(n.bias_mant.max())
            if b_lo < BIAS_MANT_MIN or b_hi > BIAS_MANT_MAX:
                raise UnsupportedNodeError(
                    f"{where}: bias mantissas span [{b_lo}, {b_hi}], beyond 13 bits signed"
                )
            if n.bias_exp < 0:
                raise UnsupportedNodeError(f"{where}: bias_exp = {n.bias_exp} is negative")
        seen.add(n.name)
    first = qnet.nodes[0]
    if first.inputs[0] != "input":
        raise UnsupportedNodeError(f"node {first.name!r}: the first node must read 'input'")


def export_dense_weights(node: SpikingLayer) -> dict:
    """Keyword arguments of Lava's ``Dense`` for ``node`` (exact ``Σ m·s``, see module doc)."""
    from lava.utils.weightutils import SignMode

    m = node.weight.detach().cpu().numpy().astype(np.int64)
    return {
        "weights": (m << EXPORT_SHIFT).astype(np.int32),
        "weight_exp": -EXPORT_SHIFT,
        "num_weight_bits": NUM_WEIGHT_BITS,
        "sign_mode": SignMode.MIXED,
    }


def lif_kwargs(node: SpikingLayer) -> dict:
    """Keyword arguments of Lava's ``LIF`` for ``node``."""
    n_out = int(node.weight.shape[0])
    if node.bias_mant is None:
        bias = np.zeros(n_out, dtype=np.int32)
    else:
        bias = node.bias_mant.detach().cpu().numpy().astype(np.int32).reshape(n_out)
    return {
        "shape": (n_out,),
        "du": DU_NONE,
        "dv": int(node.dv),
        "vth": int(node.vth),
        "bias_mant": bias,
        "bias_exp": np.full(n_out, int(node.bias_exp), dtype=np.int32),
    }


def build_builtin_dense_network(qnet: QNetwork):
    """Unconnected-input Lava processes for ``qnet``: ``(denses, lifs)``, in node order.

    Each node's ``Dense.a_out`` is connected to its ``LIF.a_in``, and every layer's
    ``Dense.s_in`` to its input layer's ``LIF.s_out``; the ``Dense.s_in`` of layers
    that read ``"input"`` are left for the caller to drive. Process names are
    ``dense_<node>`` and ``lif_<node>``.
    """
    check_builtin_supported(qnet)
    from lava_models.runtime import import_lava

    import_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF

    denses, lifs, by_name = [], [], {}
    for n in qnet.nodes:
        dense = Dense(name=f"dense_{n.name}", **export_dense_weights(n))
        lif = LIF(name=f"lif_{n.name}", **lif_kwargs(n))
        dense.a_out.connect(lif.a_in)
        if n.inputs[0] != "input":
            by_name[n.inputs[0]].s_out.connect(dense.s_in)
        by_name[n.name] = lif
        denses.append(dense)
        lifs.append(lif)
    return denses, lifs


def run_builtin(qnet: QNetwork, spikes_int) -> dict[str, dict[str, np.ndarray]]:
    """Run ``qnet`` in Lava (``fixed_pt``) on binary input spikes ``[T, in]``.

    Returns ``{node name: {"s": [T, n], "u": [T, n], "v": [T, n]}}`` (int64), the
    values at the end of every step. The runtime is always stopped.
    """
    check_builtin_supported(qnet)
    x = np.asarray(spikes_int)
    n_in = int(np.prod(qnet.input_shape))
    if x.ndim != 2 or x.shape[1] != n_in or x.shape[0] < 1:
        raise ValueError(f"run_builtin: spikes must be [T, {n_in}], got {list(x.shape)}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("run_builtin: input must be binary spikes (0/1); Dense reads s != 0")
    steps = int(x.shape[0])
    denses, lifs = build_builtin_dense_network(qnet)

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    src = RingBuffer(data=x.T.astype(np.int32))  # Lava's layout: [in, T]
    for n, dense in zip(qnet.nodes, denses, strict=True):
        if n.inputs[0] == "input":
            src.s_out.connect(dense.s_in)
    monitors = []
    for lif in lifs:
        mons = {}
        for key, target in (("s", lif.s_out), ("u", lif.u), ("v", lif.v)):
            mons[key] = Monitor()
            mons[key].probe(target, steps)
        monitors.append(mons)
    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        for n, lif, mons in zip(qnet.nodes, lifs, monitors, strict=True):
            rec = {}
            for key, mon in mons.items():
                var = "s_out" if key == "s" else key
                data = mon.get_data()[lif.name][var]
                rec[key] = np.asarray(data).reshape(steps, -1).astype(np.int64)
            out[n.name] = rec
    finally:
        src.stop()
    return out
