"""The stage runner: run folders, done-markers, resume and re-run rules.

A run folder ``<run>/`` holds ``pipeline.json`` (the resolved config of the last complete
invocation; its presence marks a run folder), one folder per stage with its artefacts,
and per stage a done-marker ``<run>/<stage>/stage.json``::

    {"stage", "fingerprint", "config", "artefacts": {path: sha256}, "summary", "line",
     "started", "seconds"}

written atomically *after* every artefact. A stage counts as finished when its marker
exists, its fingerprint equals the current one and every artefact listed in the marker
still exists with the same sha256. The fingerprint hashes the stage's config sections and
the artefact digests of the stages it reads (``Stage.needs``), so a changed setting or a
changed input re-runs exactly the stages that depend on it, and an upstream stage that
re-runs to identical files leaves its consumers finished.

Re-running a stage clears its folder first. The one exception is an interrupted
training stage (no marker, a checkpoint written with the same settings): it continues
from its last epoch (:func:`stllr.run.run_experiment` with ``resume=True``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import PipelineConfig
from stllr.errors import UserError
from stllr.run import atomic_json

MARKER = "stage.json"
RUN_FILE = "pipeline.json"
SUMMARY_FILE = "pipeline_summary.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class StageOutput:
    """What a stage returns: a small JSON summary, one line for the console, its files."""

    summary: dict
    line: str
    artefacts: tuple[str, ...]  # relative to the run folder


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[Context], StageOutput]
    #: stages whose artefacts this one reads (their digests enter its fingerprint)
    needs: tuple[str, ...] = ()
    #: config sections that change its result
    sections: tuple[str, ...] = ()
    #: extra fingerprint inputs from the config (e.g. whether Lava runs)
    extra: Callable[[PipelineConfig], dict] = field(default=lambda cfg: {})


class Context:
    """What a stage gets: the run folder, the config, logging, and shared loaded data."""

    def __init__(self, run_dir: Path, cfg: PipelineConfig, progress: bool, log: Log):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.progress = progress
        self.log = log
        self._data = None

    def stage_dir(self, name: str) -> Path:
        d = self.run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.run_dir))

    def summary(self, name: str) -> dict:
        """The summary of a finished stage (from its marker)."""
        marker = read_marker(self.run_dir, name)
        if marker is None:
            raise FileNotFoundError(f"stage {name!r} has not finished in {self.run_dir}")
        return marker["summary"]

    @property
    def data(self):
        """The task's data (:class:`stllr.tasks.TaskData`), loaded once per invocation."""
        if self._data is None:
            from stllr.tasks import load_task

            self._data = load_task(self.cfg.train)
        return self._data


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_marker(run_dir: Path, name: str) -> dict | None:
    path = Path(run_dir) / name / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def artefacts_intact(run_dir: Path, marker: dict) -> bool:
    for rel, digest in marker.get("artefacts", {}).items():
        p = Path(run_dir) / rel
        if not p.is_file() or sha256_file(p) != digest:
            return False
    return True


def fingerprint(stage: Stage, cfg: PipelineConfig, run_dir: Path) -> tuple[str, dict]:
    """(hash, what it hashes): the stage's config sections and its inputs' artefact digests."""
    full = cfg.settings()
    what = {
        "config": {s: full[s] for s in stage.sections},
        "extra": stage.extra(cfg),
        "upstream": {},
    }
    for up in stage.needs:
        marker = read_marker(run_dir, up)
        what["upstream"][up] = _digest(marker["artefacts"]) if marker else None
    return _digest(what), what


def _config_for_marker(cfg: PipelineConfig, stage: Stage) -> dict:
    full = cfg.settings()
    return {s: full[s] for s in stage.sections}


def stage_status(stage: Stage, cfg: PipelineConfig, run_dir: Path) -> str:
    """``"done"``, ``"missing"`` (never finished), ``"changed"`` (settings or inputs
    differ) or ``"damaged"`` (an artefact is missing or modified)."""
    marker = read_marker(run_dir, stage.name)
    if marker is None:
        return "missing"
    if marker.get("fingerprint") != fingerprint(stage, cfg, run_dir)[0]:
        return "changed"
    if not artefacts_intact(run_dir, marker):
        return "damaged"
    return "done"


def run_stages(
    stages: Sequence[Stage],
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    rerun_from: str | None = None,
    progress: bool = True,
    log: Log = print,
    before_stage: Callable[[Stage, str, Context], None] | None = None,
) -> dict:
    """Run the stages that are not finished (see module doc); return every stage's summary.

    ``before_stage(stage, status, ctx)`` is called before a stage (re-)runs, after the
    runner has decided to run it (the training stage uses it to check for a settings
    change that should not silently retrain).
    """
    run_dir = Path(run_dir)
    names = [s.name for s in stages]
    if rerun_from is not None and rerun_from not in names:
        raise UserError(f"--rerun-from {rerun_from!r}: unknown stage; stages: {', '.join(names)}")
    if (run_dir / RUN_FILE).exists() and not resume:
        raise UserError(
            f"{run_dir} already holds a pipeline run; pass --resume to continue it "
            "(finished stages are skipped), or choose another --out"
        )
    if run_dir.exists() and not (run_dir / RUN_FILE).exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} exists and is not a pipeline run folder; choose another --out")
    run_file = {"format": "stllr-pipeline/1", "stages": names, "config": cfg.as_dict()}
    if not (run_dir / RUN_FILE).exists():  # marks the folder as a run from the start
        atomic_json(run_file, run_dir / RUN_FILE)
    ctx = Context(run_dir, cfg, progress, log)
    forced = set(names[names.index(rerun_from) :]) if rerun_from else set()
    summaries: dict[str, dict] = {}
    total = len(stages)
    for k, stage in enumerate(stages, 1):
        status = "forced" if stage.name in forced else stage_status(stage, cfg, run_dir)
        head = f"[{k}/{total}] {stage.name}"
        if status == "done":
            marker = read_marker(run_dir, stage.name)
            log(f"{head}: finished earlier, skipped — {marker['line']}")
            summaries[stage.name] = marker["summary"]
            continue
        if before_stage is not None:
            before_stage(stage, status, ctx)
        reason = {
            "missing": "",
            "changed": " (settings or inputs changed)",
            "damaged": " (an artefact is missing or modified)",
            "forced": " (--rerun-from)",
        }[status]
        log(f"{head}: {stage.title}{reason}")
        keep = stage.name == "train" and status == "missing"  # an interrupted training resumes
        stage_dir = run_dir / stage.name
        if stage_dir.exists() and not keep:
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        out = stage.run(ctx)
        seconds = time.time() - t0
        fp, _ = fingerprint(stage, cfg, run_dir)
        arte = {rel: sha256_file(run_dir / rel) for rel in out.artefacts}
        atomic_json(out.summary, stage_dir / "summary.json")
        arte[f"{stage.name}/summary.json"] = sha256_file(stage_dir / "summary.json")
        marker = {
            "stage": stage.name,
            "fingerprint": fp,
            "config": _config_for_marker(cfg, stage),
            "artefacts": arte,
            "summary": out.summary,
            "line": out.line,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)),
            "seconds": round(seconds, 2),
        }
        atomic_json(marker, stage_dir / MARKER)
        summaries[stage.name] = out.summary
        log(f"{head}: {out.line} [{seconds:.0f} s]")
    atomic_json(summaries, run_dir / SUMMARY_FILE)
    atomic_json(run_file, run_dir / RUN_FILE)  # the settings every stage now matches
    return summaries
