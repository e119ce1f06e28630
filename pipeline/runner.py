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

A stage is never deleted before its replacement exists. It runs into a staging folder
``<run>/.staging/<stage>/``; its artefacts, ``summary.json`` and last of all its marker are
written there, and only then is it swapped in: ``<stage>/`` → ``.retired/<stage>/``,
``.staging/<stage>/`` → ``<stage>/``, ``.retired/<stage>/`` removed. A failed or killed re-run
therefore leaves the last good results in place, and :func:`recover` (run before every
stage) finishes or undoes a swap that a kill cut short: a staging folder with a marker is
complete and is swapped in, one without is the leftover of an interrupted run.

The training stage keeps its checkpoints in the staging folder, so an interrupted training
continues from its last epoch (:func:`stllr.run.run_experiment` with ``resume=True``) when
the stage runs again with the same settings. A finished training is never replaced
without being asked: changed settings or a damaged artefact (``best.pt`` modified) stop
the run with the reason; ``--rerun-from train`` retrains, and the old ``train/`` folder
stays until the new training has finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import PipelineConfig
from stllr.errors import UserError
from stllr.files import removed_on_failure
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
    #: an interrupted run's staging folder is continued, not cleared (training checkpoints)
    keeps_staging: bool = False


class Context:
    """What a stage gets: the run folder, the config, logging, and shared loaded data."""

    def __init__(self, run_dir: Path, cfg: PipelineConfig, progress: bool, log: Log):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.progress = progress
        self.log = log
        self._data = None
        #: other data a task's stages load once per invocation, by key (e.g. the flow
        #: task's two conditions, pipeline.flow_data)
        self.cache: dict = {}
        #: why the running stage runs: "missing", "changed", "damaged" or "forced"
        self.status = ""

        #: stage name → the staging folder it is being written into (the running stage)
        self.staging: dict[str, Path] = {}

    def stage_dir(self, name: str) -> Path:
        """Where stage ``name`` writes: its staging folder while it runs, else its folder."""
        d = self.staging.get(name, self.run_dir / name)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, rel: str) -> Path:
        """The file ``rel`` (relative to the run folder, e.g. ``train/trial_1/best.pt``),
        inside the staging folder when its stage is the one running."""
        head, _, tail = str(rel).partition("/")
        return self.staging[head] / tail if head in self.staging else self.run_dir / rel

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


def damaged_artefacts(run_dir: Path, marker: dict) -> list[str]:
    """The files a marker lists that are missing or no longer have their sha256."""
    return [
        rel
        for rel, digest in marker.get("artefacts", {}).items()
        if not (Path(run_dir) / rel).is_file() or sha256_file(Path(run_dir) / rel) != digest
    ]


def artefacts_intact(run_dir: Path, marker: dict) -> bool:
    return not damaged_artefacts(run_dir, marker)


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


#: where stages are written before they are swapped in, and where a replaced one goes
STAGING, RETIRED = ".staging", ".retired"


def staging_dir(run_dir: Path, name: str) -> Path:
    """Where stage ``name`` is written before it is swapped in (see module doc). The
    folder keeps the stage's own name, so what the stage records of its folder (the
    training's ``config.json``, its log lines) says ``train``, not a staging name."""
    return Path(run_dir) / STAGING / name


def _retired_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / RETIRED / name


def _move(src: Path, dst: Path) -> None:
    """``os.rename`` (atomic within one file system) into a parent made first."""
    dst.parent.mkdir(exist_ok=True)
    os.rename(src, dst)


def _tidy(run_dir: Path) -> None:
    for d in (STAGING, RETIRED):
        try:
            (Path(run_dir) / d).rmdir()  # only when empty
        except OSError:
            pass


def recover(run_dir: Path, name: str, keep_partial: bool = False) -> None:
    """Finish or undo a swap of stage ``name`` that a kill cut short.

    The swap is: marker written into ``.staging/<name>/``; ``<name>/`` →
    ``.retired/<name>/``; ``.staging/<name>/`` → ``<name>/``; ``.retired/<name>/`` removed.
    Whatever step a kill stopped, this leaves ``<name>/`` holding the newest complete
    stage. A staging folder without a marker is the leftover of an interrupted run and is
    removed, unless ``keep_partial`` (training: its checkpoint continues). A ``<name>/``
    without a marker (never finished) becomes the staging folder.
    """
    live, new, old = Path(run_dir) / name, staging_dir(run_dir, name), _retired_dir(run_dir, name)
    if old.exists() and live.exists() and not (new / MARKER).is_file():
        shutil.rmtree(old)  # the swap finished; removing the old folder was cut short
    if (new / MARKER).is_file():  # complete but not yet swapped in
        if live.exists():
            if old.exists():
                shutil.rmtree(old)
            _move(live, old)
        os.rename(new, live)
    if old.exists():
        if live.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, live)
    if live.is_dir() and not (live / MARKER).is_file() and not new.exists():
        _move(live, new)
    if new.exists() and not keep_partial:
        shutil.rmtree(new)
    _tidy(run_dir)


def _swap_in(run_dir: Path, name: str) -> None:
    live, new, old = Path(run_dir) / name, staging_dir(run_dir, name), _retired_dir(run_dir, name)
    if live.exists():
        _move(live, old)
    os.rename(new, live)
    if old.exists():
        shutil.rmtree(old)
    _tidy(run_dir)


def _worth_keeping(run_dir: Path, names: Sequence[str]) -> bool:
    """Whether a run folder holds anything a user would miss: a finished stage, or an
    interrupted training's checkpoint."""
    if any(read_marker(run_dir, n) is not None for n in names):
        return True
    return any(Path(run_dir).glob(f"{STAGING}/train/trial_*/checkpoint.pt"))


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
    runner has decided to run it (the training stage uses it to refuse replacing a
    finished training that was not asked for). A run folder this call created is removed
    again when the call fails before anything worth keeping was written.
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
    with removed_on_failure(run_dir, lambda d: _worth_keeping(d, names)):
        return _run_stages(stages, cfg, run_dir, names, rerun_from, progress, log, before_stage)


def _run_stages(stages, cfg, run_dir, names, rerun_from, progress, log, before_stage) -> dict:
    run_file = {"format": "stllr-pipeline/1", "stages": names, "config": cfg.as_dict()}
    if not (run_dir / RUN_FILE).exists():  # marks the folder as a run from the start
        atomic_json(run_file, run_dir / RUN_FILE)
    ctx = Context(run_dir, cfg, progress, log)
    forced = set(names[names.index(rerun_from) :]) if rerun_from else set()
    summaries: dict[str, dict] = {}
    total = len(stages)
    for k, stage in enumerate(stages, 1):
        recover(run_dir, stage.name, keep_partial=stage.keeps_staging)
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
        out, seconds = _run_one(stage, status, ctx)
        summaries[stage.name] = out.summary
        log(f"{head}: {out.line} [{seconds:.0f} s]")
    atomic_json(summaries, run_dir / SUMMARY_FILE)
    atomic_json(run_file, run_dir / RUN_FILE)  # the settings every stage now matches
    return summaries


def _run_one(stage: Stage, status: str, ctx: Context) -> tuple[StageOutput, float]:
    """Run one stage into its staging folder, write its marker there last, swap it in."""
    run_dir, cfg = ctx.run_dir, ctx.cfg
    new = staging_dir(run_dir, stage.name)  # recover() cleared or kept what a kill left
    new.mkdir(parents=True, exist_ok=True)
    ctx.staging = {stage.name: new}
    ctx.status = status
    t0 = time.time()
    try:
        out = stage.run(ctx)
    except BaseException:
        if not stage.keeps_staging:
            shutil.rmtree(new, ignore_errors=True)
        raise
    seconds = time.time() - t0
    fp, _ = fingerprint(stage, cfg, run_dir)
    atomic_json(out.summary, new / "summary.json")
    files = (*out.artefacts, f"{stage.name}/summary.json")
    marker = {
        "stage": stage.name,
        "fingerprint": fp,
        "config": _config_for_marker(cfg, stage),
        "artefacts": {rel: sha256_file(ctx.path(rel)) for rel in files},
        "summary": out.summary,
        "line": out.line,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)),
        "seconds": round(seconds, 2),
    }
    atomic_json(marker, new / MARKER)  # from here the staging folder is complete
    ctx.staging = {}
    _swap_in(run_dir, stage.name)
    return out, seconds
