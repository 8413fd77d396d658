"""The package layering of docs/design.md, and no import cycle between files.

Read from the source with `ast`, nothing imported:

- every import (wherever it is written) must follow the layering:
  `leaderboard -> db`; `submissions -> runners, db`; `runners -> db`; `db` imports
  nothing of ours;
- imports must not form a cycle between files.  Module-level imports count, and so
  do imports inside functions: deferring an import hides a cycle from the
  interpreter, not from the design (two files that need each other are one
  module in two pieces).  Imports under `if TYPE_CHECKING:` do not count: they
  never run, and only name types.  Every import is checked against the layering.

An edge goes to the module named (`from a.b import c` -> `a.b`, or `a.b.c` when c
is a module of its own), not to the packages above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("leaderboard", "submissions", "runners", "db")
ALLOWED = {
    "leaderboard": {"leaderboard", "db"},
    "submissions": {"submissions", "runners", "db"},
    "runners": {"runners", "db"},
    "db": {"db"},
}
# Known exceptions, each with why it is still here.
KNOWN_CYCLES: dict[frozenset[str], str] = {}
# submissions/cli.py is being re-laid out elsewhere; these are reported there, not fixed here.
KNOWN_LAYERING: dict[tuple[str, str], str] = {
    ("submissions.cli", "leaderboard.exports"): "`mtlb ranking` formats with the site's exports",
    ("submissions.cli", "leaderboard.tables"): "`mtlb ranking` ranks with the site's tables",
    ("leaderboard.views.submit", "submissions.intake"): "the Submit page, the site's one writer,"
    " submits through the same narrow path as the API (validate, store, queue)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path) -> Iterator[tuple[str, bool, int]]:
    """(imported module, does it run?, line) of every import of ours in a file.

    An import runs unless it is under `if TYPE_CHECKING:`.
    """
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, runs: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), runs)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, runs, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    yield (submodule if submodule in MODULES else base), runs, child.lineno
            else:
                yield from walk(child, runs)

    for target, runs, line in walk(tree, True):
        if target.split(".")[0] in PACKAGES:
            yield target, runs, line


def resolve(target: str) -> str | None:
    """The file module an import names (`a.b.c` may be the attribute c of module a.b)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, runs, _ in imports(name, path):
            resolved = resolve(target)
            if runs and resolved is not None and resolved != name:
                edges[name].add(resolved)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_follows_the_package_layering() -> None:
    wrong = []
    for name, path in MODULES.items():
        package = name.split(".")[0]
        for target, _, line in imports(name, path):
            if (
                target.split(".")[0] not in ALLOWED[package]
                and (name, target) not in KNOWN_LAYERING
            ):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {target}")
    assert wrong == []


def test_no_import_cycle_between_files() -> None:
    found = [sorted(c) for c in cycles(graph()) if c not in KNOWN_CYCLES]
    assert found == []


def test_the_known_exceptions_still_exist() -> None:
    # An exception that no longer applies is deleted, so that it cannot hide a new one.
    present = set(cycles(graph()))
    assert [sorted(c) for c in KNOWN_CYCLES if c not in present] == []
    edges = {
        (name, target) for name, path in MODULES.items() for target, _, _ in imports(name, path)
    }
    assert [edge for edge in KNOWN_LAYERING if edge not in edges] == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import db.models\n", [("db.models", True)]),
        (
            "from runners.models import heads, ARCHITECTURES\n",
            [("runners.models.heads", True), ("runners.models", True)],
        ),
        ("def f():\n    from leaderboard import app\n", [("leaderboard.app", True)]),
        ("if TYPE_CHECKING:\n    import runners.train\n", [("runners.train", False)]),
        ("from . import spec\n", [("submissions.spec", True)]),
        ("import numpy\n", []),
    ],
)
def test_imports_are_read_as_documented(
    source: str, expected: list[tuple[str, bool]], tmp_path: Path
) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert [(t, runs) for t, runs, _ in imports("submissions.probe", path)] == expected


def test_a_cycle_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [frozenset({"a", "b", "c"})]
