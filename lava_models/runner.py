"""Run a network in Lava with on-device learning: a :class:`~quantization.network.QNetwork`
(``fixed_pt``) or the float network, a :class:`~lava_models.float_exporter.FloatNetwork`
(``floating_pt``).

:func:`run_lava` exports the network (:mod:`lava_models.exporter`), feeds the input
frames (integers, or floats for the float network) from a ``RingBuffer`` and, for
plastic nodes, a host-computed third factor ``L`` per step from a second
``RingBuffer`` into the node's ``ls_in`` port. It returns every node's output of every
step, the final weights, traces and membranes of the weighted nodes and, for the float
network, the membrane of every spiking layer at every step.

Reading results: every process records its outputs in memory and writes them, with its
final state, to one ``.npz`` file in a temporary folder at the last step (docs/lava.md §6:
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
stopped normally. Either way it happens in ``finally`` (:class:`lava_models.session.
LavaSession`, which every Lava run of the toolkit goes through).

Never leaves anything behind: while Lava runs, SIGTERM (which would end the process
at once) raises ``SystemExit(143)`` in the main thread instead, so the same clean-up
runs. A process that is killed outright (``kill -9``) cannot clean up: its Lava
processes die with it (:func:`lava_models.runtime.die_with_parent`), and its record
folder, ``stllr_lava_pid<pid>_*`` in the temporary directory, is removed by the next run
(:func:`remove_orphaned_record_dirs`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lava_models.errors import LavaRunError
from lava_models.exporter import export, output_shapes
from lava_models.float_exporter import FloatNetwork, export_float, float_output_shapes
from lava_models.session import LavaSession
from quantization.formats import SIGNAL_MAX, SIGNAL_MIN  # the 8-bit signed third factor
from stllr.errors import UserError

if TYPE_CHECKING:
    from quantization.network import QNetwork


@dataclass(frozen=True)
class _Numerics:
    """What differs between running a QNetwork and a FloatNetwork."""

    tag: str  # Loihi2SimCfg select_tag
    dtype: type  # of the RingBuffer data (frames, signals)
    integer: bool  # frames and signals must be integers


_FIXED = _Numerics("fixed_pt", np.int32, True)
_FLOAT = _Numerics("floating_pt", np.float64, False)


@dataclass
class LavaRunResult:
    """Results of :func:`run_lava` (int64 numpy, or float64 for a float network; the
    toolkit's layout)."""

    outputs: dict[str, np.ndarray]  # node → [steps, *shape], its output at every step
    state: dict[str, dict[str, np.ndarray]]  # weighted node → final Vars (weights, v, p, …)
    steps: int
    timing: dict[str, float] = field(default_factory=dict)  # seconds: build, run, read, stop
    vars: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # from Var.get()
    #: node → Var → [steps, *shape] recorded every step (float spiking layers: ``v``, ũ)
    per_step: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def weights(self, name: str) -> dict[str, np.ndarray]:
        """``{"w": W}`` (and ``"w_rec"`` for recurrent layers), as the emulator names them."""
        st = self.state[name]
        out = {"w": st["weights"]}
        if "weight_rec" in st:
            out["w_rec"] = st["weight_rec"]
        return out


def to_lava_time_layout(x: np.ndarray, dtype=np.int32) -> np.ndarray:
    """``[T, *shape]`` (the toolkit's time-first layout) → ``[*shape, T]`` (Lava's
    ``RingBuffer``: time last), as int32 (or ``dtype``). Integers that ``dtype`` cannot
    hold raise :class:`~stllr.errors.UserError` (a cast would wrap them)."""
    a = np.asarray(x)
    if np.issubdtype(np.dtype(dtype), np.integer):
        check_fits(a, dtype, "to_lava_time_layout")
    return np.ascontiguousarray(np.moveaxis(a, 0, -1)).astype(dtype)


def check_fits(a: np.ndarray, dtype, what: str) -> None:
    """Refuse values of ``a`` beyond the integer type ``dtype`` (Lava's ``RingBuffer``
    holds int32): casting would silently wrap them."""
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        bad = a.min() if a.min() < info.min else a.max()
        raise UserError(
            f"{what}: value {int(bad)} does not fit Lava's {np.dtype(dtype).name} "
            f"[{info.min}, {info.max}]"
        )


def as_lava_integers(x, what: str) -> np.ndarray:
    """``x`` as int64 after checking that it holds integers (int, bool or integral float
    dtype) that fit Lava's int32; :class:`~stllr.errors.UserError` otherwise."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise UserError(f"{what}: expected an array of integers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise UserError(f"{what}: values must be integers (NaN or fractional values found)")
    check_fits(a, np.int32, what)  # before the cast: a float beyond int64 would wrap
    return a.astype(np.int64)


def _as_steps(x, shape: tuple[int, ...], what: str,
              integer: bool = True) -> tuple[np.ndarray, int | None]:  # fmt: skip
    """``[T, *shape]`` or ``[N, T, *shape]`` → ``([N·T, *shape], T or None)``: int64
    integers within int32, or (``integer=False``) finite float64 values."""
    if integer:
        a = as_lava_integers(x, what)
    else:
        a = np.asarray(x).astype(np.float64)
        if not np.isfinite(a).all():
            raise UserError(f"{what}: values must be finite")
    if a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
        return a, None
    if a.ndim == len(shape) + 2 and tuple(a.shape[2:]) == shape:
        return a.reshape((-1, *shape)), int(a.shape[1])
    raise UserError(f"{what}: expected [T, {shape}] or [N, T, {shape}], got {list(a.shape)}")


def run_lava(
    network: QNetwork | FloatNetwork,
    frames,
    signals: Mapping[str, np.ndarray] | None = None,
    *,
    step_offset: int = 0,
    timeout_s: float = 120.0,
    var_reads: Mapping[str, Sequence[str]] | None = None,
) -> LavaRunResult:
    """Run ``network`` on frames ``[T, *input_shape]`` or ``[N, T, *input_shape]``.

    A :class:`~quantization.network.QNetwork` runs its ``fixed_pt`` models on integer
    frames; a :class:`~lava_models.float_exporter.FloatNetwork` (:func:`~lava_models.float_exporter.
    float_network`) runs the ``floating_pt`` models on float frames.
    ``signals``: plastic node name → L ``[T_total or N, T, *out_shape]`` (integers in
    [−128, 127] for a QNetwork, finite floats for a FloatNetwork); those nodes learn at
    every step (the others keep their weights; the fixed ones advance their traces).
    ``step_offset``: the emulator's ``step_count`` at the first step (keys the random
    bits; QNetwork only). ``var_reads``: node → Var names to read with ``Var.get()`` after
    the run. Raises :class:`LavaRunError` on a failed or timed-out run.
    """
    floating = isinstance(network, FloatNetwork)
    num = _FLOAT if floating else _FIXED
    signals = dict(signals or {})
    # validates every node before Lava starts
    shapes = float_output_shapes(network) if floating else output_shapes(network)
    if floating and step_offset:
        raise UserError("run_lava: step_offset keys random bits; a FloatNetwork has none")
    x, per_sample = _as_steps(frames, tuple(network.input_shape), "run_lava: frames",
                              num.integer)  # fmt: skip
    if not floating and x.size:
        network.input_format.check_range(x.min(), x.max(), "run_lava: frames")
    steps = int(x.shape[0])
    if steps < 1:
        raise UserError("run_lava: no time steps")
    lsig = {}
    for name, sig in signals.items():
        node = network.node(name)
        plastic = name in network.plastic if floating else getattr(node, "learning", None)
        if not plastic:
            raise UserError(f"node {name!r} is not plastic (no LearningSpec / not in plastic)")
        arr, _ = _as_steps(sig, shapes[name], f"signal of {name!r}", num.integer)
        if arr.shape[0] != steps:
            raise UserError(f"signal of {name!r}: {arr.shape[0]} steps, the input has {steps}")
        if num.integer and (arr.min(initial=0) < SIGNAL_MIN or arr.max(initial=0) > SIGNAL_MAX):
            raise UserError(f"signal of {name!r}: values beyond 8-bit signed [−128, 127]")
        lsig[name] = arr
    timing = {}
    t0 = time.monotonic()
    with record_dir("lava") as rec_dir:
        kw = dict(reset_interval=per_sample or 0, record_dir=rec_dir, record_steps=steps)
        if floating:
            net = export_float(network, **kw)
        else:
            net = export(network, step_offset=step_offset, **kw)
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.source import RingBuffer

        src = RingBuffer(data=to_lava_time_layout(x, num.dtype))
        net.connect_input(src.s_out)
        for name, arr in lsig.items():
            buf = RingBuffer(data=to_lava_time_layout(arr, num.dtype))
            buf.s_out.connect(net.nodes[name].signal_port)
        timing["build"] = time.monotonic() - t0
        with LavaSession(src, Loihi2SimCfg(select_tag=num.tag), steps, timeout_s) as session:
            timing["run"] = session.run_s
            t1 = time.monotonic()
            outputs, state, per_step = _read_records(network, rec_dir)
            got = {}
            for name, var_names in (var_reads or {}).items():
                proc = net.nodes[name].process
                got[name] = {v: _get(getattr(proc, v), num.integer) for v in var_names}
            timing["read"] = time.monotonic() - t1
        timing["stop"] = session.stop_s
    return LavaRunResult(outputs, state, steps, timing, got, per_step)


_RECORD_DIR = re.compile(r"stllr_[a-z]+_pid(\d+)_")  # stllr_<kind>_pid<owner pid>_<random>


@contextmanager
def record_dir(kind: str) -> Iterator[str]:
    """A new temporary folder ``stllr_<kind>_pid<pid>_*`` for one run's records, removed when
    the block ends; the folders that killed runs left behind are removed first."""
    remove_orphaned_record_dirs()
    path = tempfile.mkdtemp(prefix=f"stllr_{kind}_pid{os.getpid()}_")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphaned_record_dirs(root: str | Path | None = None) -> list[Path]:
    """Remove the record folders (see :func:`record_dir`) in ``root`` (default: the
    temporary directory) whose owner process no longer exists; returns them."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob("stllr_*_*_*"):
        match = _RECORD_DIR.match(path.name)
        if match and path.is_dir() and not _process_exists(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _get(var, integer: bool = True) -> np.ndarray:
    value = np.asarray(var.get())  # Var.get() returns float64 (integers exact below 2^53)
    return value.astype(np.int64) if integer else value


def _read_records(network, record_dir: str):
    outputs, state, per_step = {}, {}, {}
    for i, n in enumerate(network.nodes):
        path = Path(record_dir) / f"{i}.npz"
        if not path.exists():
            raise LavaRunError(f"node {n.name!r}: its process wrote no record ({path.name})")
        with np.load(path) as data:
            outputs[n.name] = data["out"]
            extra = {k: data[k] for k in data.files if k != "out"}
        if getattr(n, "weight_rec", None) is None:  # placeholders of a feed-forward layer
            extra.pop("weight_rec", None)
            extra.pop("r", None)
        steps = {k[len("step_") :]: extra.pop(k) for k in list(extra) if k.startswith("step_")}
        if steps:
            per_step[n.name] = steps
        if extra:
            state[n.name] = extra
    return outputs, state, per_step


__all__ = [
    "LavaRunError",
    "LavaRunResult",
    "record_dir",
    "remove_orphaned_record_dirs",
    "as_lava_integers",
    "check_fits",
    "run_lava",
    "to_lava_time_layout",
]
