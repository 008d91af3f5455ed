"""The import graph of HNTumorSegLib has no cycle (issue 10) and follows the layer map (issue 21).

The layer map is read from docs/design.md itself ("Inner map of HNTumorSegLib": one bullet per
layer, ground first, each module or package named in backticks, ``name/`` for a package), so
the document and this test cannot drift apart: a module may import only from its own layer or
from one below, every module of the package must have a place on the map, and every name on
the map must be a module.

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
import re
from pathlib import Path

PACKAGE = "HNTumorSegLib"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
DESIGN = ROOT.parent / "docs" / "design.md"
MAP_HEADING = "### Inner map of HNTumorSegLib"


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


# ---- the layer order of docs/design.md ----------------------------------------------------------

def parse_layers(text: str) -> list[tuple[str, list[str]]]:
    """``[(layer name, [module names])]`` from the design's inner map, ground (lowest) first.

    The map is the first bullet list under :data:`MAP_HEADING` (prose may come before it); a
    bullet may run on over indented lines. The names are the backticked words (``image``, ``networks/``, ``__init__`` for the
    package's own ``__init__``); the layer's name is the bullet's text before its first colon when
    that comes before the first name ("ground: ..."), else its first name.
    """
    if MAP_HEADING not in text:
        raise AssertionError(f"docs/design.md has no heading {MAP_HEADING!r}: the layer test reads the map there")
    bullets: list[str] = []
    for line in text.split(MAP_HEADING, 1)[1].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("- "):
            bullets.append(line[2:])
        elif bullets and line.startswith("  ") and line.strip():
            bullets[-1] += " " + line.strip()
        elif bullets:
            break
    layers = []
    for bullet in bullets:
        names = re.findall(r"`([^`]+)`", bullet)
        head, colon, _ = bullet.partition(":")
        label = head.strip() if colon and "`" not in head else (names[0] if names else bullet)
        layers.append((label, names))
    return layers


def _matches(module: str, name: str) -> bool:
    rel = module[len(PACKAGE) + 1:] if module.startswith(PACKAGE + ".") else ""
    key = name.rstrip("/").replace("/", ".")
    if key == "__init__":
        return module == PACKAGE
    return rel == key or rel.startswith(key + ".")


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """The index (0 = ground) of the layer naming ``module`` or a package holding it; None if none does."""
    for i, (_, names) in enumerate(layers):
        if any(_matches(module, name) for name in names):
            return i
    return None


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, list[str]]]) -> list[str]:
    """One line per import that points to a higher layer: ``a (layer) -> b (higher layer)``."""
    out = []
    for module in sorted(graph):
        here = layer_of(module, layers)
        for target in sorted(graph[module]):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                out.append(f"{module} ({layers[here][0]}) -> {target} ({layers[there][0]})")
    return out


def design_layers() -> list[tuple[str, list[str]]]:
    return parse_layers(DESIGN.read_text(encoding="utf-8"))


def test_layer_parser_reads_bullets_names_and_labels():
    text = (f"intro\n\n{MAP_HEADING} (down only)\n\nprose `not_a_layer`\n\n- ground: `errors`, `vocab` (words),\n"
            "  `networks/`\n- `pipeline/` (one task), `outcome/`\n- `cli` at the top.\n\nafter `not_a_layer`\n")
    layers = parse_layers(text)
    assert layers == [("ground", ["errors", "vocab", "networks/"]), ("pipeline/", ["pipeline/", "outcome/"]),
                      ("cli", ["cli"])]
    assert layer_of(f"{PACKAGE}.networks.nnunet", layers) == 0
    assert layer_of(f"{PACKAGE}.cli", layers) == 2
    assert layer_of(f"{PACKAGE}.clinical", layers) is None     # a prefix of a name is not that name
    graph = {f"{PACKAGE}.errors": {f"{PACKAGE}.pipeline.run"}, f"{PACKAGE}.cli": {f"{PACKAGE}.errors"}}
    assert upward_imports(graph, layers) == [f"{PACKAGE}.errors (ground) -> {PACKAGE}.pipeline.run (pipeline/)"]


def test_design_map_puts_the_shared_low_modules_in_the_ground_layer():
    """What everything uses sits on the ground: the child-process launcher (runner, session, outcome
    and scene all start children through it) beside the worker protocol, and the package's own
    ``__init__`` (the label numbers)."""
    layers = design_layers()
    assert layers[0][0] == "ground"
    for module in ("errors", "vocab", "protocol", "protect", "childproc", "__init__"):
        assert module in layers[0][1], f"docs/design.md's inner map should list `{module}` in the ground layer"


def test_every_module_has_a_place_on_the_design_map():
    layers = design_layers()
    graph = import_graph()
    unplaced = [m for m in sorted(graph) if layer_of(m, layers) is None]
    assert not unplaced, ("module(s) not on docs/design.md's inner map of HNTumorSegLib - add each to "
                          "the lowest layer its imports allow:\n" + "\n".join(unplaced))
    unknown = [name for _, names in layers for name in names
               if not any(_matches(m, name) for m in graph)]
    assert not unknown, f"docs/design.md's inner map names what is no module of {PACKAGE}: {unknown}"


def test_imports_follow_the_design_layer_order():
    """A module imports only from its own layer or below (function-level imports count)."""
    upward = upward_imports(import_graph(), design_layers())
    assert not upward, ("import(s) pointing UP docs/design.md's inner map of HNTumorSegLib (move the shared "
                        "piece down, invert the dependency, or redraw the map with a reason):\n"
                        + "\n".join(upward))
