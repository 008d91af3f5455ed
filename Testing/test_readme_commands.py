"""README's command blocks run as written, typed into one terminal (issues 18, 21).

Every shell block of README carries a tag on the line before it (README section 10, "README
conventions"): ``<!-- test: run -->`` (optionally ``slow`` and ``creates=PATH,...``) or
``<!-- test: skip (reason) -->``. Here the fast ``run`` blocks from section 2 on run in README order
in one :class:`readme_testlib.Terminal`, starting in this checkout as a user who has run the set-up
(so section 2's first block activates ``.venv`` and moves to ``~/hntumorseg-try``), with ``HOME``
a temporary folder, ``.venv`` not on PATH before that activation, and one CPU thread. A block fails
when it exits non-zero, prints a Python traceback, or leaves out a file its tag ``creates``.
The slow blocks and the "Two commands" block run in ``test_readme_fresh_clone.py`` (slow, CI),
from a fresh clone.

Example:
    $ .venv/bin/python -m pytest -q -p no:cacheprovider Testing/test_readme_commands.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_testlib as rt  # noqa: E402

TEXT = rt.README_PATH.read_text(encoding="utf-8")
BLOCKS = rt.shell_blocks(TEXT)
RUN_BLOCKS = rt.run_blocks(TEXT)
#: What this checkout's default run types: the fast blocks after "Two commands" (its set-up has run).
TERMINAL_BLOCKS = [(b, t) for b, t in RUN_BLOCKS if b.section is not None and not t.slow]


def _block_id(block: rt.Fence) -> str:
    words = re.sub(r"[^A-Za-z0-9_-]+", "-", " ".join(block.first_line.split()[:3])).strip("-")
    return f"L{block.line}-{words}"[:60]


@pytest.fixture(scope="module")
def terminal(tmp_path_factory) -> rt.Terminal:
    if not (rt.REPO_ROOT / ".venv" / "bin" / "activate").exists():
        pytest.skip("this checkout has no .venv (README's `bash scripts/setup.sh` makes it); "
                    "README section 2 starts by activating it")
    home = tmp_path_factory.mktemp("readme-home")
    return rt.Terminal(rt.REPO_ROOT, rt.newcomer_env(home), tmp_path_factory.mktemp("readme-state"))


def test_sections_have_shell_blocks():
    """The reader finds README's blocks (a reader that found none would let every check pass)."""
    assert len(BLOCKS) >= 20 and len(RUN_BLOCKS) >= 10, (len(BLOCKS), len(RUN_BLOCKS))
    assert {b.section for b, _ in RUN_BLOCKS} >= {None, 2, 3, 4, 8}


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


def test_section_2_starts_in_a_scratch_folder_with_the_environment_active():
    """A newcomer's terminal has no ``hntumorseg`` (exit 127) and the checkout must stay clean:
    section 2's first block activates ``.venv`` and leaves the repository before any example."""
    first = next(b for b, _ in RUN_BLOCKS if b.section == 2)
    assert "source .venv/bin/activate" in first.body and "cd ~/" in first.body, first.body


@pytest.mark.parametrize("block", [pytest.param(b, id=_block_id(b)) for b, _ in TERMINAL_BLOCKS])
def test_readme_block_runs(block: rt.Fence, terminal: rt.Terminal):
    failure = terminal.run_in_order(TERMINAL_BLOCKS, upto=block, slow=False)
    assert failure is None, failure


def test_a_broken_block_fails(tmp_path):
    """The runner reports a command that stops working (a wrong path: exit 2), a missing output,
    and a command a newcomer's shell does not have before activation (exit 127)."""
    term = rt.Terminal(tmp_path, rt.newcomer_env(tmp_path), tmp_path / ".state")
    broken = rt.Fence("bash", 1, "hntumorseg evaluate --pred missing.nii.gz --ref missing.nii.gz", 3)
    assert "exit code 127" in term.run(broken, rt.Tag("run"))
    term.env["PATH"] = str(Path(sys.executable).parent) + ":" + term.env["PATH"]
    failure = term.run(broken, rt.Tag("run"))
    assert failure and "exit code 2" in failure and "missing.nii.gz" in failure
    quiet = rt.Fence("bash", 1, "true", 3)
    assert "no out.nii.gz" in term.run(quiet, rt.Tag("run", creates=["out.nii.gz"]))


def test_the_margin_is_stated_one_way():
    """docs/design.md's word "margin": the card's ``box_margin_vox`` at inference, seed 003's released
    4-7 voxels below / 3-6 above in training. README and the Slicer tooltip say the same (issue 21:
    README said "a random 2-6 voxel margin" for training, the tooltip "3 voxel margin")."""
    from HNTumorSegLib.models.card import DEFAULT_BOX_MARGIN_VOX

    design = (rt.REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    row = next(line for line in design.splitlines() if line.startswith("| margin |"))
    assert "box_margin_vox" in row and "4-7 below / 3-6 above" in row, row
    # 2-6 is the paper's figure: a paragraph may give it only beside the released draw it replaces
    wrong = [p.strip()[:160] for p in re.split(r"\n\s*\n", TEXT)
             if re.search(r"\b2-6\b", p) and not ("paper" in p and re.search(r"4[-\u2013]7", p))]
    assert not wrong, "README gives seed 003's training margin as 2-6:\n" + "\n".join(wrong)
    ui = (rt.REPO_ROOT / "HNTumorSeg" / "Resources" / "UI" / "HNTumorSeg.ui").read_text(encoding="utf-8")
    tip = re.search(r'name="boxesFromPriorButton".*?name="toolTip">\s*<string>(.*?)</string>', ui, re.S)[1]
    assert "box_margin_vox" in tip and f"{DEFAULT_BOX_MARGIN_VOX} voxels" in tip, tip


def test_tag_grammar():
    assert rt.parse_tag("<!-- test: run slow creates=a,b/c -->") == rt.Tag("run", True, ["a", "b/c"])
    assert rt.parse_tag("<!-- test: skip (needs a GPU) -->").reason == "needs a GPU"
    for wrong in ("<!-- test: skip -->", "<!-- test: run quick -->", "<!-- test: maybe -->"):
        with pytest.raises(ValueError):
            rt.parse_tag(wrong)
