"""Every ``>>>`` example in HNTumorSegLib's docstrings runs, and prints what it says (issue 21).

Docstring examples are documentation a reader copies; one that no longer runs misleads, so they
run here, in the default suite and in CI, with :mod:`doctest` (ELLIPSIS and NORMALIZE_WHITESPACE:
``...`` stands for the uninteresting part of long output). Each module's examples run in an empty
temporary folder as the working directory, and with that folder's ``tmp`` as the temp folder
(``tempfile.tempdir`` and ``TMPDIR`` for the processes an example starts), so an example that writes
files or makes a ``tempfile.mkdtemp()`` folder leaves nothing behind (three server examples' folders
stayed in the temp folder after every run of the suite).

Modules whose examples do not run yet are listed in :data:`NOT_YET_RUNNABLE`, a baseline that only
shrinks: their test is an expected failure marked *strict*, so the day a module's examples run, its
test fails with XPASS until the module is taken off the list; a module not on the list whose
example fails, fails. Rewrite a failing example to be small and runnable (build a tiny image with
numpy, use a phantom, a bundled demo model) rather than deleting it.

Example:
    $ .venv/bin/python -m pytest -q Testing/test_doctests.py
"""

from __future__ import annotations

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

PACKAGE = "HNTumorSegLib"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: Modules (relative to the package) whose examples do not run yet. Only ever remove names.
NOT_YET_RUNNABLE: frozenset[str] = frozenset()


def modules_with_examples() -> list[str]:
    """Dotted names of the package's modules whose source holds a ``>>>`` example."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def run_examples(name: str) -> tuple[int, int, int, str]:
    """(failed, attempted, skipped, doctest's report) for the docstring examples of module ``name``.

    ``skipped`` counts examples marked ``# doctest: +SKIP``: they never run, so they count
    against the module like a failure (rewrite them to run instead).
    """
    module = importlib.import_module(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    skipped = 0
    for test in doctest.DocTestFinder().find(module, name):
        skipped += sum(1 for example in test.examples if example.options.get(doctest.SKIP))
        if test.examples:
            runner.run(test, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    return failed, attempted, skipped, "".join(report)   # doctest counts a skipped example as not tried


def _param(name: str):
    short = name[len(PACKAGE) + 1:] if name != PACKAGE else name
    marks = [pytest.mark.xfail(strict=True, reason="on NOT_YET_RUNNABLE: its examples do not run yet")] \
        if short in NOT_YET_RUNNABLE else []
    return pytest.param(name, id=short, marks=marks)


def test_the_baseline_names_only_modules_with_examples():
    names = {n[len(PACKAGE) + 1:] if n != PACKAGE else n for n in modules_with_examples()}
    stale = sorted(NOT_YET_RUNNABLE - names)
    assert not stale, f"NOT_YET_RUNNABLE names modules without examples (take them off): {stale}"


def test_a_wrong_example_is_caught(tmp_path, monkeypatch):
    """The runner reports a failing example (so a passing module means its examples really ran)."""
    (tmp_path / "doctest_probe_mod.py").write_text('"""\n>>> 1 + 1\n3\n"""\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    failed, attempted, skipped, report = run_examples("doctest_probe_mod")
    assert (failed, attempted, skipped) == (1, 1, 0) and "Expected:" in report
    (tmp_path / "doctest_probe_skip.py").write_text('"""\n>>> 1 + 1  # doctest: +SKIP\n3\n"""\n', encoding="utf-8")
    assert run_examples("doctest_probe_skip")[:3] == (0, 0, 1)


@pytest.mark.parametrize("name", [_param(n) for n in modules_with_examples()])
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    failed, attempted, skipped, report = run_examples(name)
    assert not skipped, f"{skipped} docstring example(s) of {name} are marked +SKIP: make them run"
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} docstring example(s) of {name} fail:\n{report}"
