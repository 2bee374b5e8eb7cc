"""The shape of the code, checked with the stdlib's ``ast`` (nothing is imported or run).

- no import cycle inside ``tenax/`` (imports inside functions count: they are cycles too);
- ``tenax/core`` imports nothing from tenax outside ``tenax.core``, and only the stdlib and pydantic;
- ``DockerSandbox``, the provider classes and the SQL store are named only in their own package,
  ``tenax/app.py`` (the one wiring module) and ``tenax/testing``;
- the packages depend on each other one way only (core at the bottom, the CLI at the top).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tenax"
CONCRETE = {
    "DockerSandbox": "tenax.sandbox",
    "AnthropicModel": "tenax.harness",
    "OpenAIResponsesModel": "tenax.harness",
    "OpenAIChatModel": "tenax.harness",
    "SqlStore": "tenax.store",
}
WIRING = ("tenax.app", "tenax.testing")
CORE_THIRD_PARTY = {"pydantic", "typing_extensions"}
# Who may import whom: a package may import the packages listed after it (and tenax.core).
LAYERS = ["tenax.cli", "tenax.daemon", "tenax.app", "tenax.export", "tenax.goal", "tenax.subagents",
          "tenax.compaction", "tenax.sandbox", "tenax.harness", "tenax.store", "tenax.config", "tenax.core"]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> list[tuple[str, int]]:
    """(imported tenax module or other top-level name, line) for every import statement."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:  # `from pkg import submodule` depends on the submodule only
                sub = f"{base}.{a.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
    return found


def tenax_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        deps = set()
        for target, _ in imports_of(name):
            while target and target not in MODULES and "." in target:  # `import tenax.x.y` names a module
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(name: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def test_the_checker_sees_cycles_and_relative_imports():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "tenax.core.messages" in [t for t, _ in imports_of("tenax.core.protocols")]


def test_no_import_cycle_inside_tenax():
    cycles = find_cycles(tenax_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_core_imports_only_core_stdlib_and_pydantic():
    bad = []
    for name in (m for m in MODULES if m == "tenax.core" or m.startswith("tenax.core.")):
        for target, line in imports_of(name):
            top = target.split(".")[0]
            if top == "tenax":
                if not (target == "tenax.core" or target.startswith("tenax.core.")):
                    bad.append(f"{name}:{line} imports {target}")
            elif top and top not in sys.stdlib_module_names and top not in CORE_THIRD_PARTY and top != "__future__":
                bad.append(f"{name}:{line} imports {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("cls", sorted(CONCRETE))
def test_concrete_classes_are_named_only_where_they_are_wired(cls):
    home = CONCRETE[cls]
    bad = []
    for name, path in MODULES.items():
        if name.startswith(home) or any(name == w or name.startswith(w + ".") for w in WIRING):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            named = ((isinstance(node, ast.Name) and node.id == cls)
                     or (isinstance(node, ast.Attribute) and node.attr == cls)
                     or (isinstance(node, ast.alias) and node.name == cls))
            if named:
                bad.append(f"{name}:{getattr(node, 'lineno', '?')}")
    assert not bad, f"{cls} is named outside {home}, tenax.app and tenax.testing: {', '.join(bad)}"


def test_packages_depend_one_way():
    bad = []
    for name, deps in tenax_graph().items():
        mine = layer(name)
        if mine is None:
            continue
        for dep in deps:
            theirs = layer(dep)
            if theirs is not None and theirs < mine:
                bad.append(f"{name} imports {dep} (a layer above it)")
    assert not bad, "\n".join(sorted(bad))
