"""The report's document model and its two renderers.

A report is a title and a list of blocks — ``("h2", text)``, ``("p", text)``,
:class:`Table`, :class:`Figure` — rendered as self-contained HTML (:func:`to_html`, the PNGs
embedded as data URIs) and as markdown (:func:`to_markdown`, linking ``figures/*.png``).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    file: str  # in report/figures/
    caption: str


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


Block = tuple  # ("h2", text) | ("p", text) | Table | Figure


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1em 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; margin-top: 0.3em; }
"""


def to_html(title: str, blocks: list, fig_dir: Path) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for b in blocks:
        if isinstance(b, Table):
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{e(h)}</th>" for h in b.headers)
                + "</tr></thead><tbody>"
            )
            for r in b.rows:
                out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((fig_dir / b.file).read_bytes()).decode()
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.caption)}" '
                f'data-file="{e(b.file)}"><figcaption>{e(b.caption)}</figcaption></figure>'
            )
        elif b[0] == "h2":
            out.append(f"<h2>{e(b[1])}</h2>")
        else:
            out.append(f"<p>{e(b[1])}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{_md_cell(b.caption)}](figures/{b.file})", "", f"*{b.caption}*", ""]
        elif b[0] == "h2":
            out += [f"## {b[1]}", ""]
        else:
            out += [b[1], ""]
    return "\n".join(out)
