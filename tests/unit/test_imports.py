"""The package's modules import each other without cycles, and the generic controllers
import nothing of the lab, so they can run against any store."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import podlab

ROOT = Path(podlab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not those in functions, classes or
    `if TYPE_CHECKING:` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            found.append(stmt)
        elif isinstance(stmt, ast.If):
            found += module_level_imports(stmt.orelse)
            if not _is_type_checking(stmt.test):
                found += module_level_imports(stmt.body)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody,
                          *(h.body for h in stmt.handlers)):
                found += module_level_imports(block)
    return found


def import_graph() -> dict[str, set[str]]:
    """podlab module -> the podlab modules it imports at module level. `from pkg import x`
    points at `pkg.x` when that is a module, else at `pkg`."""
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets: set[str] = set()
        for stmt in module_level_imports(ast.parse(path.read_text()).body):
            if isinstance(stmt, ast.Import):
                targets |= {alias.name for alias in stmt.names}
            elif stmt.module is not None and stmt.level == 0:
                targets |= {f"{stmt.module}.{a.name}" if f"{stmt.module}.{a.name}" in paths
                            else stmt.module for a in stmt.names}
        graph[module] = {t for t in targets if t in paths and t != module}
    return graph


def test_the_graph_sees_the_imports_it_must() -> None:
    graph = import_graph()
    assert "podlab.lab.kube.controlplane" in graph["podlab.lab.lab"]
    assert "podlab.controllers.controller" in graph["podlab.controllers.scheduler"]


def test_no_import_cycle_among_podlab_modules() -> None:
    try:
        list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_the_controllers_import_nothing_of_the_lab() -> None:
    code = ("import sys, podlab.controllers; "
            "print(*sorted(m for m in sys.modules if m.startswith('podlab.lab')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []
