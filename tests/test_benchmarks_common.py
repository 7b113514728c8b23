"""benchmarks/_common.py, the base the benchmark scripts share, and the scripts' bad input through it: one
line and exit status 2, nothing half-written."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from benchmarks import _common as common

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_importing_it_sets_a_passive_openmp_wait_policy(monkeypatch):
    """It sets the variable at import (so a script imports it before torch), and keeps a value the user set."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    importlib.reload(common)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    importlib.reload(common)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    source = (REPO / "benchmarks" / "_common.py").read_text()
    assert source.index('os.environ.setdefault("OMP_WAIT_POLICY"') < source.index("import torch")


def test_write_json_is_atomic(tmp_path):
    out = tmp_path / "r.json"
    common.write_json(out, {"rows": [1, 2]}, indent=2)
    assert json.loads(out.read_text()) == {"rows": [1, 2]} and out.read_text().startswith("{\n  ")
    with pytest.raises(TypeError):
        common.write_json(out, {"bad": object()})
    assert json.loads(out.read_text()) == {"rows": [1, 2]}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_timed_returns_the_result_and_a_median():
    calls = []
    out, sec = common.timed(lambda: calls.append(1) or len(calls), repeat=3)
    assert out == 3 and len(calls) == 3 and sec >= 0.0


def test_cli_turns_a_user_error_into_one_line_and_status_2(capsys):
    @common.cli
    def main(argv=None) -> int:
        if argv:
            raise common.UserError("--x: expected a number, got 'a'")
        return 0

    assert main([]) == 0
    assert main(["a"]) == 2
    err = capsys.readouterr().err
    assert err == "benchmarks/test_benchmarks_common.py: error: --x: expected a number, got 'a'\n"


@pytest.mark.parametrize("name, argv, says", [
    ("flow_epe", ["--data", "/nonexistent/data"], "Sintel pairs with ground truth not found"),
    ("interpolate", ["--datasets", "nope"], "unknown dataset(s) ['nope']"),
    ("memory_retime", ["--sizes", "9k"], "unknown size(s) ['9k']"),
])
def test_scripts_refuse_bad_input_in_one_line(name, argv, says, capsys, tmp_path):
    if name == "interpolate":
        argv = ["--data", str(tmp_path)] + argv
    assert _script(name).main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"benchmarks/{name}.py: error: ") and says in err[0], err


def test_a_jobs_guidance_enters_each_plugin_file_once_and_each_flow_file_from_few_places(capsys, tmp_path):
    """benchmarks/guidance_walk.py: from motionguide/ code, a speed and an extend job enter each plugin file from
    one call site (the synthesis is built once) and each flow file from at most two, but the shape checks."""
    walk = _script("guidance_walk")
    assert walk.main(["--size", "32x24", "--frames", "3", "--json", str(tmp_path / "w.json")]) == 0
    for job, counts in json.loads((tmp_path / "w.json").read_text()).items():
        assert all(n == 1 for f, n in counts.items() if f.startswith("motionguide/")), (job, counts)
        assert all(n <= 2 for f, n in counts.items() if f != "flow/checks.py"), (job, counts)


def test_run_sections_keeps_what_finished_records_failures_and_skips_past_the_budget(tmp_path):
    import time

    path, logged, after = tmp_path / "sub" / "r.json", [], []

    def boom():
        raise RuntimeError("out of memory\nmore lines")

    data = {"sections": {}, "errors": {}, "seconds": {}}
    common.run_sections({"a": lambda: {"x": 1}, "b": boom, "c": lambda: 3}, ["a", "b", "c"], data, path,
                        t0=time.perf_counter(), budget_s=60, log=logged.append, after=lambda: after.append(1))
    saved = json.loads(path.read_text())
    assert saved["sections"] == {"a": {"x": 1}, "c": 3} and saved["errors"] == {"b": "RuntimeError: out of memory"}
    assert set(saved["seconds"]) == {"a", "b", "c", "total"} and len(after) == 3
    data = {"sections": {}, "errors": {}, "seconds": {}}
    common.run_sections({"a": lambda: 1}, ["a"], data, path, t0=time.perf_counter() - 10, budget_s=5, log=logged.append)
    assert data["errors"] == {"a": "skipped: the 5 s budget was spent"} and not data["sections"]
    with pytest.raises(RuntimeError, match="out of memory"):
        common.run_sections({"b": boom}, ["b"], {"sections": {}, "errors": {}, "seconds": {}}, path,
                            t0=time.perf_counter(), budget_s=60, log=logged.append, reraise=True)
