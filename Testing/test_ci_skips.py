"""With ``CI=true`` nothing may skip silently (issue 21; house rule: a test whose tool is missing fails in CI).

Runs a small probe suite with this suite's own conftest.py in a child pytest, once as a developer
(missing things skip, with their reason) and once as CI (the same tests fail: ``require_module``,
``require_tool``, ``pytest.importorskip``, ``skipif`` marks, at test and at module level), except
for the allowed reasons (no GPU on the CI machine) and expected failures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
MISSING = "hntumorseg_no_such_module"

PROBES = {
    "test_probe_calls.py": f'''
import pytest
from conftest import require_module, require_tool, unavailable

def test_importorskip_missing():
    pytest.importorskip("{MISSING}")

def test_require_module_missing():
    require_module("{MISSING}")

def test_require_tool_missing():
    require_tool("hntumorseg-no-such-tool", "nowhere")

def test_unavailable_condition():
    unavailable("cannot mount a tmpfs; needs root")

@pytest.mark.skipif(True, reason="some optional thing is absent")
def test_skipif_mark():
    pass

@pytest.mark.skip(reason="needs a GPU (CUDA)")
def test_gpu_only():
    pass

def test_present_module_is_returned():
    assert require_module("json").dumps([]) == "[]"

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False
''',
    "test_probe_module_importorskip.py": f'import pytest\npytest.importorskip("{MISSING}")\n\ndef test_a():\n    pass\n',
    "test_probe_module_require.py": f'from conftest import require_module\nrequire_module("{MISSING}")\n\n'
                                    'def test_b():\n    pass\n',
}


def _outcomes(folder: Path, ci: bool) -> dict[str, str]:
    """{test or module name: passed / skipped / failed} of a child pytest run on ``folder``."""
    junit = folder / f"junit-{ci}.xml"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(folder),
                    "--continue-on-collection-errors", "--junitxml", str(junit), str(folder)], cwd=folder, env=env, capture_output=True,
                   text=True, timeout=300)
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name") or case.get("classname")
        kinds = {child.tag for child in case}
        out[name] = ("failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed")
    return out


@pytest.fixture(scope="module")
def probe_suite(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "conftest.py").write_text((TESTING / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")
    for name, text in PROBES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _by_probe(outcomes: dict[str, str]) -> dict[str, str]:
    """Module-level results are named after their module; test results after their test."""
    short = {}
    for name, outcome in outcomes.items():
        key = next((m for m in ("module_importorskip", "module_require") if m in name), name)
        short[key] = outcome
    return short


def test_a_developer_run_skips_what_is_missing(probe_suite):
    got = _by_probe(_outcomes(probe_suite, ci=False))
    for name in ("test_importorskip_missing", "test_require_module_missing", "test_require_tool_missing",
                 "test_unavailable_condition", "test_skipif_mark", "test_gpu_only", "test_expected_failure",
                 "module_importorskip", "module_require"):
        assert got[name] == "skipped", (name, got)
    assert got["test_present_module_is_returned"] == "passed"


def test_a_ci_run_fails_every_skip_but_the_allowed_ones(probe_suite):
    got = _by_probe(_outcomes(probe_suite, ci=True))
    for name in ("test_importorskip_missing", "test_require_module_missing", "test_require_tool_missing",
                 "test_unavailable_condition", "test_skipif_mark", "module_importorskip", "module_require"):
        assert got[name] == "failed", (name, got)
    assert got["test_gpu_only"] == "skipped" and got["test_expected_failure"] == "skipped"  # allowed; xfail
    assert got["test_present_module_is_returned"] == "passed"
