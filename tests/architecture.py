"""The import graph of ``eekit/``, read with ``ast`` (no import runs): arrows, cycles, function-level imports.

Used by tests/test_architecture.py; also a script: ``python tests/architecture.py`` prints the figures.
Every ``import`` of an eekit module counts, wherever it sits (module level, inside a function, under
``if TYPE_CHECKING:``), so a cycle dodged by a late import is still a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "eekit"


@dataclass(frozen=True)
class Arrow:
    source: str  # importing module, e.g. "eekit.zoo.registry"
    target: str  # imported module (the most specific eekit module the statement names)
    line: int
    late: bool  # inside a function or class body (a function-level import)
    text: str  # the source line, for the "# why" comment check


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (``__init__.py`` is the package itself)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _is_package(module: str, files: dict[str, Path]) -> bool:
    return files[module].name == "__init__.py"


def arrows(files: dict[str, Path] | None = None) -> list[Arrow]:
    """Every import of an eekit module by an eekit module."""
    files = files or modules()
    known = set(files)
    found = []
    for module, path in files.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        base = module if _is_package(module, files) else module.rpartition(".")[0]
        late_nodes = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                         ast.ClassDef, ast.Lambda))
                      for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    stem = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from .pkg import sub` names a submodule; `from .pkg import func` names the package
                targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
            for name in targets:
                target = _resolve(name, known)
                if target and target != module:
                    found.append(Arrow(module, target, node.lineno, id(node) in late_nodes,
                                       lines[node.lineno - 1]))
    return found


def _node(module: str, files: dict[str, Path]) -> str:
    """Top-level node: ``eekit.x`` for a file of eekit/, ``eekit.pkg`` for anything inside a subpackage."""
    parts = module.split(".")
    return ".".join(parts[:2])


def graph(found: list[Arrow], collapse: bool = False, files: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Adjacency sets; ``collapse``: subpackages as one node each (arrows inside one subpackage dropped)."""
    files = files or modules()
    edges: dict[str, set[str]] = {}
    for a in found:
        s, t = (_node(a.source, files), _node(a.target, files)) if collapse else (a.source, a.target)
        if s != t and s != "eekit" and t != "eekit":  # eekit/__init__ re-exports; it is the package's front door
            edges.setdefault(s, set()).add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted: the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    nodes = set(edges) | {t for ts in edges.values() for t in ts}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def figures() -> dict:
    files = modules()
    found = arrows(files)
    file_edges = graph(found, files=files)
    return {
        "modules": len(files),
        "lines": sum(len(p.read_text().splitlines()) for p in files.values()),
        "import_arrows": sum(len(t) for t in file_edges.values()),
        "file_cycles": cycles(file_edges),
        "package_cycles": cycles(graph(found, collapse=True, files=files)),
        "function_level_imports": len({(a.source, a.line) for a in found if a.late}),
    }


if __name__ == "__main__":
    for key, value in figures().items():
        print(f"{key:<24} {value}")
