"""The house rules, read from the source: import arrows point one way (flow <- plugin <- embedded <-
jobs/CLI), no library module imports the command line, no module hides its imports of the package inside
functions, no file is over about 500 lines, and no text of the code, the benchmarks or the docs reads as a
lab diary (history lives in commit messages, CHANGELOG.md and docs/DECISIONS.md)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the longest a module of flow/ or motionguide/ may be ("about 500" lines; one file is at 530 until its
#: split lands)
MAX_LINES = 500  # the files of flow/, motionguide/ and benchmarks/


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("flow", "motionguide"):
        for p in sorted((REPO / pkg).rglob("*.py")):
            parts = p.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


MODULES = _modules()


def _layer(name: str) -> str:
    if name == "flow" or name.startswith("flow."):
        return "flow"
    if name.startswith("motionguide.embedded"):
        return "embedded"
    if name in ("motionguide.jobs", "motionguide.cli", "motionguide.__main__") or name.startswith("motionguide.commands"):
        return "top"
    return "plugin"


RANK = {"flow": 0, "plugin": 1, "embedded": 2, "top": 3}


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """``[(imported module, inside a function)]`` of a module, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_func: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.append((mod, in_func))
                for a in child.names:  # "from . import jobs" imports a module too
                    if f"{mod}.{a.name}" in MODULES:
                        found.append((f"{mod}.{a.name}", in_func))
            visit(child, inner)

    visit(tree, False)
    return found


def test_the_module_list_is_complete():
    assert {"flow.warp", "motionguide.adapter", "motionguide.embedded.network", "motionguide.jobs",
            "motionguide.cli"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name):
    """flow imports neither motionguide nor diffusers; the plugin never imports embedded/, the jobs or the
    command line; embedded/ never imports the jobs or the command line."""
    mine = RANK[_layer(name)]
    for mod, _ in _imports(name, MODULES[name]):
        if _layer(name) == "flow":
            assert not mod.startswith(("motionguide", "diffusers")), f"{name} imports {mod}"
        if mod.startswith(("flow", "motionguide")) and (mod in MODULES or mod.split(".")[0] in ("flow", "motionguide")):
            assert RANK[_layer(mod)] <= mine, f"{name} ({_layer(name)}) imports {mod} ({_layer(mod)})"
        if _layer(name) != "top":
            assert not (mod == "motionguide.cli" or mod.startswith("motionguide.commands")), f"{name} imports {mod}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _layer(n) != "top"))
def test_library_modules_do_not_hide_imports_of_the_package_in_functions(name):
    hidden = [mod for mod, in_func in _imports(name, MODULES[name])
              if in_func and (mod == "motionguide" or mod.startswith("motionguide."))]
    assert not hidden, f"{name} imports {hidden} inside functions; import what is used at the top"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_small(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(REPO)} has {n} lines; split it along its jobs"


#: the scripts and the benchmark libraries beside them (benchmarks/footage/)
BENCHMARKS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "benchmarks").rglob("*.py"))


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_scripts_stay_small(name):
    n = len((REPO / name).read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines; move what other scripts share into benchmarks/_common.py"


#: words that read as a lab diary: which working session did what ("session 4", "sessions 2-3", "in an
#: earlier session", "no session has had the device"), earlier runs and versions, scratch work, calendar dates
DIARY = re.compile(r"\bsessions? [0-9]|\b(this|last|next|previous|earlier|later|that) sessions?\b"
                   r"|\bsessions? ha(s|ve|d)\b|\ban earlier run\b|\bthe first version\b|\bscratch"
                   r"|\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b", re.IGNORECASE)
#: history by design: the change log and the decision log are dated records
HISTORY = {"CHANGELOG.md", "docs/DECISIONS.md"}


def _text_files() -> list[Path]:
    """Every module of flow/ and motionguide/, and every script and page of benchmarks/ and docs/."""
    files = list(MODULES.values())
    files += sorted(p for p in (REPO / "benchmarks").rglob("*") if p.suffix in (".py", ".sh"))
    files += sorted((REPO / "docs").rglob("*.md"))
    return [p for p in files if p.relative_to(REPO).as_posix() not in HISTORY]


def diary_hits(files) -> list[str]:
    """``path:line: text`` of every line of ``files`` that reads as a lab diary."""
    return [f"{p.relative_to(REPO).as_posix()}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1) if DIARY.search(line)]


def test_the_diary_pattern_reads_what_it_should():
    for diary in ("as session 4 measured", "the meter of sessions 2-3", "tried in an earlier session",
                  "no session has had the device", "0.91 s in an earlier run", "a scratch script",
                  "measured on 2026-12-07"):
        assert DIARY.search(diary), diary
    for reference in ("a training session's checkpoint", "the session's device time", "version 2.14.1",
                      "sessions of a user", "frames 2026 to 2030"):
        assert not DIARY.search(reference), reference


def test_code_and_docs_are_a_reference_not_a_diary():
    hits = diary_hits(_text_files())
    assert not hits, "history goes in commit messages, CHANGELOG.md or docs/DECISIONS.md:\n" + "\n".join(hits)


def test_docs_hold_no_pasted_machine_output():
    """A page states what a part guarantees and cites the command that prints a figure; it does not paste a
    run's output with this machine's paths or load."""
    pattern = re.compile(r"/root/|/home/[a-z]|load average", re.IGNORECASE)
    hits = [f"{p.relative_to(REPO).as_posix()}:{i}" for p in sorted((REPO / "docs").rglob("*.md"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
