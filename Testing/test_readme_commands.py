"""README's command blocks of sections 2-4 run as written (issue 18).

Every shell block in sections 2 ("Command line"), 3 ("Scoring") and 4 ("Cohorts") carries a tag on
the line before it (README section 10, "README conventions"): ``<!-- test: run -->`` (optionally
``slow`` and ``creates=PATH,...``) or ``<!-- test: skip (reason) -->``. The ``run`` blocks run here,
as a new user would type them, with bash in one scratch folder, in README order (a block may use
what an earlier one wrote, e.g. the demo's ``hntumorseg-demo/inputs/``), with this environment's
``hntumorseg`` and ``python`` first on PATH, the model cache inside the scratch folder and one CPU
thread. A block fails when it exits non-zero, prints a Python traceback, or leaves out a file its
tag says it ``creates``. Blocks tagged ``slow`` (PET/CT demo, cohorts) only run without
``-m "not slow"``; a fast block never depends on a slow one.

Example:
    $ .venv/bin/python -m pytest -q -p no:cacheprovider Testing/test_readme_commands.py -m "not slow"
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_testlib as rt  # noqa: E402

SECTIONS = (2, 3, 4)
BLOCK_TIMEOUT_S = 1200  # a loaded 2-core machine: the slow PET/CT blocks take minutes there


def _shell_blocks() -> list[rt.Fence]:
    text = rt.README_PATH.read_text(encoding="utf-8")
    return [f for f in rt.read_fences(text) if f.section in SECTIONS and f.lang in rt.SHELL_LANGS]


BLOCKS = _shell_blocks()


def _tag(block: rt.Fence) -> rt.Tag | None:
    try:
        return rt.parse_tag(block.tag) if block.tag else None
    except ValueError:
        return None


RUN_BLOCKS = [b for b in BLOCKS if (t := _tag(b)) is not None and t.kind == "run"]


def _block_id(block: rt.Fence) -> str:
    words = re.sub(r"[^A-Za-z0-9_-]+", "-", " ".join(block.first_line.split()[:3])).strip("-")
    return f"L{block.line}-{words}"[:60]


@dataclass
class Scratch:
    """The user's folder: blocks run here in README order; ``results`` keeps each block's outcome."""

    folder: Path
    results: dict[int, str | None] = field(default_factory=dict)  # line -> None (ok) or what failed

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env["HNTUMORSEG_CACHE"] = str(self.folder / ".cache" / "hntumorseg")
        env["OMP_NUM_THREADS"] = "1"
        env.pop("HNTUMORSEG_CATALOGUE", None)
        env.pop("PYTHONPATH", None)  # the installed package, as a user has it
        return env

    def run(self, block: rt.Fence, tag: rt.Tag) -> str | None:
        """Run one block; None when it worked, else one paragraph saying what went wrong."""
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.body], cwd=self.folder, env=self.env(),
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        problems = []
        if proc.returncode != 0:
            problems.append(f"exit code {proc.returncode}")
        if "Traceback (most recent call last)" in proc.stderr + proc.stdout:
            problems.append("a Python traceback")
        problems += [f"no {path}" for path in tag.creates if not (self.folder / path).exists()]
        if not problems:
            return None
        return (f"README line {block.line} block failed ({', '.join(problems)}):\n{block.body}\n"
                f"--- stdout (end):\n{proc.stdout[-2000:]}\n--- stderr (end):\n{proc.stderr[-3000:]}")

    def run_through(self, block: rt.Fence) -> str | None:
        """Run every earlier ``run`` block this one may need (fast ones only for a fast block), then it."""
        tag = _tag(block)
        for earlier in RUN_BLOCKS:
            if earlier.line >= block.line:
                break
            earlier_tag = _tag(earlier)
            if earlier_tag.slow and not tag.slow:
                continue
            if earlier.line not in self.results:
                self.results[earlier.line] = self.run(earlier, earlier_tag)
            if self.results[earlier.line]:
                return f"an earlier block it builds on failed: {self.results[earlier.line]}"
        if block.line not in self.results:
            self.results[block.line] = self.run(block, tag)
        return self.results[block.line]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Scratch:
    return Scratch(tmp_path_factory.mktemp("readme-user"))


def test_sections_have_shell_blocks():
    """The reader finds README's blocks (a reader that found none would let every check pass)."""
    assert len(BLOCKS) >= 8 and len(RUN_BLOCKS) >= 5, (len(BLOCKS), len(RUN_BLOCKS))
    assert {b.section for b in RUN_BLOCKS} == set(SECTIONS)


def test_every_shell_block_is_tagged():
    bad = []
    for b in BLOCKS:
        if not b.tag:
            bad.append(f"README line {b.line}: untagged shell block ({b.first_line[:70]}) - put "
                       "`<!-- test: run -->` or `<!-- test: skip (why) -->` on the line before it")
            continue
        try:
            rt.parse_tag(b.tag)
        except ValueError as exc:
            bad.append(f"README line {b.line}: {exc}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=_block_id(b), marks=[pytest.mark.slow] if _tag(b).slow else []) for b in RUN_BLOCKS])
def test_readme_block_runs(block: rt.Fence, scratch: Scratch):
    failure = scratch.run_through(block)
    assert failure is None, failure


def test_a_broken_block_fails(tmp_path):
    """The runner reports a command that stops working: a wrong path (exit 2), a missing output."""
    scratch = Scratch(tmp_path)
    broken = rt.Fence("bash", 1, "hntumorseg evaluate --pred missing.nii.gz --ref missing.nii.gz", 3)
    failure = scratch.run(broken, rt.Tag("run"))
    assert failure and "exit code 2" in failure and "missing.nii.gz" in failure
    quiet = rt.Fence("bash", 1, "true", 3)
    assert "no out.nii.gz" in scratch.run(quiet, rt.Tag("run", creates=["out.nii.gz"]))


def test_tag_grammar():
    assert rt.parse_tag("<!-- test: run slow creates=a,b/c -->") == rt.Tag("run", True, ["a", "b/c"])
    assert rt.parse_tag("<!-- test: skip (needs a GPU) -->").reason == "needs a GPU"
    for wrong in ("<!-- test: skip -->", "<!-- test: run quick -->", "<!-- test: maybe -->"):
        with pytest.raises(ValueError):
            rt.parse_tag(wrong)
