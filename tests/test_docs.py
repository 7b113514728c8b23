"""The docs against the code: the benchmark figures in docs/BENCHMARKS.md and the README are what
benchmarks/make_docs.py writes from the JSON in benchmarks/results/ (a table edited by hand, or JSON updated
without the docs, fails here); every link between pages reaches a file and a heading that exist; every
benchmark script a page names exists."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def test_benchmark_docs_are_written_from_the_results():
    spec = importlib.util.spec_from_file_location("make_docs", REPO / "benchmarks" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_docs)
    assert make_docs.main(["--check"]) == 0, "run python benchmarks/make_docs.py"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces as ``-``, a repeated heading numbered ``-1``, ``-2``."""
    out, seen = set(), {}
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6} (.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_anchor_rule_reads_headings_as_github_does(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Flow: `flow/estimators/`\n## 2026-11-29: `get_estimator(\"dis\")`\n## Tests\n## Tests\n"
                    "```\n# not a heading\n```\n")
    assert _anchors(page) == {"flow-flowestimators", "2026-11-29-get_estimatordis", "tests", "tests-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_between_pages_reach_a_file_and_a_heading(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO)}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_benchmark_scripts_a_page_names_exist(page):
    name = page.relative_to(REPO).as_posix()
    named = set(re.findall(r"benchmarks/[\w-]+\.(?:py|sh)", page.read_text()))
    missing = sorted(s for s in named if not (REPO / s).is_file())
    assert not missing, f"{name} names {missing}"
