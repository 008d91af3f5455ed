"""mypy on HNTumorSegLib, held to a baseline that only shrinks (issue 21).

``mypy`` runs as a real child process with the configuration in ``pyproject.toml``
(``[tool.mypy]``) and a temporary cache (nothing lands in the repository). Its errors are
counted per file and compared with ``Testing/data/mypy_baseline.json``:

* a file with **more** errors than its count fails the test: fix the new errors (the message
  lists them);
* a file with **fewer** errors fails too, asking to lower the baseline, so a fix is never lost:
  run ``python Testing/test_typecheck.py --update``, which writes the new counts and refuses to
  raise any of them (raising one is a hand edit that a reviewer sees).

Why a per-file count and not the error lines: lines move with every edit; a count per file
moves only when errors appear or go. The baseline names the mypy version it was made with,
since another version finds other errors (pinned in ``requirements-test.txt``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "Testing" / "data" / "mypy_baseline.json"
ERROR_LINE = re.compile(r"^(?P<path>[^:\s]+\.py):\d+(?::\d+)?: error: ")
UPDATE = "python Testing/test_typecheck.py --update"


def mypy_version() -> str | None:
    try:
        from mypy.version import __version__
    except ImportError:
        return None
    return __version__


def run_mypy() -> tuple[Counter[str], list[str]]:
    """(errors per file, the error lines) of ``mypy`` as configured in pyproject.toml."""
    with tempfile.TemporaryDirectory(prefix="hntumorseg-mypy-") as cache:
        proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", cache, "--no-pretty",
                               "--no-error-summary"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):   # 2: mypy itself failed (bad configuration, crash)
        raise AssertionError(f"mypy failed (exit {proc.returncode}):\n{proc.stderr or proc.stdout}")
    lines = [line for line in proc.stdout.splitlines() if ERROR_LINE.match(line)]
    return Counter(ERROR_LINE.match(line)["path"] for line in lines), lines


def read_baseline() -> dict:
    return json.loads(BASELINE.read_text(encoding="utf-8"))


def compare(found: Counter[str], allowed: dict[str, int]) -> tuple[list[str], list[str]]:
    """(files over their count, files under it), each as ``path: found (baseline n)``."""
    over = [f"{p}: {n} (baseline {allowed.get(p, 0)})" for p, n in sorted(found.items()) if n > allowed.get(p, 0)]
    under = [f"{p}: {found.get(p, 0)} (baseline {n})" for p, n in sorted(allowed.items()) if found.get(p, 0) < n]
    return over, under


def test_mypy_errors_stay_within_the_baseline():
    version = mypy_version()
    assert version is not None, "mypy is not installed: pip install -r requirements-test.txt"
    baseline = read_baseline()
    assert version == baseline["mypy"], (f"the baseline was made with mypy {baseline['mypy']}, this is {version}: "
                                         "install the version pinned in requirements-test.txt")
    found, lines = run_mypy()
    over, under = compare(found, baseline["errors"])
    new = [line for line in lines if any(line.startswith(entry.split(":")[0] + ":") for entry in over)]
    assert not over, ("mypy finds more errors than the baseline allows in:\n  " + "\n  ".join(over)
                      + "\nfix them (run `mypy` from the repository root):\n  " + "\n  ".join(new))
    assert not under, ("fewer mypy errors than the baseline - well done; lower the baseline so they stay "
                       f"fixed: {UPDATE}\n  " + "\n  ".join(under))


def test_ratchet_on_the_committed_baseline():
    """The comparison itself, on the committed counts (no mypy run): one more error in a file fails,
    one fewer asks for a lower baseline, a file new to mypy's list counts from 0."""
    allowed = read_baseline()["errors"]
    assert allowed and all(isinstance(n, int) and n > 0 for n in allowed.values())
    path = sorted(allowed)[0]
    assert compare(Counter(allowed), allowed) == ([], [])
    assert compare(Counter(allowed) + Counter({path: 1}), allowed)[0] == [f"{path}: {allowed[path] + 1} "
                                                                        f"(baseline {allowed[path]})"]
    fewer = Counter(allowed)
    fewer[path] -= 1
    assert compare(fewer, allowed) == ([], [f"{path}: {allowed[path] - 1} (baseline {allowed[path]})"])
    assert compare(Counter(allowed) + Counter({"HNTumorSegLib/new.py": 1}), allowed)[0] == [
        "HNTumorSegLib/new.py: 1 (baseline 0)"]


def update() -> int:
    """Write the current counts; refuse when any file has more errors than its baseline."""
    found, _ = run_mypy()
    if BASELINE.is_file():
        over, _ = compare(found, read_baseline()["errors"])
        if over:
            print("not lowering: more errors than the baseline in\n  " + "\n  ".join(over), file=sys.stderr)
            return 1
    data = {"about": "mypy errors per file of HNTumorSegLib; may only shrink (Testing/test_typecheck.py)",
            "mypy": mypy_version(), "total": sum(found.values()), "errors": dict(sorted(found.items()))}
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"{BASELINE.relative_to(ROOT)}: {data['total']} errors in {len(found)} files")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(f"usage: {UPDATE}")
    sys.exit(update())
