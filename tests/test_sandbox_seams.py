"""The sandbox package's seams: no import circle, and the toolbox knows only the Sandbox Protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import tenax.sandbox

PKG = Path(tenax.sandbox.__file__).parent


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_import_circle_inside_the_sandbox_package():
    graph = {f"tenax.sandbox.{p.stem}": {m for m in _imports(p) if m.startswith("tenax.sandbox.")}
             for p in PKG.glob("*.py") if p.stem != "__init__"}

    def reach(start: str, seen: set[str]) -> set[str]:
        for nxt in graph.get(start, ()):
            if nxt not in seen:
                seen.add(nxt)
                reach(nxt, seen)
        return seen

    circles = [m for m in graph if m in reach(m, set())]
    assert circles == [], f"import circle through {circles}"


def test_toolbox_names_no_concrete_sandbox():
    source = (PKG / "tools.py").read_text(encoding="utf-8")
    assert "DockerSandbox" not in source and "isinstance(self.sandbox" not in source
    assert "tenax.core.protocols" in _imports(PKG / "tools.py")
