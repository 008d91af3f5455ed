"""The self-test inside an installed Slicer finds every file it needs (issue 26, item 3).

HNTumorSeg/CMakeLists.txt copies a chosen set of Testing/ files beside the module
(``HNTumorSegTesting``); the self-test (``HNTumorSeg/HNTumorSegSlicer/selftest.py``) runs them
with pytest there. Once ``dicom_testlib.py`` was missing from the copy list, so two copied tests
failed to import in every installed Slicer. These tests read the copy list the way CMake does
(its ``file(GLOB ...)`` patterns, expanded over Testing/), parse every copied file's imports
(``ast``, function-level imports included), and fail on an imported Testing/ module left out;
also that the self-test runs the same globs as CMake copies, and gets pytest through the installer.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTING = ROOT / "Testing"
CMAKE = ROOT / "HNTumorSeg" / "CMakeLists.txt"
SELFTEST = ROOT / "HNTumorSeg" / "HNTumorSegSlicer" / "selftest.py"


def cmake_test_patterns(text: str) -> list[str]:
    """The patterns of ``file(GLOB HNTumorSeg_TESTS RELATIVE ${_lib_root}/Testing ...)``, relative to Testing/."""
    match = re.search(r"file\(GLOB\s+HNTumorSeg_TESTS\s+RELATIVE\s+\S+(?P<body>[^)]*)\)", text)
    assert match, "HNTumorSeg/CMakeLists.txt has no file(GLOB HNTumorSeg_TESTS ...) copy list"
    patterns = re.findall(r"\$\{_lib_root\}/Testing/(\S+)", match.group("body"))
    assert patterns, "the copy list names no Testing/ file"
    return patterns


def copied_files(patterns: list[str]) -> set[str]:
    names = [p.name for p in TESTING.iterdir() if p.is_file()]
    return {n for n in names for pat in patterns if fnmatch.fnmatchcase(n, pat)}


def imported_names(path: Path) -> set[str]:
    """Top-level module names ``path`` imports anywhere (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def missing_from_copy(patterns: list[str]) -> dict[str, set[str]]:
    """{copied file: the Testing/ modules it imports that CMake does not copy}, following helpers' imports too."""
    copied = copied_files(patterns)
    local = {p.stem for p in TESTING.glob("*.py")}
    missing: dict[str, set[str]] = {}
    todo, seen = sorted(copied), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for module in sorted(imported_names(TESTING / name) & local):
            if f"{module}.py" not in copied:
                missing.setdefault(name, set()).add(f"{module}.py")
            todo.append(f"{module}.py")
    return missing


def test_every_module_the_copied_tests_import_is_copied():
    patterns = cmake_test_patterns(CMAKE.read_text(encoding="utf-8"))
    copied = copied_files(patterns)
    assert {"conftest.py", "test_sample_data.py"} <= copied and any(n.startswith("test_scene") for n in copied)
    missing = missing_from_copy(patterns)
    assert not missing, ("HNTumorSeg/CMakeLists.txt does not copy what these copied tests import (add the files "
                         f"to the HNTumorSeg_TESTS glob): {missing}")


def test_the_check_finds_a_missing_helper():
    """The checker itself: without dicom_testlib.py in the list, the tests that import it are named."""
    patterns = [p for p in cmake_test_patterns(CMAKE.read_text(encoding="utf-8")) if p != "dicom_testlib.py"]
    missing = missing_from_copy(patterns)
    users = {f for f, mods in missing.items() if "dicom_testlib.py" in mods}
    assert users and all(f.startswith(("test_scene", "test_export", "conftest")) for f in users), missing


def _selftest_constant(name: str):
    tree = ast.parse(SELFTEST.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"selftest.py defines no {name}")


def test_selftest_runs_the_tests_cmake_copies():
    """The self-test's globs are the copy list's test globs (copied but never run, or run but not copied: fails)."""
    patterns = cmake_test_patterns(CMAKE.read_text(encoding="utf-8"))
    run = set(_selftest_constant("SELFTEST_PATTERNS"))
    copied_tests = {p for p in patterns if p.startswith("test_")}
    assert run == copied_tests


def test_selftest_gets_pytest_through_the_installer():
    """No pytest in Slicer: the installer installs it on request (one question, floors only, no torch)."""
    from HNTumorSegLib.install import SlicerHooks, ensure_dependencies, requirements_for

    asked, installed = [], []
    hooks = SlicerHooks(confirm=lambda message, details: asked.append(details) or True,
                        pip_install=installed.append, log=lambda line: None,
                        installed_version=lambda name: None if name in ("pytest", "torch") else "99")
    report = ensure_dependencies(hooks, requirements_for("selftest"), torch=False)
    assert report.installed == ["pytest>=7"] and asked == ["pytest>=7"]     # torch neither asked nor installed
    assert installed and installed[0].startswith('"pytest>=7"')
    source = SELFTEST.read_text(encoding="utf-8")
    assert 'requirements_for("selftest")' in source


@pytest.mark.parametrize("pattern", ["test_scene*.py", "test_export*.py"])
def test_globs_match_files(pattern):
    assert copied_files([pattern]), f"no Testing/ file matches {pattern}: the copy list is stale"
