"""The benchmark figures in docs/BENCHMARKS.md and the README are what benchmarks/make_docs.py writes from
the JSON in benchmarks/results/: a table edited by hand, or JSON updated without the docs, fails here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_docs_are_written_from_the_results():
    spec = importlib.util.spec_from_file_location("make_docs", REPO / "benchmarks" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_docs)
    assert make_docs.main(["--check"]) == 0, "run python benchmarks/make_docs.py"
