"""Shared pytest fixtures and the suite's one rule for missing tools: skip locally, FAIL in CI.

Kept deliberately small: only fixtures that several engineers' tests share live here.
``HNTUMORSEG_TEST_CACHE`` overrides the cache location (default ``<repo>/build/test-cache``).

Missing packages and tools (house rule: "a test whose tool is missing fails in CI"): a test
asks with :func:`require_module` / :func:`require_tool` (or :func:`unavailable` for any other
condition). On a developer's machine that is a skip, with the reason; with ``CI=true`` (set by
``.ci/run``) it is a failure, because CI installs requirements*.txt and the Debian tools, so a
CI run can never pass with a test that did not run. As a safety net the hooks below turn *any*
skip under ``CI=true`` (``pytest.importorskip``, ``skipif`` marks, ``pytest.skip``) into a
failure, unless its reason starts with one of :data:`CI_ALLOWED_SKIPS`: conditions no
installation on the CI machine can meet.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

TESTING = Path(__file__).resolve().parent
if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))

IN_CI = os.environ.get("CI", "").lower() == "true"
# Worker logs and crash reports of the runs tests kill on purpose go under test-artifacts/, not into
# the user's ~/.cache/hntumorseg/logs (set before any test starts a child, so children inherit it).
os.environ.setdefault("HNTUMORSEG_LOG_DIR", str(TESTING.parent / "test-artifacts" / "worker-logs"))
# reasons (prefixes) a CI run may still skip for: the CI machine has no GPU
CI_ALLOWED_SKIPS = ("needs a GPU",)
REQUIREMENTS_HINT = "pip install -r requirements.txt -r requirements-test.txt"


def unavailable(reason: str) -> NoReturn:
    """Skip the test (or the module, at import time) locally; fail it when ``CI=true``."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a test whose tool is missing fails, it does not skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, hint: str = REQUIREMENTS_HINT) -> ModuleType:
    """``import name`` and return it; when it cannot be imported, :func:`unavailable`.

    Use instead of ``pytest.importorskip``, which skips silently in CI too.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        problem = str(exc)
    unavailable(f"{name} is not installed ({problem}; {hint})")


def require_tool(name: str, hint: str) -> str:
    """The path of executable ``name`` (also looked up beside the Python in use), else :func:`unavailable`.

    ``hint`` says how to install it (e.g. "Debian: apt-get install dicom3tools").
    """
    beside = Path(sys.executable).parent / name
    path = shutil.which(name) or (str(beside) if beside.exists() else None)
    if path:
        return path
    unavailable(f"{name} is not installed ({hint})")


def still_running(pids, wait_s: float = 30.0) -> list[int]:
    """The processes of ``pids`` still running (a zombie counts as ended) once all ended or
    ``wait_s`` passed: a loaded machine may take a while to let a killed process go, an idle one
    returns at once. Tests assert ``still_running(tree) == []`` after ending a process tree."""
    import time

    import psutil

    t_end = time.monotonic() + wait_s
    while True:
        out = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not out or time.monotonic() > t_end:
            return out
        time.sleep(0.05)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_skips_in_ci(report) -> None:
    """Under ``CI=true`` a skipped test or module becomes a failure unless its reason is allowed."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not reason.startswith(CI_ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true, which must not skip (a test whose tool is missing "
                           f"fails in CI; allowed: {CI_ALLOWED_SKIPS}): {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_skips_in_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _fail_skips_in_ci(report)
    return report


@pytest.fixture(scope="session")
def test_cache_dir() -> Path:
    """A folder kept between test runs for slow-to-build data (never inside the source tree proper)."""
    path = Path(os.environ.get("HNTUMORSEG_TEST_CACHE") or TESTING.parent / "build" / "test-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_nnunet_results(test_cache_dir: Path) -> Path:
    """A real nnU-Net v2 results folder (2 folds, CT+PET, tiny PlainConvUNet) built once with nnunetv2.

    See Testing/nnunet_fixture.py; ``tiny_nnunet_test_cases(folder)`` gives its held-out cases.
    """
    from nnunet_fixture import build_tiny_nnunet_results

    return build_tiny_nnunet_results(test_cache_dir)


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (the 2-core CI machine runs other work beside it),
    restoring the setting afterwards. Use as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ended_logics():
    """Scene logics to end after the test (``cancel``: a result never imported goes with its folder,
    as when the module closes): append each ``SegmentationSceneLogic`` a test makes."""
    logics: list = []
    yield logics
    for logic in logics:
        logic.cancel()
