"""The parity table: every task model, every Lava path, each against its reference.

``python -m hw_tests.parity [--quick] [--out DIR]`` runs the checks below for every
task model (:data:`TASK_MODELS`: the SHD RSNN on ``shd-standin``, with CuLIF neurons on
``ntidigits-standin`` and with AdLIF neurons on ``shd-standin`` (task column
``shd-standin-adlif``), a narrow VGG-9 on each event-camera stand-in, a narrow ResNet-18
on ``gesture-standin``), writes
``parity.json`` and ``parity.md`` (one row per task × model × check × signal source:
metric value, bound, pass/fail, seconds) to ``--out`` (default ``runs/parity``), prints
the table and exits with status 1 if any row fails.

Check groups (one Lava run each; its rows share the run's seconds):

* ``float`` — Lava ``floating_pt`` vs the float64 torch model, online S-TLLR learning
  with a host-injected float third factor L ~ N(0, 1) on the plastic nodes: spikes
  identical at every step (``float_spikes``), max |Δ membrane ũ / logit| ≤ 1e-5
  (``float_membrane``), max |Δ W| after the run ≤ 1e-5 (``float_weights``). The torch
  reference is the task model with weight standardisation off and δ = L injected at each
  plastic output, an SGD step after every step (docs/decisions.md, float models).
* ``fixed`` — Lava ``fixed_pt`` vs ``IntegerEmulator(delay=0)`` stepped with batch 1,
  100 on-device learning steps (several samples, state reset between them) with 8-bit
  integer signals from each signal source (:func:`signal_sources`): ``host`` (computed
  off device and injected) and, from :mod:`lava_models.online`, ``dfa`` (quick: SHD
  only), ``sdfa`` and ``bp`` (full only; ``bp`` on SHD) made on device, whose errors and
  projected L are compared too: every node's output at every step (``fixed_outputs``),
  the final traces, Ψ and membranes (``fixed_states``) and the learned weights
  (``fixed_weights``), all bit-exact.
* ``predictions`` — the task's model (the best trained checkpoint for the task,
  architecture and neuron under ``runs/``, else the freshly initialised small model; the row says
  which), 8-bit PTQ, on the first 8 (``--quick``: 2) test samples of the stand-in,
  zero-padded to a common length as the toolkit's evaluation batches are. Lava
  ``fixed_pt`` vs the batched emulator (``IntegerEmulator.run``): every node's output at
  every step, final states and weights bit-exact (``fixed_inference``) and the predicted
  classes (argmax of the summed readout) equal (``predictions``).
* ``builtin`` — Lava's own ``Dense``/``Conv`` + ``LIF`` vs ``IntegerEmulator(delay=1)``
  on a hard-reset dense chain and a conv → dense chain: s, u, v of every layer at every
  step (``builtin_dense``, ``builtin_conv``).

A row also fails when its check is vacuous (no weight moved, no spike anywhere): its
detail says so. Every Lava run has a deadline (the runner's), so the table never hangs;
an exception inside a group turns its rows into failures that carry the message.

The small models are built from the task's ``experiments/*.toml`` (factors, Ψ, pooling)
with narrow widths and their standardised-weight gains multiplied (×2 VGG, ×3 ResNet)
so that every layer spikes on the stand-in frames; ``--quick`` crops image frames to
16×16 (centre) for them and shortens the prediction samples.

This module is the command (:func:`main`); the references shared with the parity tests
(torch float S-TLLR, the batch-1 emulator, the delay-1 emulator and the dense/conv chain
models) live in :mod:`hw_tests.parity_references`, the rows, task models, modes and
signal sources in :mod:`hw_tests.parity_setup`, the check groups and
:func:`build_table` in :mod:`hw_tests.parity_checks`, the markdown and files in
:mod:`hw_tests.parity_output`; their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hw_tests.parity_checks import build_table, expected_keys, find_checkpoint
from hw_tests.parity_output import (
    COLUMNS,
    format_number,
    markdown,
    parse_markdown,
    row_cells,
    versions,
    write_table,
)
from hw_tests.parity_references import (
    CONV_ARCHS,
    DENSE_ARCHS,
    LEARN_STEPS,
    LR,
    ROOT,
    STLLR_LAYERS,
    TOL,
    ConvChain,
    Recorder,
    Reference,
    conv_chain_qnet,
    convs_kwargs,
    dense_chain_qnet,
    effective_weight_model,
    emulate,
    emulate_delay1,
    hard_lif,
    integer_signals,
    run_builtin_with_deadline,
    torch_inference,
    torch_learning,
    weighted_modules,
)
from hw_tests.parity_setup import (
    BUILTIN_KEYS,
    FULL,
    GROUP_CHECKS,
    GROUPS,
    QUICK,
    TASK_MODELS,
    VGG_SMALL,
    FixedCase,
    FixedRun,
    Mode,
    Row,
    SignalSource,
    TaskCache,
    TaskModel,
    make_row,
    signal_sources,
    small_model,
    task_config,
    task_frames,
)

#: the names other code imports from here (moved into the modules above)
__all__ = [
    "BUILTIN_KEYS", "COLUMNS", "CONV_ARCHS", "ConvChain", "DENSE_ARCHS", "FULL", "FixedCase",
    "FixedRun", "GROUPS", "GROUP_CHECKS", "LEARN_STEPS", "LR", "Mode", "QUICK", "ROOT",
    "Recorder", "Reference", "Row", "STLLR_LAYERS", "SignalSource", "TASK_MODELS", "TOL",
    "TaskCache", "TaskModel", "VGG_SMALL", "build_table", "conv_chain_qnet", "convs_kwargs",
    "dense_chain_qnet", "effective_weight_model", "emulate", "emulate_delay1", "expected_keys",
    "find_checkpoint", "format_number", "hard_lif", "integer_signals", "main", "make_row",
    "markdown", "parse_markdown", "row_cells", "run_builtin_with_deadline", "signal_sources",
    "small_model", "task_config", "task_frames", "torch_inference", "torch_learning",
    "weighted_modules", "write_table",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hw_tests.parity",
        description="Lava vs torch / integer emulator parity table for every task model.",
    )
    p.add_argument("--quick", action="store_true", help="small inputs and few samples (CI)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "parity", help="output folder")
    p.add_argument("--runs", type=Path, default=ROOT / "runs",
                   help="where to look for trained checkpoints (best.pt)")  # fmt: skip
    p.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK[/ARCH]",
        help="only these task models, e.g. shd-standin gesture-standin/vgg9",
    )
    p.add_argument(
        "--corrupt",
        nargs="+",
        choices=GROUPS,
        default=[],
        help="self-test: move one weight of these groups' references (their rows must fail)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tms = list(TASK_MODELS)
    if args.tasks:
        tms = [tm for tm in tms if tm.task in args.tasks or f"{tm.task}/{tm.arch}" in args.tasks]
    t0 = time.monotonic()
    rows = build_table(args.quick, runs_dir=args.runs, exclude=args.out, groups=args.groups,
                       task_models=tms, corrupt=args.corrupt,
                       log=lambda s: print(s, flush=True))  # fmt: skip
    argv_str = " ".join(sys.argv[1:] if argv is None else argv)
    mode = "quick" if args.quick else "full"
    meta = {"mode": mode, "versions": versions(), "wall_s": round(time.monotonic() - t0, 1),
            "command": f"python -m hw_tests.parity {argv_str}".strip(),
            "signal_sources": [s.name for s in signal_sources(mode)],
            "groups": args.groups, "corrupt": args.corrupt}  # fmt: skip
    json_path, md_path = write_table(rows, args.out, meta)
    print()
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
