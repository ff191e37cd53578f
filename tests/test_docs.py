"""The README and docs/ point at files that exist, and the code's "design.md §N" citations at sections that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
# Markdown links and images to a path in the repo (not a URL, not a pure #anchor).
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)")
# Repo paths quoted in backticks that name a file under docs/ or model_cards/ (a glob like cpu_config_*.json is skipped).
QUOTED = re.compile(r"`((?:docs|model_cards)/[\w./-]+\.(?:json|md|png|jpg|py))`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_links_and_quoted_paths_exist(doc):
    text = doc.read_text(encoding="utf-8")
    missing = [link for link in LINK.findall(text) if not (doc.parent / link).exists()]
    missing += [path for path in QUOTED.findall(text) if not (REPO_ROOT / path).exists()]
    assert not missing, f"{doc.name} points at files that do not exist: {missing}"


def test_readme_figure_is_committed_and_small():
    figure = REPO_ROOT / "docs" / "images" / "zoo.jpg"
    assert "docs/images/zoo.jpg" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert figure.is_file() and figure.stat().st_size < 400 * 1024


def test_design_citations_have_their_section():
    """Code cites "design.md §N" or "design.md section N"; docs/design.md must have a heading "## §N ..." for each."""
    cited = set()
    for folder in ("indi_pipeline", "train", "zoo", "research", "benchmarks", "tests"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".md"} and path.is_file():
                cited |= set(re.findall(r"design\.md (?:§|section )(\d+)", path.read_text(encoding="utf-8")))
    cited |= set(re.findall(r"design\.md (?:§|section )(\d+)", (REPO_ROOT / "app.py").read_text(encoding="utf-8")))
    headings = set(re.findall(r"^## §(\d+) ", (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8"), re.M))
    assert cited, "no design.md citations found: has the citation style changed?"
    assert cited <= headings, f"cited sections without a heading in docs/design.md: {sorted(cited - headings)}"
