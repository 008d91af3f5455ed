"""The import graph of HNTumorSegLib has no cycle (issue 10: imports point down only).

How the graph is made (read from the source with :mod:`ast`, nothing is imported):

* every ``import`` statement counts, at module level **and inside functions**: the package
  imports torch, nnunetv2 and heavy siblings lazily for start-up speed, and a lazy import is
  still a dependency; ``loader.py`` <-> ``nnunet_folder.py`` was a cycle made only of
  function-level imports. Imports under ``if TYPE_CHECKING:`` are left out (never run);
* relative imports are resolved inside the package; ``from .x import name`` points at the
  module ``x.name`` when that is a module, else at ``x``;
* importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but those edges are left
  out: a package ``__init__`` that re-exports its submodules would otherwise make every
  ``from . import sibling`` a cycle, and Python handles that case (the parent is already in
  ``sys.modules``). A cycle through an ``__init__`` that is *named* in an import counts.

Example:
    $ .venv/bin/python -m pytest -q Testing/test_import_graph.py
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "HNTumorSegLib"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for inner in node.body:
                    skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules ``name`` imports (module docstring for what counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    base_parts = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    target = alias.name
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target:
                        found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base_parts[:len(base_parts) - (node.level - 1)]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif mod in modules:
                    found.add(mod)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(comp)) for comp in components]


def _one_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A concrete path a -> ... -> a inside one strongly connected component (for the message)."""
    start = min(comp)
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                todo.append(w)
    return sorted(comp)


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert len(graph) > 50
    # module-level relative import, function-level import, and `from . import name`
    assert "HNTumorSegLib.models.card" in graph["HNTumorSegLib.models.loader"]
    assert "HNTumorSegLib.models.nnunet_folder" in graph["HNTumorSegLib.models.loader"]


def test_cycle_finder_finds_a_known_cycle():
    cycles = find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycles == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    message = "\n".join(" -> ".join(c) for c in cycles)
    print(message)
    assert not cycles, f"import cycle(s) in {PACKAGE}:\n{message}"
