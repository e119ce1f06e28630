"""On-device learning with signals made on the device: error and feedback processes in Lava.

:func:`run_lava_online` exports a plastic :class:`~quantization.network.QNetwork`
(:func:`lava_models.exporter.export`), adds the error process (readout membrane vs a
one-hot teaching vector streamed from a ``RingBuffer``) and one feedback process per
hidden plastic layer (DFA, sign-DFA, or BP through the readout's transposed weights —
simulation only), runs it with the runner's deadline and clean-up machinery
(:class:`lava_models.session.LavaSession`), and returns the outputs, errors, signals and
learned weights. :func:`emulate_online` (from :mod:`quantization.signals`) is the same
thing in the integer emulator; both take their constants from one
:class:`~quantization.signals.SignalPlan` (B matrices drawn from a seed), so the two are
bit-exact (hw_tests/test_lava_signals.py).

No host computation happens between steps: the host only streams the input frames and
the labels; everything else runs in Lava processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lava_models.errors import LavaRunError
from lava_models.exporter import export, output_shapes
from lava_models.runner import as_lava_integers, record_dir, to_lava_time_layout
from lava_models.session import LavaSession
from quantization.signals import (
    OnlineResult,
    SignalPlan,
    emulate_online,
    label_schedule,
    make_signal_plan,
)
from stllr.errors import UserError


def _frames(frames, qnet) -> np.ndarray:
    """Integer frames ``[N, T, *input_shape]`` within the network's input format (int64)."""
    a = as_lava_integers(frames, "run_lava_online: frames")
    shape = tuple(qnet.input_shape)
    if a.ndim != len(shape) + 2 or tuple(a.shape[2:]) != shape:
        raise UserError(f"run_lava_online: frames must be [N, T, {shape}], got {list(a.shape)}")
    if a.shape[1] < 1:
        raise UserError("run_lava_online: no time steps")
    if a.size:
        qnet.input_format.check_range(a.min(), a.max(), "run_lava_online: frames")
    return a


def build_signal_processes(net, plan: SignalPlan, label_port, common: dict, first_index: int):
    """Create the error and feedback processes of ``plan`` and wire them into the exported
    ``net`` (a :class:`~lava_models.exporter.LavaNetwork`); ``label_port`` is the OutPort of
    the one-hot teaching vectors. Returns ``{"error": proc, <layer>: proc, ...}``; process
    ``j`` records under node index ``first_index + j``."""
    from lava_models.processes.signal_processes import (
        BPFeedbackProcess,
        DFAFeedbackProcess,
        ErrorProcess,
    )

    ro = net.nodes[plan.readout]
    fmt = plan.error
    err = ErrorProcess(num_classes=plan.num_classes, shift=fmt.shift, exp=fmt.exp,
                       clip=fmt.clip, node_index=first_index, name="error",
                       **common)  # fmt: skip
    ro.out_port.connect(err.o_in)
    label_port.connect(err.label_in)
    if plan.readout_learns:
        err.s_out.connect(ro.signal_port)  # a loop in the graph: the readout sends first
    procs = {"error": err}
    for j, p in enumerate(plan.projections, start=1):
        kw = dict(num_classes=plan.num_classes, out_shape=p.out_shape, shift=p.shift,
                  node_index=first_index + j, name=f"{p.kind}_{p.node}", **common)  # fmt: skip
        if p.transport:
            w0 = ro.process.weights.init
            fb = BPFeedbackProcess(weight=w0, **kw)
            fb.w_ref.connect_var(ro.process.weights)
        else:
            fb = DFAFeedbackProcess(matrix=p.matrix.numpy(), sign=p.sign, **kw)
        err.s_out.connect(fb.e_in)
        fb.s_out.connect(net.nodes[p.node].signal_port)
        procs[p.node] = fb
    return procs


def run_lava_online(
    qnet,
    frames,
    labels,
    source: str = "dfa",
    learn_window: int | None = None,
    *,
    plan: SignalPlan | None = None,
    seed: int = 0,
    target_logit: float | None = None,
    step_offset: int = 0,
    timeout_s: float = 120.0,
) -> OnlineResult:
    """Run ``qnet`` on integer ``frames`` ``[N, T, *input_shape]`` in Lava (``fixed_pt``),
    learning on device from its own error (labels ``[N]``).

    ``source``: ``"dfa"``, ``"sdfa"`` or ``"bp"`` (simulation only); ``plan`` overrides
    the constants (default :func:`~quantization.signals.make_signal_plan` with ``source``,
    ``seed``, ``target_logit``). The label reaches the error process at the last
    ``learn_window`` steps of each sample (``None``: every step); outside the window the
    error and every ``L`` are 0. Samples run back to back, their states reset between
    them, the weights learning throughout. ``step_offset`` keys the random bits as in
    :func:`lava_models.runner.run_lava`. Raises ``LavaRunError`` on a failed or timed-out
    run (no process is left behind).
    """
    plan = plan or make_signal_plan(qnet, source, seed=seed, target_logit=target_logit)
    output_shapes(qnet)  # validates every node before Lava starts
    x = _frames(frames, qnet)
    n_samples, per_sample = int(x.shape[0]), int(x.shape[1])
    y = label_schedule(labels, per_sample, qnet.num_classes, learn_window)
    if y.shape[0] != n_samples:
        raise ValueError(f"{y.shape[0]} labels for {n_samples} samples")
    steps = n_samples * per_sample
    x = x.reshape((steps, *qnet.input_shape))
    y = y.reshape(steps, qnet.num_classes)
    timing = {}
    t0 = time.monotonic()
    with record_dir("online") as rec_dir:
        common = dict(step_offset=int(step_offset), reset_interval=per_sample,
                      record_dir=rec_dir, record_steps=steps)  # fmt: skip
        net = export(qnet, **common)
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.source import RingBuffer

        src = RingBuffer(data=to_lava_time_layout(x))
        net.connect_input(src.s_out)
        lab = RingBuffer(data=to_lava_time_layout(y))
        procs = build_signal_processes(net, plan, lab.s_out, common, len(qnet.nodes))
        timing["build"] = time.monotonic() - t0
        with LavaSession(src, Loihi2SimCfg(select_tag="fixed_pt"), steps, timeout_s) as session:
            timing["run"] = session.run_s
            t1 = time.monotonic()
            records = _read(rec_dir, len(qnet.nodes) + len(procs))
            timing["read"] = time.monotonic() - t1
        timing["stop"] = session.stop_s
    return _result(qnet, plan, records, per_sample, timing)


def _read(record_dir: str, count: int) -> list[dict[str, np.ndarray]]:
    out = []
    for i in range(count):
        path = Path(record_dir) / f"{i}.npz"
        if not path.exists():
            raise LavaRunError(f"process {i} wrote no record ({path.name})")
        with np.load(path) as data:
            out.append({k: data[k] for k in data.files})
    return out


def _result(qnet, plan: SignalPlan, records, per_sample: int, timing) -> OnlineResult:
    nodes = len(qnet.nodes)
    outputs = {n.name: records[i]["out"] for i, n in enumerate(qnet.nodes)}
    state = {n.name: {k: v for k, v in records[i].items() if k != "out"}
             for i, n in enumerate(qnet.nodes)}  # fmt: skip
    weights = {}
    for n in qnet.nodes:
        if getattr(n, "learning", None) is not None:
            weights[n.name] = {"w": state[n.name]["weights"]}
            if getattr(n, "weight_rec", None) is not None:
                weights[n.name]["w_rec"] = state[n.name]["weight_rec"]
    errors = records[nodes]["out"]
    signals = {plan.readout: errors} if plan.readout_learns else {}
    for j, p in enumerate(plan.projections, start=1):
        signals[p.node] = records[nodes + j]["out"]
    logits = outputs[plan.readout]
    sums = logits.reshape(-1, per_sample, logits.shape[-1]).sum(axis=1)
    return OnlineResult(outputs, errors, signals, weights, sums.argmax(axis=1), plan, state,
                        timing)  # fmt: skip


__all__ = ["build_signal_processes", "emulate_online", "run_lava_online"]
