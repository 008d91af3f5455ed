"""House rules around child processes, read from the source with :mod:`ast` (nothing is imported):

* only :mod:`HNTumorSegLib.childproc` starts processes (``subprocess.Popen`` / ``run`` /
  ``call`` / ``check_*``, ``os.system`` / ``popen`` / ``fork`` / ``exec*`` / ``spawn*``,
  ``multiprocessing``), so the environment, process group, kill of the tree and parent-death
  handling of every child are the same (issue 21: five launchers had grown three copies of the
  set-up). A call that must stay elsewhere - an external tool such as ``dciodvfy`` run once and
  waited for - goes into :data:`ALLOWED` with its reason;
* no module imports another module's private (``_underscore``) names, neither with
  ``from m import _x`` nor as ``m._x``: session/client.py and outcome/child_run.py did that with
  runner's helpers. :data:`KNOWN_PRIVATE` lists the cases that predate this test, each to be
  removed by whoever fixes it; a new one fails;
* :mod:`~HNTumorSegLib.childproc` stays in the ground layer (it imports only ground modules),
  and :mod:`~HNTumorSegLib.outcome.child_run` no longer imports the runner (an upward import
  against docs/design.md's layer map).
"""

from __future__ import annotations

import ast
from pathlib import Path

from test_import_graph import import_graph

REPO = Path(__file__).resolve().parents[1]
#: Source trees whose code runs as this project: the library and the Slicer module.
SOURCES = [REPO / "HNTumorSegLib", REPO / "HNTumorSeg"]
LAUNCHER = REPO / "HNTumorSegLib" / "childproc.py"
#: (file relative to the repository, called function) -> why it may start a process itself.
ALLOWED: dict[tuple[str, str], str] = {}
#: Private imports that predate this test (file, imported module, name): fix, then delete the line.
KNOWN_PRIVATE = {
    ("HNTumorSegLib/models/hub.py", ".download", "fmt_bytes"),
    ("HNTumorSegLib/outlock.py", ".fileio", "_pid_alive"),
    ("HNTumorSegLib/pipeline/refine.py", ".run", "_Stages"),
    ("HNTumorSegLib/pipeline/refine.py", ".run", "_volumes_ml"),
}
STARTERS = {
    "subprocess": {"Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"},
    "os": {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "execl",
           "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
           "spawnv", "spawnve", "spawnvp", "spawnvpe"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
}
GROUND = {"HNTumorSegLib.errors", "HNTumorSegLib.vocab", "HNTumorSegLib.protocol",
          "HNTumorSegLib.parent_watch"}   # childproc's own child side, split out (re-exported)


def _sources() -> list[Path]:
    return sorted(p for root in SOURCES for p in root.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def process_starts(path: Path) -> list[tuple[int, str]]:
    """(line, ``module.function``) of every call in ``path`` that starts a process."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases: dict[str, str] = {}   # local name -> "module.function" (from subprocess import Popen as P)
    modules: dict[str, str] = {}   # local name -> module (import subprocess as sp)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in STARTERS:
                    modules[a.asname or a.name] = a.name
                if a.name.split(".")[0] == "multiprocessing":
                    found.append((node.lineno, f"import {a.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "multiprocessing":
                found.append((node.lineno, f"from {node.module} import ..."))
            for a in node.names:
                if a.name in STARTERS.get(node.module, ()):
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            module = modules.get(func.value.id)
            if module and func.attr in STARTERS[module]:
                found.append((node.lineno, f"{module}.{func.attr}"))
        elif isinstance(func, ast.Name) and func.id in aliases:
            found.append((node.lineno, aliases[func.id]))
    return found


def _private(name: str) -> bool:
    """``_x`` but not ``__dunder__`` nor ``_`` (the translation function of Slicer's Qt convention)."""
    return name.startswith("_") and not name.startswith("__") and name != "_"


def private_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module as written, name) of every private name of a package module used by ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    ours: set[str] = set()   # local names bound to package modules
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if not node.level and not module.startswith("HNTumorSeg"):
                continue
            for a in node.names:
                if _private(a.name):
                    found.append((node.lineno, module, a.name))
                else:
                    ours.add(a.asname or a.name)   # may be a module (from . import worker): checked below
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("HNTumorSeg"):
                    ours.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                and _private(node.attr)):
            found.append((node.lineno, node.value.id, node.attr))
    return found


def test_only_childproc_starts_processes():
    offenders = [f"{_rel(path)}:{line}: {call}" for path in _sources() if path != LAUNCHER
                 for line, call in process_starts(path) if (_rel(path), call) not in ALLOWED]
    assert offenders == [], "start children through HNTumorSegLib.childproc (or add to ALLOWED with a reason):\n" + \
        "\n".join(offenders)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    # the rule is only as good as its scan: each way of starting a process is seen
    sample = tmp_path / "sample.py"
    sample.write_text("import subprocess as sp, os\nfrom subprocess import run as go\nimport multiprocessing\n"
                      "sp.Popen(['x'])\ngo(['y'])\nos.system('z')\nos.execv('a', [])\n")
    assert [call for _, call in process_starts(sample)] == ["import multiprocessing", "subprocess.Popen",
                                                             "subprocess.run", "os.system", "os.execv"]
    assert any(call.startswith("subprocess.") for _, call in process_starts(LAUNCHER))


def test_no_module_uses_another_modules_private_names():
    found = {(_rel(path), module, name): line for path in _sources() for line, module, name in private_imports(path)}
    new = sorted(f"{path}:{line}: {module} {name}" for (path, module, name), line in found.items()
                 if (path, module, name) not in KNOWN_PRIVATE)
    assert new == [], "make it public (no underscore) where it is defined, or move it:\n" + "\n".join(new)


def test_the_private_scan_sees_both_spellings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from ..runner import _kill_tree, WorkerRun\nfrom .. import worker\nworker._watch_parent(1)\n"
                      "import json\njson._default_decoder\n")
    assert [(m, n) for _, m, n in private_imports(sample)] == [("..runner", "_kill_tree"), ("worker", "_watch_parent")]


def test_childproc_is_ground_and_child_run_does_not_import_the_runner():
    graph = import_graph()
    assert graph["HNTumorSegLib.childproc"] <= GROUND, graph["HNTumorSegLib.childproc"]
    assert graph["HNTumorSegLib.parent_watch"] <= GROUND - {"HNTumorSegLib.parent_watch"}, \
        graph["HNTumorSegLib.parent_watch"]
    assert not graph["HNTumorSegLib.outcome.child_run"] & {"HNTumorSegLib.runner", "HNTumorSegLib.worker",
                                                            "HNTumorSegLib.session"}
    launchers = ["runner", "session.client", "outcome.child_run", "scene.model_install", "scene.run_estimate"]
    assert all("HNTumorSegLib.childproc" in graph[f"HNTumorSegLib.{m}"] for m in launchers)
