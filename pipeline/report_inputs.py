"""What the report reads: the earlier stages' summaries and JSON files, and the number
formats its tables share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline import artefacts as A
from pipeline.config import PipelineConfig
from pipeline.runner import Context


def pct(v) -> str:
    return "—" if v is None else f"{v:.1f} %"


def num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def lava_prefix(lava: dict | None) -> tuple[int, int] | None:
    """``(K, M)`` when Lava learned only the first ``K`` of the ``M`` stream samples
    (``adaptation.lava_stream_samples``; its "after" scored the emulator's final weights),
    else ``None`` (it learned the whole stream, or the run predates the setting)."""
    if not lava or lava.get("stream_samples_learned") is None:
        return None
    k, m = lava["stream_samples_learned"], lava["stream_samples_total"]
    return (k, m) if k < m else None


def _read(run_dir: Path, rel: str):
    p = run_dir / rel
    return json.loads(p.read_text()) if p.is_file() else None


@dataclass(frozen=True)
class Artefacts:
    """What the earlier stages wrote, read once for all sections."""

    run_dir: Path
    cfg: PipelineConfig
    tr: dict  # the train stage's summary
    quant: dict
    sweep: dict
    cost: dict
    lava: dict | None
    adapt: dict | None
    lava_ran: bool  # the lava stage ran (not absent, not --skip-lava)


def read_artefacts(ctx: Context) -> Artefacts:
    """The summaries and JSON files of the earlier stages."""
    run_dir = ctx.run_dir
    tr = ctx.summary("train")
    quant = _read(run_dir, A.QUANT_JSON)
    sweep = _read(run_dir, A.SWEEP_JSON)
    cost = _read(run_dir, A.COST_JSON)
    lava = _read(run_dir, A.LAVA_JSON)
    adapt = _read(run_dir, A.ADAPT_JSON)
    if adapt is not None and adapt.get("skipped"):  # a first-spike network: said in Stages
        adapt = None
    lava_ran = lava is not None and not lava.get("skipped")
    return Artefacts(run_dir, ctx.cfg, tr, quant, sweep, cost, lava, adapt, lava_ran)
