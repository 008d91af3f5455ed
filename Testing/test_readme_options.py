"""README and ``--help`` name the same options (issue 18).

Both directions, on the real argparse parsers (``HNTumorSegLib.cli.build_parser`` with every nested
subcommand, and the training CLI ``python -m hntumorseg_training``):

1. every option of every (sub)command's ``--help`` appears in README attributed to that command:
   in one of its command lines (shell block or inline code span) or in an
   ``<!-- options: COMMAND -->`` table/paragraph (README section 10, "README conventions");
2. every ``--option`` README attributes to a command exists in that command's parser, and every
   subcommand README calls exists;
3. every other ``--option`` README shows in inline code exists in some parser of ours (or belongs to
   a foreign command shown in README: nnU-Net, torchrun, pip).

Example:
    $ .venv/bin/python -m pytest -q -p no:cacheprovider Testing/test_readme_options.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_testlib as rt  # noqa: E402

#: Options README names in prose that belong to other tools' commands written inside Python code
#: (``pip_install('--no-index --find-links=...')``), with the reason they are not ours.
FOREIGN_PROSE_OPTIONS = {"--no-index": "pip (offline install hint)", "--find-links": "pip (offline install hint)",
                         "--disable_tta": "nnUNetv2_predict (what seed 002's released pipeline passes)"}


@pytest.fixture(scope="module")
def readme() -> str:
    return rt.README_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parsers():
    return rt.build_parsers()


@pytest.fixture(scope="module")
def commands(parsers):
    """{path: parser} for every program and nested subcommand."""
    return {path: p for program, parser in parsers.items() for path, p in rt.walk(parser, (program,))}


@pytest.fixture(scope="module")
def uses(readme, parsers):
    """(every attributed option use, problems found while reading README)."""
    found, problems = [], []
    ours, _ = rt.command_lines(readme)
    for c in ours:
        _, u, p = rt.resolve_command(parsers, c.words, c.program, c.line, c.text)
        found += u
        problems += p
    marker_uses, marker_problems = rt.marker_uses(readme)
    return found + marker_uses, problems + marker_problems


def test_readme_parsing_finds_commands_and_options(uses, commands):
    """The reader itself works: README's segment and batch options and the models subcommands are found
    (guards against a reader that silently finds nothing and lets every check pass)."""
    found, _ = uses
    by_path = {}
    for u in found:
        by_path.setdefault(u.path, set()).add(u.option)
    assert {"--model", "--input", "--output"} <= by_path.get(("hntumorseg", "segment"), set())
    assert ("hntumorseg", "models", "fetch") in commands and ("python -m hntumorseg_training", "splits") in commands
    assert len(found) > 100, len(found)


def test_every_help_option_is_in_readme(uses, commands):
    found, _ = uses
    attributed = {(u.path, u.option) for u in found}
    missing = [f"{' '.join(path)} {opt}" for path, parser in commands.items() for opt in rt.long_options(parser)
               if (path, opt) not in attributed]
    assert not missing, (
        "options in --help that README does not attribute to their command (add them to the command's "
        "`<!-- options: ... -->` table or paragraph, README section 10):\n  " + "\n  ".join(missing))


def test_every_readme_option_exists(uses, commands):
    found, problems = uses
    bad = list(problems)
    for u in found:
        parser = commands.get(u.path)
        if parser is None:
            bad.append(f"README line {u.line}: no command `{' '.join(u.path)}` ({u.how})")
        elif u.option not in parser._option_string_actions:
            bad.append(f"README line {u.line}: `{' '.join(u.path)}` has no option {u.option} (in: {u.how[:100]})")
    assert not bad, "README names options or commands the code does not have:\n  " + "\n  ".join(bad)


def test_prose_options_exist(readme, parsers):
    known = {o for parser in parsers.values() for _, p in rt.walk(parser, ()) for o in rt.long_options(p)} | {"--help"}
    _, foreign = rt.command_lines(readme)
    foreign_options = {w.split("=")[0] for words in foreign for w in words if w.startswith("--")}
    unknown = []
    for n, line in rt.prose_lines(readme):
        for span in rt.code_spans(line):
            ours, _ = rt.split_commands(span, n)
            if ours:
                continue  # checked against its own command above
            unknown += [f"README line {n}: {opt} in `{span}`" for opt in rt.options_in(span)
                        if opt not in known and opt not in foreign_options and opt not in FOREIGN_PROSE_OPTIONS]
    assert not unknown, "README names options no command of ours has:\n  " + "\n  ".join(unknown)


def test_checks_catch_a_wrong_readme(parsers):
    """The checks fail on a README with an unknown option, an unknown subcommand and a missing option."""
    text = ("```bash\nhntumorseg segment --model demo-midrt --frobnicate\nhntumorseg segmnt --x\n```\n"
            "<!-- options: hntumorseg demo -->\n| option | meaning |\n|---|---|\n| `--out DIR` | folder |\n")
    ours, _ = rt.command_lines(text)
    problems, found = [], []
    for c in ours:
        _, u, p = rt.resolve_command(parsers, c.words, c.program, c.line, c.text)
        found += u
        problems += p
    marker_uses, _ = rt.marker_uses(text)
    found += marker_uses
    assert any("segmnt" in p for p in problems)
    segment = dict(rt.walk(parsers["hntumorseg"], ("hntumorseg",)))[("hntumorseg", "segment")]
    assert any(u.option == "--frobnicate" and u.option not in segment._option_string_actions for u in found)
    demo_attributed = {u.option for u in found if u.path == ("hntumorseg", "demo")}
    assert demo_attributed == {"--out"}  # so --task, --seed ... of demo would be reported missing
