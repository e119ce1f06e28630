"""Run a :class:`~quantization.network.QNetwork` in Lava (``fixed_pt``), with on-device learning.

:func:`run_lava` exports the network (:mod:`lava_models.exporter`), feeds integer input
frames from a ``RingBuffer`` and, for plastic nodes, a host-computed third factor ``L``
per step from a second ``RingBuffer`` into the node's ``ls_in`` port. It returns every
node's output of every step and the final weights, traces and membranes of the
weighted nodes.

Reading results: every process records its outputs in memory and writes them, with its
final state, to one ``.npz`` file in a temporary folder at the last step (LAVA.md §6:
``Var.get()`` and ``Monitor`` read element by element, ~16 µs each). ``var_reads``
additionally reads named Vars with ``Var.get()``, the slow public path.

Several samples: ``frames`` ``[N, T, ...]`` runs the samples back to back in one runtime
and zeroes every state and trace at the start of each sample (the processes'
``reset_interval = T``); the weights keep learning across samples and the global step
keeps counting, exactly like ``IntegerEmulator.reset()`` between samples.

Never hangs: the run is started non-blocking and polled against a deadline
(``timeout_s``); a model that raises is reported with its traceback as soon as its OS
process ends. On any failure the Lava processes (and Lava's shared-memory manager,
all started by this run) are terminated by process handle; on success the runtime is
stopped normally. Either way it happens in ``finally``.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lava_models.exporter import export, output_shapes

if TYPE_CHECKING:
    from quantization.network import QNetwork

SIGNAL_MIN, SIGNAL_MAX = -128, 127  # the third factor is 8-bit signed (docs/fixed_point.md)


class LavaRunError(RuntimeError):
    """A Lava run failed (a model raised, or the deadline passed); the message says which."""


@dataclass
class LavaRunResult:
    """Integer results of :func:`run_lava` (int64 numpy, the toolkit's layout)."""

    outputs: dict[str, np.ndarray]  # node → [steps, *shape], its output at every step
    state: dict[str, dict[str, np.ndarray]]  # weighted node → final Vars (weights, v, p, …)
    steps: int
    timing: dict[str, float] = field(default_factory=dict)  # seconds: build, run, read, stop
    vars: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # from Var.get()

    def weights(self, name: str) -> dict[str, np.ndarray]:
        """``{"w": W}`` (and ``"w_rec"`` for recurrent layers), as the emulator names them."""
        st = self.state[name]
        out = {"w": st["weights"]}
        if "weight_rec" in st:
            out["w_rec"] = st["weight_rec"]
        return out


def to_lava_time_layout(x: np.ndarray) -> np.ndarray:
    """``[T, *shape]`` (the toolkit's time-first layout) → ``[*shape, T]`` (Lava's
    ``RingBuffer``: time last), as int32."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(x), 0, -1)).astype(np.int32)


def _as_steps(x, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, int | None]:
    """``[T, *shape]`` or ``[N, T, *shape]`` integers → ``([N·T, *shape], T or None)``."""
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.integer) or np.array_equal(a, np.round(a))):
        raise ValueError(f"{what}: values must be integers")
    a = a.astype(np.int64)
    if a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
        return a, None
    if a.ndim == len(shape) + 2 and tuple(a.shape[2:]) == shape:
        return a.reshape((-1, *shape)), int(a.shape[1])
    raise ValueError(f"{what}: expected [T, {shape}] or [N, T, {shape}], got {list(a.shape)}")


def run_lava(
    qnet: QNetwork,
    frames,
    signals: Mapping[str, np.ndarray] | None = None,
    *,
    step_offset: int = 0,
    timeout_s: float = 120.0,
    var_reads: Mapping[str, Sequence[str]] | None = None,
) -> LavaRunResult:
    """Run ``qnet`` on integer frames ``[T, *input_shape]`` or ``[N, T, *input_shape]``.

    ``signals``: plastic node name → integer L ``[T_total or N, T, *out_shape]`` in
    [−128, 127]; those nodes learn at every step (the others keep their weights but
    advance their traces). ``step_offset``: the emulator's ``step_count`` at the first
    step (keys the random bits). ``var_reads``: node → Var names to read with
    ``Var.get()`` after the run. Raises :class:`LavaRunError` on a failed or
    timed-out run.
    """
    signals = dict(signals or {})
    shapes = output_shapes(qnet)  # validates every node before Lava starts
    x, per_sample = _as_steps(frames, tuple(qnet.input_shape), "frames")
    steps = int(x.shape[0])
    if steps < 1:
        raise ValueError("run_lava: no time steps")
    lsig = {}
    for name, sig in signals.items():
        node = qnet.node(name)
        if getattr(node, "learning", None) is None:
            raise ValueError(f"node {name!r} has no LearningSpec: it is not plastic")
        arr, _ = _as_steps(sig, shapes[name], f"signal of {name!r}")
        if arr.shape[0] != steps:
            raise ValueError(f"signal of {name!r}: {arr.shape[0]} steps, the input has {steps}")
        if arr.min(initial=0) < SIGNAL_MIN or arr.max(initial=0) > SIGNAL_MAX:
            raise ValueError(f"signal of {name!r}: values beyond 8-bit signed [−128, 127]")
        lsig[name] = arr
    timing = {}
    t0 = time.monotonic()
    record_dir = tempfile.mkdtemp(prefix="stllr_lava_")
    try:
        net = export(qnet, step_offset=step_offset, reset_interval=per_sample or 0,
                     record_dir=record_dir, record_steps=steps)  # fmt: skip
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.source import RingBuffer

        src = RingBuffer(data=to_lava_time_layout(x))
        net.connect_input(src.s_out)
        for name, arr in lsig.items():
            RingBuffer(data=to_lava_time_layout(arr)).s_out.connect(net.nodes[name].signal_port)
        timing["build"] = time.monotonic() - t0
        with _Session(src, Loihi2SimCfg(select_tag="fixed_pt"), steps, timeout_s) as session:
            timing["run"] = session.run_s
            t1 = time.monotonic()
            outputs, state = _read_records(qnet, record_dir)
            got = {}
            for name, var_names in (var_reads or {}).items():
                proc = net.nodes[name].process
                got[name] = {v: _get(getattr(proc, v)) for v in var_names}
            timing["read"] = time.monotonic() - t1
        timing["stop"] = session.stop_s
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)
    return LavaRunResult(outputs, state, steps, timing, got)


def _get(var) -> np.ndarray:
    return np.asarray(var.get()).astype(np.int64)  # Var.get() returns float64 (exact < 2^53)


def _read_records(qnet, record_dir: str):
    outputs, state = {}, {}
    for i, n in enumerate(qnet.nodes):
        path = Path(record_dir) / f"{i}.npz"
        if not path.exists():
            raise LavaRunError(f"node {n.name!r}: its process wrote no record ({path.name})")
        with np.load(path) as data:
            outputs[n.name] = data["out"]
            extra = {k: data[k] for k in data.files if k != "out"}
        if getattr(n, "weight_rec", None) is None:  # placeholders of a feed-forward layer
            extra.pop("weight_rec", None)
            extra.pop("r", None)
        if extra:
            state[n.name] = extra
    return outputs, state


class _Session:
    """Compile, start (non-blocking), wait with a deadline, and always shut down."""

    def __init__(self, source, run_cfg, steps: int, timeout_s: float):
        self.source, self.run_cfg, self.steps, self.timeout_s = source, run_cfg, steps, timeout_s
        self.run_s = self.stop_s = 0.0
        self._failed = True

    def __enter__(self):
        from lava.magma.core.run_conditions import RunSteps

        t0 = time.monotonic()
        deadline = t0 + self.timeout_s
        try:
            self.source.run(condition=RunSteps(num_steps=self.steps, blocking=False),
                            run_cfg=self.run_cfg)  # fmt: skip
            self._wait(deadline)
        except BaseException:
            self._shutdown(graceful=False)
            raise
        self.run_s = time.monotonic() - t0
        self._failed = False
        return self

    def __exit__(self, exc_type, exc, tb):
        self._shutdown(graceful=exc_type is None and not self._failed)
        return False

    def _actors(self) -> list:
        rt = self.source.runtime
        infra = getattr(rt, "_messaging_infrastructure", None) if rt is not None else None
        return list(getattr(infra, "actors", []) or [])

    def _wait(self, deadline: float) -> None:
        rt = self.source.runtime
        ports = list(rt.service_to_runtime)
        while not all(p.probe() for p in ports):
            for actor in self._actors():
                err = actor.exception  # a model raised: its OS process has ended
                if err is not None:
                    raise LavaRunError(f"a Lava process failed:\n{err[1]}")
            if time.monotonic() > deadline:
                raise LavaRunError(
                    f"Lava run of {self.steps} steps did not finish within {self.timeout_s} s"
                )
            time.sleep(0.005)  # leave the (few) cores to the Lava processes
        try:
            rt.wait()  # the runtime service has answered: returns at once (or raises)
        except RuntimeError as err:
            tbs = [a.exception[1] for a in self._actors() if a.exception is not None]
            raise LavaRunError(f"{err}\n" + "\n".join(tbs)) from err

    def _shutdown(self, graceful: bool) -> None:
        t0 = time.monotonic()
        rt = self.source.runtime
        try:
            if rt is None:
                return
            if graceful:
                self.source.stop()
                return
            # A failed run: Lava's stop() could wait forever on a blocked process.
            for actor in self._actors():
                if _alive(actor):
                    actor.terminate()
            for actor in self._actors():
                if _alive(actor):
                    mp.Process.join(actor, 5.0)  # Lava's SystemProcess.join has no timeout
                if _alive(actor):
                    actor.kill()
            infra = getattr(rt, "_messaging_infrastructure", None)
            smm = getattr(infra, "smm", None)
            if smm is not None:
                smm.shutdown()
            if getattr(rt, "_watchdog_manager", None) is not None:
                rt._watchdog_manager.stop()
            rt._is_started = rt._is_running = False  # keep Runtime.__del__ from stop()
        finally:
            self.stop_s = time.monotonic() - t0


def _alive(actor) -> bool:
    try:
        return actor.is_alive()
    except ValueError:  # already joined and closed by Lava's own error handling
        return False


__all__ = ["LavaRunError", "LavaRunResult", "run_lava", "to_lava_time_layout"]
