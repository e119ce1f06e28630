"""Training memory and wall time per batch vs sequence length T, S-TLLR against BPTT.

Measured, for each model and each T (S-TLLR with a learning-signal window of
``--window`` last steps, and BPTT through all T steps):

* ``peak_saved_bytes``: peak bytes autograd holds for backward during one
  ``stllr.training.train_batch`` call (:class:`stllr.memory.SavedTensorTracker`;
  on CUDA also ``torch.cuda.max_memory_allocated`` as ``cuda_peak_bytes``);
* ``time``: wall-clock seconds of one ``train_batch`` call (forward over T steps,
  backward, one SGD step), median of untracked repeats after a warm-up. When one
  call is too long to repeat within ``--point-cap-s`` the time of the (single)
  tracked call is reported instead, flagged ``timing_source: "tracked_run"``.

Models: the SHD RSNN (700→450 recurrent→20, batch 128) and VGG-9 at 2×32×32
(batch 16, full channel widths), inputs are Bernoulli spikes of rate
``--rate``. A point whose projected cost exceeds the time budget (``--budget-s``)
or whose projected memory exceeds ``--mem-budget-gib`` is not run; it is
reported as ``{"skipped": "<reason with the projected size>"}``. Projections
extrapolate linearly from the points measured earlier in the same run.

Ratios (each from measurements in this run, side by side, timing repeats of the
two modes interleaved): S-TLLR peak-memory growth T_min→T_max, BPTT/S-TLLR
memory at T=100, S-TLLR/BPTT time at T=100. The paper's analytic model
(Mem_BPTT = T·ΣN(l), Mem_S-TLLR = 2·ΣN(l), in neuron states per sample) is
reported beside them, and a dense-FLOP model of one call (``flop_model``; its
S-TLLR/BPTT ratio is the time ratio an implementation equally efficient per FLOP
in both modes would reach).

Usage::

    python benchmarks/memory_time_vs_T.py --models shd --out shd.json
    python benchmarks/memory_time_vs_T.py --models vgg --budget-s 560
    python benchmarks/memory_time_vs_T.py --quick       # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import torch
from _common import (
    GIB,
    MIB,
    emit,
    environment,
    load_average,
    mem_available_bytes,
    pick_device,
    set_threads,
    summary,
    sync,
    target,
    timed,
)

from stllr.memory import SavedTensorTracker, _Held
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.models.vgg import VGG9_CHANNELS, VGGBPTT, VGGSTLLR
from stllr.training import train_batch

MODES = ("stllr", "bptt")
FULL_T = (25, 50, 100, 200, 400)
QUICK_T = (6, 12)
T_REF = 100  # the T at which the memory and time ratios are taken


def log(msg: str) -> None:
    print(f"[memory_time_vs_T] {msg}", file=sys.stderr, flush=True)


class _Entry:
    """A saved tensor: counted by the project's tracker and by distinct storage."""

    __slots__ = ("held", "tracker", "key")

    def __init__(self, tensor: torch.Tensor, tracker: DistinctStorageTracker):
        self.held = _Held(tensor, tracker)  # SavedTensorTracker's own accounting (peak)
        self.tracker = tracker
        self.key = tracker.acquire(tensor)

    def __del__(self):
        self.tracker.release(self.key)


class DistinctStorageTracker(SavedTensorTracker):
    """:class:`SavedTensorTracker` (``peak``, unchanged) plus ``distinct_peak``.

    ``peak`` counts the bytes of every tensor autograd saves, once per save (a
    tensor saved by two nodes counts twice, a saved parameter counts too).
    ``distinct_peak`` counts each underlying storage once while any saved
    reference to it is alive, and ignores the storages of ``existing`` (model
    parameters and buffers, the input batch: they exist whether or not autograd
    saves them, and a saved ``x[t]`` is a view of the whole ``[T, B, ...]`` input):
    an estimate of the extra memory that backward actually keeps alive.
    """

    def __init__(self, existing):
        super().__init__()
        self.exclude = {t.untyped_storage().data_ptr() for t in existing}
        self.refs: dict[int, list[int]] = {}
        self.distinct_current = 0
        self.distinct_peak = 0

    def __enter__(self) -> DistinctStorageTracker:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(
            lambda t: _Entry(t, self), lambda entry: entry.held.tensor
        )
        self._hooks.__enter__()
        return self

    def acquire(self, tensor: torch.Tensor) -> int | None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return None
        ptr = storage.data_ptr()
        if ptr in self.exclude:
            return None
        ref = self.refs.get(ptr)
        if ref is None:
            self.refs[ptr] = [1, storage.nbytes()]
            self.distinct_current += storage.nbytes()
            self.distinct_peak = max(self.distinct_peak, self.distinct_current)
        else:
            ref[0] += 1
        return ptr

    def release(self, key: int | None) -> None:
        if key is None:
            return
        ref = self.refs[key]
        ref[0] -= 1
        if ref[0] == 0:
            del self.refs[key]
            self.distinct_current -= ref[1]


@dataclass
class ModelCase:
    """One benchmarked network and its input."""

    name: str
    batch: int
    input_shape: tuple[int, ...]
    num_classes: int
    kwargs: dict = field(default_factory=dict)
    description: str = ""

    def build(self, mode: str) -> torch.nn.Module:
        if self.name == "shd":
            cls = SHDNetSTLLR if mode == "stllr" else SHDNetBPTT
            return cls(num_inputs=self.input_shape[0], num_classes=self.num_classes, **self.kwargs)
        cls = VGGSTLLR if mode == "stllr" else VGGBPTT
        return cls(input_shape=self.input_shape, num_classes=self.num_classes, **self.kwargs)

    def neurons_per_layer(self) -> list[int]:
        """N(l) per sample for every spiking/readout layer (paper's ΣN(l))."""
        if self.name == "shd":
            return [self.kwargs["hidden"], self.num_classes]
        channels = self.kwargs.get("channels", VGG9_CHANNELS)
        pool_after = (1, 3, 5)
        _, h, w = self.input_shape
        counts = []
        for i, c in enumerate(channels):
            counts.append(c * h * w)
            if i in pool_after:
                h, w = h // 2, w // 2
        return [*counts, self.num_classes]

    def matrices(self) -> list[tuple[int, int, int]]:
        """Per weight matrix: (forward FLOPs per step, backward FLOPs per step for BPTT,
        for an S-TLLR window step), dense-equivalent, 2 FLOPs per multiply-add.

        Backward = weight grad (S-TLLR spiking layers: two terms, 2×) + input grad where
        the input needs one (not for the data input, not into s[t−1] for S-TLLR).
        """
        b, k = self.batch, self.num_classes
        if self.name == "shd":
            n_in, h = self.input_shape[0], self.kwargs["hidden"]
            f_in, f_rec, f_out = 2 * b * n_in * h, 2 * b * h * h, 2 * b * h * k
            return [
                (f_in, f_in, 2 * f_in),  # W: no input grad (x is data)
                (f_rec, 2 * f_rec, 2 * f_rec),  # W_rec: BPTT also sends δ into s[t−1]
                (f_out, 2 * f_out, 2 * f_out),  # readout: weight + input grad
            ]
        channels = self.kwargs.get("channels", VGG9_CHANNELS)
        c_in, h, w = self.input_shape
        out = []
        for i, c in enumerate(channels):
            f = 2 * b * h * w * c * c_in * 9
            igrad = 0 if i == 0 else f
            out.append((f, f + igrad, 2 * f + igrad))
            if i in (1, 3, 5):
                h, w = h // 2, w // 2
            c_in = c
        f_head = 2 * b * c_in * k
        return [*out, (f_head, 2 * f_head, 2 * f_head)]

    def flops(self, mode: str, steps: int, window: int) -> int:
        """Dense-equivalent matrix FLOPs of one ``train_batch`` call."""
        mats = self.matrices()
        fwd = steps * sum(m[0] for m in mats)
        if mode == "bptt":
            return fwd + steps * sum(m[1] for m in mats)
        return fwd + min(steps, window) * sum(m[2] for m in mats)


def cases(quick: bool) -> dict[str, ModelCase]:
    if quick:
        return {
            "shd": ModelCase("shd", 8, (64,), 20, {"hidden": 32}, "quick: 64→32 rec→20"),
            "vgg": ModelCase(
                "vgg",
                2,
                (2, 16, 16),
                11,
                {"channels": (4, 8, 8, 8, 16, 16, 16, 16)},
                "quick: narrow VGG-9 at 2×16×16",
            ),
        }
    return {
        "shd": ModelCase("shd", 128, (700,), 20, {"hidden": 450}, "SHD RSNN 700→450 rec→20"),
        "vgg": ModelCase("vgg", 16, (2, 32, 32), 11, {}, "VGG-9 (64…512 channels) at 2×32×32"),
    }


class Runner:
    """Runs ``train_batch`` for one model case, both modes, with budgets."""

    def __init__(self, case: ModelCase, args, device: torch.device, deadline: float):
        self.case = case
        self.args = args
        self.device = device
        self.deadline = deadline
        torch.manual_seed(args.seed)
        self.models = {m: case.build(m).to(device) for m in MODES}
        self.opts = {m: torch.optim.SGD(self.models[m].parameters(), lr=1e-4) for m in MODES}
        # Cost model, refined after every measured call:
        #   S-TLLR: time(T) = a·max(T − w, 0) + b·min(T, w)  (no-graph steps, window steps)
        #   BPTT:   time(T) = c·T,   saved bytes(T) = k·T
        self.a = self.b = self.c = None
        self.k = None
        self.stllr_peak = None

    def batch(self, steps: int):
        g = torch.Generator().manual_seed(self.args.seed + steps)
        shape = (steps, self.case.batch, *self.case.input_shape)
        x = (torch.rand(shape, generator=g) < self.args.rate).float().to(self.device)
        y = torch.randint(0, self.case.num_classes, (self.case.batch,), generator=g)
        return x, y.to(self.device)

    def call(self, mode: str, x, y) -> None:
        train_batch(self.models[mode], x, y, self.opts[mode], mode=mode, window=self.args.window)

    def tracked(self, mode: str, x, y) -> dict:
        """One call under the saved-tensor tracker: peak bytes and its wall time."""
        cuda = self.device.type == "cuda"
        if cuda:
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        model = self.models[mode]
        existing = [*model.parameters(), *model.buffers(), x, y]
        with DistinctStorageTracker(existing) as tracker:
            seconds, cpu = timed(lambda: self.call(mode, x, y), self.device, cpu=True)
        rec = {
            "peak_saved_bytes": tracker.peak,
            "peak_saved_mib": round(tracker.peak / MIB, 3),
            "peak_saved_distinct_nonparam_bytes": tracker.distinct_peak,
            "tracked_run_s": seconds,
            "tracked_run_cpu_s": cpu,
        }
        if cuda:
            rec["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
            rec["cuda_peak_above_start_bytes"] = rec["cuda_peak_bytes"] - int(base)
        return rec

    # -- projections -----------------------------------------------------------------
    def projected_time(self, mode: str, steps: int) -> float:
        w = self.args.window
        if mode == "stllr":
            return self.a * max(steps - w, 0) + self.b * min(steps, w)
        return self.c * steps

    def projected_bytes(self, mode: str, steps: int) -> float:
        return self.stllr_peak if mode == "stllr" else self.k * steps

    def update(self, mode: str, steps: int, seconds: float, peak: int) -> None:
        w = self.args.window
        if mode == "bptt":
            self.c = seconds / steps
            self.k = peak / steps
            return
        self.stllr_peak = max(self.stllr_peak or 0, peak)
        if steps <= w:
            self.b = seconds / steps
        elif self.b is not None:
            self.a = max((seconds - self.b * w) / (steps - w), 1e-9)

    # -- warm-up ---------------------------------------------------------------------
    def warm_up(self) -> dict:
        """First calls (allocator, kernel caches) that also seed the cost model."""
        record = {}
        plan = [("stllr", self.args.window), ("bptt", self.args.bptt_warmup_T)]
        for mode, steps in plan:
            x, y = self.batch(2)
            self.call(mode, x, y)  # the very first call pays one-off costs
            x, y = self.batch(steps)
            rec = self.tracked(mode, x, y)
            self.update(mode, steps, rec["tracked_run_s"], rec["peak_saved_bytes"])
            record[f"{mode}_T{steps}"] = rec
        self.a = self.b  # no-graph step cost: refined by the first point with T > window
        return record

    # -- one T -----------------------------------------------------------------------
    def point(self, steps: int) -> dict[str, dict]:
        args = self.args
        results: dict[str, dict] = {}
        plans: dict[str, int] = {}
        x = y = None
        for mode in MODES:
            rec = {"T": steps, "mode": mode}
            proj_bytes = self.projected_bytes(mode, steps)
            proj_s = self.projected_time(mode, steps)
            n_timed = min(args.repeats, max(int(args.point_cap_s // max(proj_s, 1e-9)) - 1, 0))
            left = self.deadline - time.perf_counter()
            if proj_bytes > args.mem_budget_bytes:
                rec["skipped"] = (
                    f"projected saved-tensor memory {proj_bytes / GIB:.2f} GiB "
                    f"(linear in T from the measured {self.k / MIB:.1f} MiB/step) exceeds the "
                    f"memory budget {args.mem_budget_bytes / GIB:.2f} GiB"
                )
            elif proj_s > left:
                rec["skipped"] = (
                    f"projected {proj_s:.0f} s for one train_batch call "
                    f"(extrapolated from earlier calls) exceeds the {max(left, 0):.0f} s left "
                    f"of the {args.budget_s:.0f} s time budget"
                )
            else:
                if x is None:
                    x, y = self.batch(steps)
                rec.update(self.tracked(mode, x, y))
                self.update(mode, steps, rec["tracked_run_s"], rec["peak_saved_bytes"])
                plans[mode] = n_timed
            results[mode] = rec
        # Timing repeats, interleaved between the modes so both see the same machine load.
        samples: dict[str, list[float]] = {m: [] for m in plans}
        cpu_samples: dict[str, list[float]] = {m: [] for m in plans}
        for i in range(max(plans.values(), default=0)):
            for mode, n_timed in plans.items():
                if i >= n_timed:
                    continue
                if time.perf_counter() + self.projected_time(mode, steps) > self.deadline:
                    continue
                wall, cpu = timed(lambda m=mode: self.call(m, x, y), self.device, cpu=True)
                samples[mode].append(wall)
                cpu_samples[mode].append(cpu)
        for mode in plans:
            rec = results[mode]
            if samples[mode]:
                rec["time"] = summary(samples[mode])
                rec["cpu_time"] = summary(cpu_samples[mode])
                rec["timing_source"] = "untracked_runs"
            else:
                rec["time"] = summary([rec["tracked_run_s"]])
                rec["cpu_time"] = summary([rec["tracked_run_cpu_s"]])
                rec["timing_source"] = "tracked_run"
            rec["time_per_timestep_ms"] = 1e3 * rec["time"]["median_s"] / steps
            log(
                f"{self.case.name} T={steps} {mode}: peak {rec['peak_saved_mib']:.1f} MiB, "
                f"{rec['time']['median_s']:.3f} s (n={rec['time']['n']})"
            )
        for mode, rec in results.items():
            if "skipped" in rec:
                log(f"{self.case.name} T={steps} {mode}: skipped ({rec['skipped']})")
        return results


def schedule(ts: list[int]) -> list[int]:
    """Measurement order: the T the ratios need first, then the rest ascending."""
    first = [min(ts), max(ts)] + ([T_REF] if T_REF in ts else [])
    order = []
    for t in first + sorted(ts):
        if t not in order:
            order.append(t)
    return order


def ratios(points: dict[int, dict[str, dict]], ts: list[int], full: bool) -> dict:
    keys = {
        "mem": lambda r: r["peak_saved_bytes"],
        "distinct": lambda r: r["peak_saved_distinct_nonparam_bytes"],
        "time": lambda r: r["time"]["median_s"],
        "cpu": lambda r: r["cpu_time"]["median_s"],
    }

    def value(steps, mode, key):
        rec = points.get(steps, {}).get(mode, {})
        if "skipped" in rec or not rec:
            return None
        return keys[key](rec)

    def ratio(a, b):
        return a / b if a and b else None

    t_lo, t_hi = min(ts), max(ts)
    t_ref = T_REF if T_REF in ts else t_hi
    lo, hi = value(t_lo, "stllr", "mem"), value(t_hi, "stllr", "mem")
    growth = (hi - lo) / lo if lo and hi is not None else None
    m_b, m_s = value(t_ref, "bptt", "mem"), value(t_ref, "stllr", "mem")
    t_b, t_s = value(t_ref, "bptt", "time"), value(t_ref, "stllr", "time")
    standard = full and t_lo == 25 and t_hi == 400 and t_ref == T_REF
    out = {
        "stllr_peak_memory_growth": {
            "from_T": t_lo,
            "to_T": t_hi,
            **target(growth, "<=", 0.05, standard),
        },
        "bptt_over_stllr_memory": {
            "T": t_ref,
            **target(ratio(m_b, m_s), ">=", 20.0, standard),
        },
        "stllr_over_bptt_time": {
            "T": t_ref,
            **target(ratio(t_s, t_b), "<=", 0.5, standard),
        },
    }
    if not standard:
        for r in out.values():
            r["note"] = "targets are defined for the full run (T 25…400, ratios at T=100)"
    d_lo, d_hi = value(t_lo, "stllr", "distinct"), value(t_hi, "stllr", "distinct")
    out["secondary"] = {
        "note": (
            "same runs, other measures: distinct non-parameter storages saved for backward "
            "(DistinctStorageTracker) and process CPU time instead of wall time"
        ),
        "stllr_distinct_memory_growth": (d_hi - d_lo) / d_lo if d_lo and d_hi is not None else None,
        "bptt_over_stllr_distinct_memory": ratio(
            value(t_ref, "bptt", "distinct"), value(t_ref, "stllr", "distinct")
        ),
        "stllr_over_bptt_cpu_time": ratio(
            value(t_ref, "stllr", "cpu"), value(t_ref, "bptt", "cpu")
        ),
    }
    return out


def analytic(case: ModelCase, ts: list[int]) -> dict:
    counts = case.neurons_per_layer()
    total = sum(counts)
    return {
        "model": "Mem_BPTT = T·ΣN(l), Mem_S-TLLR = 2·ΣN(l) (neuron states per sample)",
        "neurons_per_layer": counts,
        "sum_N": total,
        "points": [
            {
                "T": t,
                "mem_bptt_states": t * total,
                "mem_stllr_states": 2 * total,
                "mem_bptt_bytes_fp32_batch": 4 * case.batch * t * total,
                "mem_stllr_bytes_fp32_batch": 4 * case.batch * 2 * total,
                "bptt_over_stllr": t / 2,
            }
            for t in ts
        ],
    }


def flop_model(case: ModelCase, ts: list[int], window: int) -> dict:
    rows = []
    for t in ts:
        s, b = case.flops("stllr", t, window), case.flops("bptt", t, window)
        rows.append({"T": t, "stllr_flops": s, "bptt_flops": b, "stllr_over_bptt": s / b})
    return {
        "model": (
            "dense-equivalent matrix FLOPs per train_batch call: T forward steps for both; "
            "BPTT backward at all T steps (weight grad + input grad where needed); S-TLLR "
            "backward at the last `window` steps only (two-term weight grad + input grad, "
            "none into s[t-1] or the data input). Elementwise work not counted."
        ),
        "points": rows,
    }


def run_case(case: ModelCase, args, device, deadline: float) -> dict:
    start = time.perf_counter()
    runner = Runner(case, args, device, deadline)
    warm = runner.warm_up()
    points: dict[int, dict[str, dict]] = {}
    for steps in schedule(args.T):
        points[steps] = runner.point(steps)
    rows = [points[t][m] for t in sorted(points) for m in MODES]
    ratio = ratios(points, args.T, not args.quick)
    t_ref = ratio["stllr_over_bptt_time"]["T"]
    ratio["stllr_over_bptt_time"]["dense_flop_ratio"] = case.flops(
        "stllr", t_ref, args.window
    ) / case.flops("bptt", t_ref, args.window)
    return {
        "description": case.description,
        "batch": case.batch,
        "input_shape": list(case.input_shape),
        "input_spike_rate": args.rate,
        "window": args.window,
        "warm_up": warm,
        "points": rows,
        "ratios": ratio,
        "analytic": analytic(case, args.T),
        "flop_model": flop_model(case, args.T, args.window),
        "elapsed_s": time.perf_counter() - start,
        "load_average_at_end": load_average(),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--models", default="shd,vgg", help="comma list of shd,vgg")
    p.add_argument("--T", type=int, nargs="+", help="sequence lengths (default 25…400)")
    p.add_argument("--window", type=int, help="S-TLLR learning-signal window (default 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per point (median)")
    p.add_argument("--rate", type=float, default=0.05, help="input spike probability")
    p.add_argument("--budget-s", type=float, help="time budget for the whole script, s")
    p.add_argument("--point-cap-s", type=float, default=40.0, help="time per point for repeats")
    p.add_argument("--mem-budget-gib", type=float, help="max projected saved bytes per call")
    p.add_argument("--bptt-warmup-T", type=int, default=4, help="T of the BPTT warm-up call")
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; quick: 1)")
    args = p.parse_args(argv)
    set_threads(args.threads, args.quick)
    if args.quick:
        args.T = args.T or list(QUICK_T)
        args.window = args.window or 4
        args.repeats = min(args.repeats, 2)
        args.bptt_warmup_T = min(args.bptt_warmup_T, 2)
        args.budget_s = args.budget_s or 15.0
    args.T = sorted(set(args.T or FULL_T))
    args.window = args.window or 10
    args.budget_s = args.budget_s or 560.0
    if args.mem_budget_gib is None:
        avail = mem_available_bytes() or 8 * GIB
        args.mem_budget_bytes = min(12 * GIB, 0.5 * avail)
    else:
        args.mem_budget_bytes = args.mem_budget_gib * GIB
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    start = time.perf_counter()
    deadline = start + args.budget_s
    all_cases = cases(args.quick)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    result = {
        "benchmark": "memory_time_vs_T",
        "quick": args.quick,
        "env": environment(device),
        "config": {
            "T": args.T,
            "window": args.window,
            "repeats": args.repeats,
            "budget_s": args.budget_s,
            "point_cap_s": args.point_cap_s,
            "mem_budget_bytes": int(args.mem_budget_bytes),
            "optimizer": "SGD lr=1e-4",
            "memory_measure": "stllr.memory.SavedTensorTracker peak (bytes held for backward)",
            "time_measure": "wall s of one stllr.training.train_batch call",
        },
        "models": {},
    }
    for i, name in enumerate(names):
        # Share what is left of the budget evenly between the models still to run.
        left = deadline - time.perf_counter()
        case_deadline = time.perf_counter() + left / (len(names) - i)
        result["models"][name] = run_case(all_cases[name], args, device, case_deadline)
    result["elapsed_s"] = time.perf_counter() - start
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
