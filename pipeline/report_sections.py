"""The pipeline report's outline: :func:`build` reads what the earlier stages wrote once
(:func:`pipeline.report_inputs.read_artefacts`), draws the figures (:mod:`pipeline.figures`)
into ``report/figures/`` and returns the title and the blocks of :mod:`pipeline.document`,
one section after another (:mod:`pipeline.report_results`,
:mod:`pipeline.report_adaptation_cost` and the short ones here).
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import nir_import
from pipeline.document import Figure, Table
from pipeline.report_adaptation_cost import (
    adaptation_section,
    cost_section,
    memory_section,
    raster_section,
)
from pipeline.report_inputs import Artefacts, read_artefacts
from pipeline.report_results import accuracy_section, bits_section, parity_section
from pipeline.runner import Context, read_marker


def _header_section(art: Artefacts) -> list:
    """The run folder, the time of writing and the data used."""
    return [
        (
            "p",
            f"Run folder {art.run_dir} · written {time.strftime('%Y-%m-%d %H:%M')} · "
            f"data: {art.tr['data']}"
            + (f" · network: {nir_import.describe(art.tr['nir'])}" if "nir" in art.tr else ""),
        )
    ]


def _stages_section(art: Artefacts) -> list:
    """The one-line result and the time of each stage."""
    rows = []
    for name in ("train", "quantize", "cost", "lava", "adaptation"):
        m = read_marker(art.run_dir, name)
        if m is not None:
            rows.append([name, m["line"], f"{m['seconds']:.0f} s"])
    return [("h2", "Stages"), Table(["stage", "result", "time"], rows)]


def _training_section(art: Artefacts, fig_dir: Path) -> list:
    """The float training run and its learning curves."""
    from stllr.run import plot_learning_curves
    from stllr.trainer import EpochMetrics

    cfg, tr = art.cfg, art.tr
    blocks: list = []
    if "nir" in tr:
        blocks += _nir_section(tr)
    if not tr["history"]:  # imported, not fine-tuned
        return blocks
    plot_learning_curves([EpochMetrics(**m) for m in tr["history"]], fig_dir / "training.png")
    blocks.append(("h2", "Float training" if "nir" not in tr else "S-TLLR fine-tuning"))
    blocks.append(
        (
            "p",
            f"{cfg.train.arch}, hidden {tr['hidden']}, {tr['method']} "
            f"({tr['feedback']}), {tr['epochs']} epochs: best test accuracy "
            f"{tr['best_test_acc']:.1f} % at epoch {tr['best_epoch']} "
            f"(deployed).",
        )
    )
    blocks.append(Figure("training.png", "Float S-TLLR training: accuracy and loss per epoch."))
    return blocks


def _nir_section(tr: dict) -> list:
    """Where an imported network came from (``stllr pipeline --from-nir``)."""
    nir = tr["nir"]
    who = nir["producer"] or "not stated in the graph's metadata"
    rows = [
        ["file", nir["file"]],
        ["sha256", nir["sha256"]],
        ["written by", who],
        ["time step", f"{nir['dt']:g} s (from {nir['dt_from']})"],
        ["imported as", f"{nir['model']}, {nir['parameters']} parameters"],
        [
            "fine-tuning",
            f"{tr['epochs']} epoch(s) of S-TLLR"
            if tr["epochs"]
            else f"none (float test accuracy {tr['final_test_acc']:.1f} % as imported)",
        ],
    ]
    return [
        ("h2", "Network imported from NIR"),
        ("p", "The train stage imported this graph instead of training (docs/nir.md)."),
        Table(["", ""], rows),
    ]


def build(ctx: Context, fig_dir: Path) -> tuple[str, list]:
    """(title, blocks); draws every figure into ``fig_dir``."""
    art = read_artefacts(ctx)
    title = f"stllr pipeline report — {art.cfg.train.task}"
    blocks: list = _header_section(art)
    blocks += _stages_section(art)
    blocks += accuracy_section(art, fig_dir)
    blocks += bits_section(art, fig_dir)
    blocks += parity_section(art)
    blocks += adaptation_section(art, fig_dir)
    blocks += cost_section(art, fig_dir)
    blocks += memory_section(art, fig_dir)
    blocks += raster_section(art, fig_dir)
    blocks += _training_section(art, fig_dir)
    return title, blocks
