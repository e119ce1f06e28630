"""What a shifted condition costs a deployed network before any learning: the paired change
from the original to the shifted condition on the same evaluation samples (emulator).

For each candidate scenario (``--scenarios``: ``;``-separated lists of ``adaptation.*``
settings, e.g. ``scenario=noisy_sensor,event_loss=0.9;scenario=gain_change,gain=0.3``)
and each seed (``adaptation.seed``: the shift's noise), the scenario's evaluation samples
(:mod:`pipeline.shift`, all of them) are scored unshifted and shifted by the deployed
integer network of ``--runs DIR/<task>`` (made when missing, as in ``adaptation.py``), and
``change`` is the paired change clean → shifted (:mod:`pipeline.adapt_stats`; its
negative is what the shift costs). Frame shifts only: their ``clean`` set is the
evaluation set unshifted, so each pair is the same recording twice. Per scenario it
reports mean ± std over seeds of the clean and shifted accuracy, the change and its
paired SE, and the mean events per sample before and after the shift.

Chooses nothing: the choice of a scenario (docs/adaptation.md §5) is a rule written
before, applied to these numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import emit, environment


def shift_cost(qnet, shift, data, section) -> dict:
    """The paired change clean → shifted of the integer network ``qnet`` on the evaluation
    samples of ``shift`` (a :class:`~pipeline.shift.FrameShift`) built on ``data`` with the
    ``[adaptation]`` section ``section``, and the mean events per sample of both."""
    import torch

    from pipeline.adapt_device import emulator_predictions
    from pipeline.adapt_stats import paired_change
    from pipeline.shift import FrameShift
    from stllr.errors import UserError
    from stllr.padding import stack_samples

    if not isinstance(shift, FrameShift):
        raise UserError(
            f"--scenarios: {section.scenario} is not a frame shift; expected noisy_sensor, "
            "sensor_noise or gain_change"
        )
    scen = shift.build(data, section)
    xe, ye, le = stack_samples(scen.eval)
    xc, yc, lc = stack_samples(scen.clean)
    if not torch.equal(ye, yc):
        raise RuntimeError("the shifted and clean evaluation samples are not the same samples")
    change = paired_change(
        emulator_predictions(qnet, xc, lc), emulator_predictions(qnet, xe, le), ye
    )
    return {
        "change": change.as_dict(),
        "events_per_sample": {
            "clean": float(xc.double().sum()) / xc.shape[1],
            "shifted": float(xe.double().sum()) / xe.shape[1],
        },
        "description": shift.describe(),
    }


def run_cost(run: Path, task: str, sets: list[str], data) -> dict:
    """:func:`shift_cost` of ``run``'s deployed network on the scenario of ``sets``
    (``adaptation.KEY=VALUE``), every evaluation sample."""
    from adaptation import stage_config

    from pipeline import artefacts as A
    from pipeline.shift import make_shift

    cfg = stage_config(run, task, [*sets, "adaptation.samples=1", "adaptation.eval_samples=0"])
    return shift_cost(A.load_qnet(run), make_shift(cfg.adaptation), data, cfg.adaptation)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="gesture32-standin")
    p.add_argument("--scenarios", required=True, help="';'-separated KEY=VALUE,… lists")
    p.add_argument("--seeds", default="11,12,13")
    p.add_argument("--runs", default=None, help="folder of the trained pipeline runs")
    p.add_argument("--heldout", type=int, default=400, help="fresh event-task test recordings")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch
    from adaptation import ensure_run, stage_config, task_data

    from pipeline.adapt_stats import mean_std

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    scenarios = [s.strip() for s in args.scenarios.split(";") if s.strip()]
    heldout = 0 if args.quick else args.heldout
    tmp = None
    if args.runs is None:
        tmp = tempfile.TemporaryDirectory(prefix="stllr_shift_cost_runs_")
        runs = Path(tmp.name)
    else:
        runs = Path(args.runs)
    run = ensure_run(args.task, runs, None, args.quick)
    data = task_data(args.task, stage_config(run, args.task, []), heldout)
    result = {
        "benchmark": "adaptation_shift_cost",
        "quick": args.quick,
        "config": {"task": args.task, "seeds": seeds, "heldout": heldout, "run": str(run)},
        "environment": environment(torch.device("cpu")),
        "test_samples": len(data.test),
        "scenarios": {},
    }
    for scen in scenarios:
        sets = [f"adaptation.{kv.strip()}" for kv in scen.split(",")]
        per_seed = [run_cost(run, args.task, [*sets, f"adaptation.seed={s}"], data) for s in seeds]
        entry = {"description": per_seed[0]["description"], "per_seed": per_seed}
        for key in ("before", "after", "delta", "se"):
            m, sd = mean_std([r["change"][key] for r in per_seed])
            name = {"before": "clean", "after": "shifted", "delta": "change", "se": "se"}[key]
            entry[name] = {"mean": round(m, 2), "std": round(sd, 2)}
        for key in ("clean", "shifted"):
            m, _ = mean_std([r["events_per_sample"][key] for r in per_seed])
            entry[f"events_{key}"] = round(m, 1)
        result["scenarios"][scen] = entry
        line = f"clean {entry['clean']} shifted {entry['shifted']} change {entry['change']}"
        print(f"{scen}: {line} se {entry['se']}", file=sys.stderr, flush=True)
    if tmp is not None:
        tmp.cleanup()
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
