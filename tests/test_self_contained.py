"""The repository is self-contained: what the code relies on is written down in docs/.

Two checks over every file ``git ls-files`` lists:

* no file outside ``docs/`` cites a specification that is not in the repository (the
  reference notes kept next to it, or anything under a sibling ``shared`` folder);
* every ``docs/<page>.md`` mention names a page that exists, and every ``§N`` after it (and a
  following ``pitfall K``) names a numbered heading of that page: ``## N. …`` /
  ``### Na. …`` and ``### Pitfall K. …``.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Citations of the specification files outside the repository (spelled so that this
#: file does not match itself).
FOREIGN = re.compile(r"\b(?:STLLR|LAVA|DATA|DESIGN)\.md\b|\.\./shared\b")
#: ``docs/rule.md §5``, ``docs/lava.md §3, §4``, ``docs/lava.md §7, pitfall 4``.
CITATION = re.compile(
    r"docs/(?P<page>[\w-]+)\.md"
    r"(?P<sections>(?:,?\s+§\d+[a-z]?)*)"
    r"(?:,?\s+pitfall\s+(?P<pitfall>\d+))?"
)
SECTION = re.compile(r"§(\d+[a-z]?)")
HEADING = re.compile(r"^#{2,6}\s+(\d+[a-z]?)\.\s", re.MULTILINE)
PITFALL_HEADING = re.compile(r"^#{2,6}\s+Pitfall\s+(\d+)\.\s", re.MULTILINE)


def tracked_texts() -> dict[str, str]:
    """Path → text of every tracked, non-binary file."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err})")
    texts = {}
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            texts[name] = data.decode("utf-8", errors="replace")
    return texts


@cache
def page_anchors(page: str) -> tuple[set[str], set[str]] | None:
    """The numbered sections and pitfalls of ``docs/<page>.md`` (None if it does not exist)."""
    path = DOCS / f"{page}.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    return set(HEADING.findall(text)), set(PITFALL_HEADING.findall(text))


def citation_errors(name: str, text: str) -> list[str]:
    """One line per ``docs/…`` citation in ``text`` that points nowhere."""
    errors = []
    for m in CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        where = f"{name}:{line}: {' '.join(m.group(0).split())!r}"
        anchors = page_anchors(m.group("page"))
        if anchors is None:
            errors.append(f"{where}: no such page docs/{m.group('page')}.md")
            continue
        sections, pitfalls = anchors
        for number in SECTION.findall(m.group("sections")):
            if number not in sections:
                errors.append(f"{where}: docs/{m.group('page')}.md has no heading '{number}.'")
        pitfall = m.group("pitfall")
        if pitfall is not None and pitfall not in pitfalls:
            errors.append(f"{where}: docs/{m.group('page')}.md has no heading 'Pitfall {pitfall}.'")
    return errors


def test_no_file_outside_docs_cites_specifications_outside_the_repo():
    offenders = [
        f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for name, text in tracked_texts().items()
        if not name.startswith("docs/")
        for m in FOREIGN.finditer(text)
    ]
    assert not offenders, "cite docs/ instead:\n" + "\n".join(offenders)


def test_every_docs_citation_names_an_existing_page_and_heading():
    texts = tracked_texts()
    errors = [e for name, text in texts.items() for e in citation_errors(name, text)]
    assert not errors, "\n".join(errors)
    cited = sum(
        len(SECTION.findall(m.group("sections")))
        for text in texts.values()
        for m in CITATION.finditer(text)
    )
    assert cited >= 40  # the code's citations were found (the check is not vacuous)


def test_citation_check_reports_bad_pages_sections_and_pitfalls():
    bad = "§99", "pitfall 42", "nope.md"  # kept apart so that this file's own text is clean
    text = (
        "see docs/rule.md §5 and docs/lava.md §3, §7, pitfall 4\n"
        f"docs/rule.md {bad[0]}, docs/lava.md §7,\n    {bad[1]} and docs/{bad[2]} §1"
    )
    errors = citation_errors("x.py", text)
    assert len(errors) == 3, errors
    assert "x.py:2:" in errors[0] and "no heading '99.'" in errors[0]
    assert "no heading 'Pitfall 42.'" in errors[1]
    assert f"no such page docs/{bad[2]}" in errors[2]


@pytest.mark.parametrize(
    "spelling", ["STLLR" + ".md §1", "see LAVA" + ".md", "DATA" + ".md", "../" + "shared/spec"]
)
def test_foreign_pattern_matches_every_spelling(spelling):
    assert FOREIGN.search(spelling)
    assert not FOREIGN.search("docs/data.md and METADATA.md")
