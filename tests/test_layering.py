"""The house rules, read from the source: import arrows point one way (flow <- plugin <- embedded <-
jobs/CLI), no library module imports the command line, no module hides its imports of the package inside
functions, no file is over about 500 lines, and no code text reads as a lab diary."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 530  # "about 500"


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


def test_code_text_is_a_reference_not_a_diary():
    pattern = re.compile(r"session [0-9]|scratch", re.IGNORECASE)
    hits = [f"{p.relative_to(REPO)}:{i}" for p in MODULES.values()
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
