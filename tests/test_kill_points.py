"""A run killed at any write boundary, then resumed, ends with every file of an
uninterrupted run (``stllr train --resume`` and ``stllr pipeline --resume``).

A kill is simulated by an exception that no code of the toolkit catches
(:class:`Killed` derives from ``BaseException``), raised by ``os.replace`` — the last step
of every atomic write — at its k-th call: the run stops with k − 1 files written and a
temp file left behind, as after ``kill -9``. For every k up to the number of writes an
uninterrupted run makes, the test kills there, resumes, and compares the files with the
uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from stllr.config import ExperimentConfig
from stllr.run import run_experiment
from stllr.tasks import TaskData
from stllr.trainer import ListDataset

REAL_REPLACE = os.replace


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the toolkit catches it."""


class KillAt:
    """Patch ``os.replace`` to raise :class:`Killed` at its ``k``-th call (k = 0: never)."""

    def __init__(self, monkeypatch, k: int):
        self.calls, self.k = 0, k
        real = REAL_REPLACE

        def replace(src, dst, *a, **kw):
            self.calls += 1
            if self.calls == self.k:
                raise Killed(f"killed before write {self.k} ({dst})")
            return real(src, dst, *a, **kw)

        monkeypatch.setattr(os, "replace", replace)


def _task() -> TaskData:
    g = torch.Generator().manual_seed(0)
    samples = [(torch.rand(8 + i % 3, 20, generator=g) < 0.3).float() for i in range(16)]
    ds = ListDataset(samples, torch.randint(0, 3, (16,), generator=g))
    return TaskData(ds, ds, (20,), 3, "tiny random task")


def _cfg(out: Path) -> ExperimentConfig:
    return ExperimentConfig(
        name="t", arch="shd_rsnn", hidden=8, epochs=2, batch_size=8, val_batch_size=8,
        window=3, lr=5e-3, out_dir=str(out), scheduler=2,
    )  # fmt: skip


def _files(run: Path) -> dict[str, object]:
    """Every file of a run, comparable across runs (times and png bytes left out)."""
    out: dict[str, object] = {}
    for p in sorted(run.rglob("*")):
        rel = str(p.relative_to(run))
        if p.is_dir():
            continue
        if p.suffix == ".json":
            obj = json.loads(p.read_text())
            rows = obj if isinstance(obj, list) else [obj]
            for r in rows:
                if isinstance(r, dict):
                    r.pop("seconds", None)
                    r.pop("out_dir", None)
            out[rel] = obj
        elif p.suffix == ".pt":
            out[rel] = {k: v.tolist() for k, v in torch.load(p, weights_only=True)["model"].items()}
        elif p.suffix == ".csv":
            out[rel] = [line.rsplit(",", 1)[0] for line in p.read_text().splitlines()]
        else:
            out[rel] = p.stat().st_size > 0
    return out


def test_train_killed_at_every_write_then_resumed_finishes_every_file(tmp_path, monkeypatch):
    task = _task()
    quiet = dict(progress=False, log=lambda s: None, data=task)
    counter = KillAt(monkeypatch, 0)
    run_experiment(_cfg(tmp_path / "ref"), **quiet)
    writes = counter.calls
    reference = _files(tmp_path / "ref" / "t")
    assert writes >= 10, writes  # config, 2 × (best, checkpoint, metrics ×3), summary
    for k in range(1, writes + 1):
        out = tmp_path / f"k{k}"
        KillAt(monkeypatch, k)
        with pytest.raises(Killed):
            run_experiment(_cfg(out), **quiet)
        KillAt(monkeypatch, 0)
        resume = (out / "t" / "config.json").exists()
        run_experiment(_cfg(out), resume=resume, **quiet)
        for tmp in (out / "t").rglob(".*.tmp"):
            tmp.unlink()  # the temp file of the killed write (its name is random)
        assert _files(out / "t") == reference, f"killed before write {k}"
        shutil.rmtree(out)


# --- the pipeline's stage runner -------------------------------------------------------


class _Cfg:
    """The two things the runner asks of a pipeline config."""

    def __init__(self, **settings):
        self._s = {"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 3}, **settings}

    def settings(self) -> dict:
        return self._s

    def as_dict(self) -> dict:
        return self._s


def _stages(fail_b: bool = False):
    """Three stages, each reading the one before: a writes two files, b one, c one."""
    from pipeline.runner import Stage, StageOutput
    from stllr.run import atomic_json

    def a(ctx):
        out = ctx.stage_dir("a")
        atomic_json({"x": ctx.cfg.settings()["a"]["v"]}, out / "x.json")
        atomic_json({"y": 10}, out / "y.json")
        return StageOutput({"n": 2}, "a done", ("a/x.json", "a/y.json"))

    def b(ctx):
        if fail_b:
            raise ValueError("b fails")
        x = json.loads((ctx.run_dir / "a/x.json").read_text())["x"]
        atomic_json({"z": x + ctx.cfg.settings()["b"]["v"]}, ctx.stage_dir("b") / "z.json")
        return StageOutput({"n": 1}, "b done", ("b/z.json",))

    def c(ctx):
        z = json.loads((ctx.run_dir / "b/z.json").read_text())["z"]
        atomic_json({"w": 2 * z}, ctx.stage_dir("c") / "w.json")
        return StageOutput({"n": 1}, "c done", ("c/w.json",))

    return (
        Stage("a", "A", a, (), ("a",)),
        Stage("b", "B", b, ("a",), ("b",)),
        Stage("c", "C", c, ("b",), ("c",)),
    )


def _run_files(run: Path) -> dict[str, object]:
    out = {}
    for p in sorted(run.rglob("*.json")):
        obj = json.loads(p.read_text())
        if p.name == "stage.json":
            obj = {k: v for k, v in obj.items() if k not in ("started", "seconds")}
        out[str(p.relative_to(run))] = obj
    return out


class KillRenamesToo(KillAt):
    """Also kill at ``os.rename``, which swaps a finished stage in."""

    def __init__(self, monkeypatch, k: int):
        super().__init__(monkeypatch, k)
        real = REAL_RENAME

        def rename(src, dst, *a, **kw):
            self.calls += 1
            if self.calls == self.k:
                raise Killed(f"killed before rename {self.k} ({dst})")
            return real(src, dst, *a, **kw)

        monkeypatch.setattr(os, "rename", rename)


REAL_RENAME = os.rename


@pytest.mark.parametrize("rerun", [False, True], ids=["first-run", "rerun-from-b"])
def test_stage_runner_killed_at_every_write_and_swap_then_resumed(tmp_path, monkeypatch, rerun):
    """Killed at any write or swap of a first run (or of a --rerun-from b), a resumed run
    ends with the files of an uninterrupted one, and every stage counts as done."""
    from pipeline.runner import run_stages, stage_status

    quiet = dict(progress=False, log=lambda s: None)
    ref = tmp_path / "ref"
    counter = KillRenamesToo(monkeypatch, 0)
    run_stages(_stages(), _Cfg(), ref, **quiet)
    if rerun:
        counter.calls = 0
        run_stages(_stages(), _Cfg(), ref, resume=True, rerun_from="b", **quiet)
    writes = counter.calls
    reference = _run_files(ref)
    assert writes >= (9 if rerun else 12), writes
    for k in range(1, writes + 1):
        run = tmp_path / f"k{k}"
        if rerun:
            shutil.copytree(ref, run)
        KillRenamesToo(monkeypatch, k)
        with pytest.raises(Killed):
            run_stages(_stages(), _Cfg(), run, resume=rerun, rerun_from="b" if rerun else None,
                       **quiet)  # fmt: skip
        KillRenamesToo(monkeypatch, 0)
        run_stages(_stages(), _Cfg(), run, resume=True, **quiet)
        assert _run_files(run) == reference, f"killed at call {k}"
        assert [stage_status(s, _Cfg(), run) for s in _stages()] == ["done"] * 3, k
        assert not (run / ".staging").exists() and not (run / ".retired").exists(), k
        shutil.rmtree(run)


def test_a_failed_rerun_keeps_the_last_good_results(tmp_path):
    from pipeline.runner import run_stages, stage_status

    quiet = dict(progress=False, log=lambda s: None)
    run_stages(_stages(), _Cfg(), tmp_path / "run", **quiet)
    before = _run_files(tmp_path / "run")
    with pytest.raises(ValueError, match="b fails"):
        run_stages(_stages(fail_b=True), _Cfg(), tmp_path / "run", resume=True, rerun_from="b",
                   **quiet)  # fmt: skip
    assert _run_files(tmp_path / "run") == before
    assert [stage_status(s, _Cfg(), tmp_path / "run") for s in _stages()] == ["done"] * 3
    # a changed setting whose re-run fails likewise keeps the finished stage's files
    with pytest.raises(ValueError, match="b fails"):
        run_stages(_stages(fail_b=True), _Cfg(b={"v": 5}), tmp_path / "run", resume=True,
                   **quiet)  # fmt: skip
    assert _run_files(tmp_path / "run") == before


def test_a_run_that_fails_at_once_leaves_no_folder(tmp_path):
    from pipeline.runner import Stage, run_stages

    def broken(ctx):
        raise ValueError("no data here")

    with pytest.raises(ValueError, match="no data"):
        run_stages((Stage("a", "A", broken),), _Cfg(), tmp_path / "run", progress=False,
                   log=lambda s: None)  # fmt: skip
    assert not (tmp_path / "run").exists()
