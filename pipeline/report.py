"""Stage ``report``: one HTML file (figures embedded) and its markdown twin.

Reads only what the earlier stages wrote (their summaries and JSON files), draws the
figures (:mod:`pipeline.figures`) into ``report/figures/`` and renders one document
model — headings, paragraphs, tables, figures — twice: ``report/report.html``
(self-contained: the PNGs are embedded as data URIs) and ``report/report.md`` (linking
``figures/*.png``).

The sections live in :mod:`pipeline.report_sections` (the outline) and the modules it
names, the document model and the HTML and markdown renderers in :mod:`pipeline.document`;
their public names are re-exported here.
"""

from __future__ import annotations

from pipeline import artefacts as A
from pipeline.document import CSS, Block, Figure, Table, to_html, to_markdown
from pipeline.report_adaptation_cost import NEUROBENCH
from pipeline.report_sections import build
from pipeline.runner import Context, StageOutput
from stllr.run import atomic_write_bytes

__all__ = [
    "CSS", "NEUROBENCH", "Block", "Figure", "Table", "build", "run", "to_html", "to_markdown",
]  # fmt: skip


def run(ctx: Context, outline=build) -> StageOutput:
    """Write the report; ``outline(ctx, fig_dir) → (title, blocks)`` (the flow task's is
    :func:`pipeline.flow_report.build`)."""
    out = ctx.stage_dir("report")
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    title, blocks = outline(ctx, fig_dir)
    atomic_write_bytes(out / "report.html", to_html(title, blocks, fig_dir).encode())
    atomic_write_bytes(out / "report.md", to_markdown(title, blocks).encode())
    figs = [b.file for b in blocks if isinstance(b, Figure)]
    summary = {"html": A.REPORT_HTML, "markdown": A.REPORT_MD, "figures": figs}
    line = f"{ctx.run_dir / A.REPORT_HTML} (+ report.md, {len(figs)} figures)"
    arte = (A.REPORT_HTML, A.REPORT_MD, *[f"report/figures/{f}" for f in figs])
    return StageOutput(summary, line, arte)
