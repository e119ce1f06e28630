"""Run the full benchmark set, one subprocess each, and merge it into ``results.json``.

Each script runs under a wall-clock timeout (``--timeout-s``, default 600 s); the
memory/time sweep runs once per model so that each run stays within it. The
merged file maps each run's name to its JSON (or to ``{"error": ...}``) plus a
``summary`` of the targets.

Usage::

    python benchmarks/run_all.py --official /tmp/stllr_official   # → benchmarks/results.json
    python benchmarks/run_all.py --quick --out /tmp/results.json    # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runs(args) -> dict[str, list[str]]:
    official = ["--official", args.official] if args.official else []
    quick = ["--quick"] if args.quick else []
    budget = ["--budget-s", str(args.timeout_s - 45)] if not args.quick else []
    common = [*quick, *(["--threads", str(args.threads)] if args.threads > 0 else [])]
    vgg_main, vgg_extra = (["25", "100", "400"], ["50", "200"])
    if args.quick:
        vgg_main, vgg_extra = ["6", "12"], ["9"]
    return {
        "memory_time_vs_T_shd": ["memory_time_vs_T.py", "--models", "shd", *budget, *common],
        # VGG is slow on a CPU: the T the ratios need in one run, the other T in a second one.
        "memory_time_vs_T_vgg": [
            "memory_time_vs_T.py",
            "--models",
            "vgg",
            "--T",
            *vgg_main,
            *budget,
            *common,
        ],
        "memory_time_vs_T_vgg_extra": [
            "memory_time_vs_T.py",
            "--models",
            "vgg",
            "--T",
            *vgg_extra,
            *budget,
            *common,
        ],
        "fast_vs_persample": ["fast_vs_persample.py", *official, *common],
        "gflops": ["gflops.py", *common],
    }


def run(name: str, cmd: list[str], timeout_s: float) -> dict:
    start = time.perf_counter()
    print(f"[run_all] {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / cmd[0]), *cmd[1:]],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    elapsed = time.perf_counter() - start
    print(f"[run_all] {name}: rc={proc.returncode} in {elapsed:.0f} s", file=sys.stderr)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    return json.loads(proc.stdout)


def summarise(results: dict) -> dict:
    """The target checks of every run, flattened: ``{label: {value, target, met}}``."""
    out = {}
    for name, res in results.items():
        if "error" in res:
            out[name] = {"error": res["error"]}
            continue
        if res["benchmark"] == "memory_time_vs_T":
            if name.endswith("_extra"):
                continue  # extra T points only; the target ratios come from the main run
            for model, m in res["models"].items():
                for key, r in m["ratios"].items():
                    out[f"{model}.{key}"] = r
        elif res["benchmark"] == "fast_vs_persample":
            lin = res["linear_recurrent"]
            out["linear_recurrent.speedup"] = lin["speedup"]
            out["linear_recurrent.grads_equal_float64"] = lin["grad_check_float64"]["allclose"]
            out["linear_recurrent.grads_equal_float32"] = lin["grad_check_float32"]["allclose"]
            if "conv" in res:
                out["conv.speedup_vs_official"] = res["conv"]["timing"]["speedup_total_median"]
        elif res["benchmark"] == "gflops":
            out["sgemm_peak_gflops"] = res["peak"]["gflops"]
            for case, c in res["cases"].items():
                out[f"{case}.fraction_of_peak"] = c["fraction_of_peak"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", help="extracted official S-TLLR checkout (fast_vs_persample)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--timeout-s", type=float, default=600.0, help="per script")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every script (default 1: stable on a shared machine; 0 = torch's)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        help="run only these (names as in results.json 'runs'); merged into an existing --out",
    )
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    results = {}
    out = Path(args.out)
    if args.only and out.is_file():
        # Re-run some scripts only: keep the other runs' results of the existing file.
        results = json.loads(out.read_text(encoding="utf-8")).get("runs", {})
    for name, cmd in runs(args).items():
        if args.only and name not in args.only:
            continue
        results[name] = run(name, cmd, args.timeout_s)
    merged = {"summary": summarise(results), "runs": results}
    out.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(merged["summary"], indent=2))


if __name__ == "__main__":
    main()
