"""Reading README.md the way its two tests need it: fenced blocks with their test tags, command
lines of our programs, and option blocks attributed to a command (README section 10, "README
conventions").

Why a parser of our own: the README is the user's manual, so the tests check it against the code
itself (argparse parsers, real runs), and both tests must read it the same way.

Conventions (documented in README section 10):

- ``<!-- test: run -->``, ``<!-- test: run slow -->``, ``<!-- test: skip (reason) -->`` on the line
  right before a shell block (```` ```bash ````, ```` ```sh ```` or a bare ```` ``` ````);
  ``creates=PATH[,PATH]`` after ``run`` names files the block must leave behind.
- ``<!-- options: hntumorseg segment -->`` right before a table or paragraph attributes the
  ``--options`` in it to that command: in a table whose first header is ``option`` the first
  column's options, in a table whose first header is ``command`` each row's options to the command
  named (relative to the marker) in its first cell, in a paragraph or list every ``--option``.
- Besides, every command line of ``hntumorseg`` / ``python -m hntumorseg_training`` in a shell
  block or an inline code span attributes its options to its (sub)command.

Example:
    >>> fences = read_fences(README_PATH.read_text())
    >>> any(f.lang == "bash" for f in fences)
    True
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README_PATH = REPO_ROOT / "README.md"
#: Fence languages that hold shell commands (a bare fence counts: README's older blocks use it).
SHELL_LANGS = ("bash", "sh", "shell", "console", "")
TAG_RE = re.compile(r"^<!--\s*test:\s*(?P<kind>run|skip)\b(?P<rest>.*?)-->\s*$")
MARKER_RE = re.compile(r"^<!--\s*options:\s*(?P<command>[^>]+?)\s*-->\s*$")
OPTION_RE = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
CODE_SPAN_RE = re.compile(r"`([^`]+)`")
SECTION_RE = re.compile(r"^## (\d+)\.")
#: How README names each program of ours, and the module whose parser reads its arguments.
PROGRAMS = {"hntumorseg": "hntumorseg", "HNTumorSegLib": "hntumorseg",
            "hntumorseg_training": "python -m hntumorseg_training"}


@dataclass
class Fence:
    """One fenced block: ``lang`` (``""`` for a bare fence), ``line`` (1-based, the opening fence),
    ``body``, ``section`` (README's ``## N.`` number, None outside them) and ``tag`` (the
    ``<!-- test: ... -->`` comment on the line before, or None)."""

    lang: str
    line: int
    body: str
    section: int | None
    tag: str | None = None

    @property
    def first_line(self) -> str:
        return next((ln for ln in self.body.splitlines() if ln.strip()), "")


@dataclass
class Tag:
    """A parsed test tag: run (``slow``, ``creates``) or skip (``reason``)."""

    kind: str
    slow: bool = False
    creates: list[str] = field(default_factory=list)
    reason: str = ""


def parse_tag(text: str) -> Tag:
    """``<!-- test: run slow creates=a,b -->`` -> Tag; ValueError for anything else."""
    m = TAG_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a test tag: {text!r}")
    rest = m["rest"].strip()
    if m["kind"] == "skip":
        reason = re.fullmatch(r"\((.+)\)", rest)
        if not reason:
            raise ValueError(f"a skip tag needs a reason in parentheses: {text!r}")
        return Tag("skip", reason=reason[1].strip())
    tag = Tag("run")
    for word in rest.split():
        if word == "slow":
            tag.slow = True
        elif word.startswith("creates="):
            tag.creates = [p for p in word[len("creates="):].split(",") if p]
        else:
            raise ValueError(f"unknown word {word!r} in test tag {text!r}")
    return tag


def read_fences(text: str) -> list[Fence]:
    """Every fenced block of ``text`` with its section and the tag line before it."""
    lines = text.splitlines()
    fences: list[Fence] = []
    section: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            m = SECTION_RE.match(line)
            section = int(m[1]) if m else None
        stripped = line.strip()
        if stripped.startswith("```"):
            lang = stripped[3:].strip().lower()
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            tag = prev.strip() if TAG_RE.match(prev.strip()) else None
            fences.append(Fence(lang, i + 1, "\n".join(lines[i + 1:j]), section, tag))
            i = j + 1
            continue
        i += 1
    return fences


def shell_blocks(text: str) -> list[Fence]:
    """Every shell block of README (any section), in order."""
    return [f for f in read_fences(text) if f.lang in SHELL_LANGS]


def tag_of(block: Fence) -> Tag | None:
    """The block's parsed tag; None when it has none or a malformed one (a test reports those)."""
    try:
        return parse_tag(block.tag) if block.tag else None
    except ValueError:
        return None


def run_blocks(text: str) -> list[tuple[Fence, Tag]]:
    """The ``run`` blocks with their tags, in README order."""
    return [(b, t) for b in shell_blocks(text) if (t := tag_of(b)) is not None and t.kind == "run"]


# --------------------------------------------------------------------------- a user's terminal

#: Variables a block leaves behind that belong to bash, not to the user's session.
_SHELL_OWN = {"_", "SHLVL", "PWD", "OLDPWD", "READMETEST_STATE"}
#: Settings of the developer's environment that a newcomer does not have.
_DEVELOPER_ONLY = ("HNTUMORSEG_CACHE", "HNTUMORSEG_CATALOGUE", "HNTUMORSEG_LOG_DIR", "PYTHONPATH",
                   "VIRTUAL_ENV", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR",
                   "RAY_ADDRESS", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer",
                   "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS")


def newcomer_env(home: Path) -> dict[str, str]:
    """The environment of a new user's terminal: ``HOME`` = ``home``, no environment active.

    Why strip the running Python's ``bin`` folder from PATH: the tests run from ``.venv``, a
    newcomer's shell has no ``hntumorseg`` and maybe no ``python`` until README activates
    ``.venv``; a block that forgets it must fail here as it fails for them (exit 127). One CPU
    thread, because the 2-core test machine runs other work beside it.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DEVELOPER_ONLY}
    ours = {str(Path(sys.executable).parent), str(Path(sys.prefix) / "bin"), str(REPO_ROOT / ".venv" / "bin")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p not in ours)
    env["HOME"] = str(home)
    env["OMP_NUM_THREADS"] = "1"
    return env


@dataclass
class Terminal:
    """One terminal a user types README's blocks into, one after another.

    Each block runs with ``bash -e -o pipefail`` exactly as written, starting in the folder and
    with the exported variables the previous block ended with (``source .venv/bin/activate``,
    ``cd``, ``export`` hold for the blocks after them, as in a real terminal). ``results`` keeps
    each block's outcome by README line: None (worked) or what went wrong.

    Example:
        >>> import tempfile
        >>> home = Path(tempfile.mkdtemp())
        >>> term = Terminal(home, newcomer_env(home), home / ".state")
        >>> term.run(Fence("bash", 1, "mkdir -p ~/try && cd ~/try && export X=1", 2), Tag("run")) is None
        True
        >>> term.cwd == home / "try", term.env["X"]
        (True, '1')
    """

    cwd: Path
    env: dict[str, str]
    state_dir: Path
    timeout_s: float = 1200
    results: dict[int, str | None] = field(default_factory=dict)
    stderr: dict[int, str] = field(default_factory=dict)  # README line -> what the block printed there

    def run(self, block: Fence, tag: Tag) -> str | None:
        """Run one block; None when it worked, else one paragraph saying what went wrong.

        A block fails when it exits non-zero, prints a Python traceback, or leaves out a file its
        tag ``creates`` (relative to the folder it ends in)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        keep = 'pwd > "$READMETEST_STATE/cwd"; env -0 > "$READMETEST_STATE/env"'
        script = f"{block.body}\n{keep}\n"
        env = dict(self.env, READMETEST_STATE=str(self.state_dir))
        for name in ("cwd", "env"):
            (self.state_dir / name).unlink(missing_ok=True)
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.cwd, env=env,
                              capture_output=True, text=True, timeout=self.timeout_s)
        self.stderr[block.line] = proc.stderr
        problems = []
        if proc.returncode != 0:
            problems.append(f"exit code {proc.returncode}")
        if "Traceback (most recent call last)" in proc.stderr + proc.stdout:
            problems.append("a Python traceback")
        if not problems:
            self.cwd = Path((self.state_dir / "cwd").read_text().strip())
            pairs = (item.split("=", 1) for item in (self.state_dir / "env").read_text().split("\0") if "=" in item)
            self.env = {k: v for k, v in pairs if k not in _SHELL_OWN}
            problems += [f"no {path}" for path in tag.creates if not (self.cwd / path).exists()]
        if not problems:
            return None
        return (f"README line {block.line} block failed ({', '.join(problems)}; run in {self.cwd}):\n"
                f"{block.body}\n--- stdout (end):\n{proc.stdout[-2000:]}\n--- stderr (end):\n{proc.stderr[-3000:]}")

    def run_in_order(self, blocks: list[tuple[Fence, Tag]], upto: Fence | None = None,
                     slow: bool = True) -> str | None:
        """Run ``blocks`` in order (each once, results kept) up to and including ``upto``; the
        first failure stops it and is returned. ``slow=False`` passes over slow blocks (a fast
        block never needs one)."""
        for block, tag in blocks:
            if tag.slow and not slow and block is not upto:
                continue
            if block.line not in self.results:
                self.results[block.line] = self.run(block, tag)
            if self.results[block.line]:
                return self.results[block.line] if block is upto else \
                    f"an earlier block failed: {self.results[block.line]}"
            if block is upto:
                break
        return None


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every line outside fenced blocks."""
    out, inside = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            out.append((n, line))
    return out


def code_spans(line: str) -> list[str]:
    """Inline code spans of one markdown line (table pipes escaped as ``\\|`` are unescaped)."""
    return [s.replace("\\|", "|") for s in CODE_SPAN_RE.findall(line)]


def options_in(text: str) -> list[str]:
    """``--options`` named in ``text`` (``--tta/--no-tta`` gives both)."""
    return OPTION_RE.findall(text)


# --------------------------------------------------------------------------- command lines

@dataclass
class CommandLine:
    """One call of a program of ours: ``program`` (a PROGRAMS value), ``words`` after it, ``line``."""

    program: str
    words: list[str]
    line: int
    text: str


def _split_words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # unbalanced quotes in a synopsis: good enough for option names
        return text.split("#")[0].split()


def _program(words: list[str]) -> tuple[str | None, list[str]]:
    """(program, remaining words) for one simple command, or (None, words) when it is not ours."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None, words
    name = words[0].rsplit("/", 1)[-1]
    if name == "hntumorseg":
        return PROGRAMS["hntumorseg"], words[1:]
    if re.fullmatch(r"python[\d.]*|torchrun", name) and "-m" in words[:-1]:  # torchrun [opts] -m module
        k = words.index("-m")
        if words[k + 1] in PROGRAMS:
            return PROGRAMS[words[k + 1]], words[k + 2:]
    return None, words


def split_commands(text: str, line: int) -> tuple[list[CommandLine], list[list[str]]]:
    """Our command lines in a shell text (continuations joined, comments dropped), and the word
    lists of every other (foreign) simple command."""
    ours, foreign = [], []
    logical: list[tuple[int, str]] = []
    buf, start = "", line
    for k, raw in enumerate(text.splitlines()):
        if not buf:
            start = line + k
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        logical.append((start, buf + raw))
        buf = ""
    if buf:
        logical.append((start, buf))
    for n, chunk in logical:
        words = _split_words(chunk)
        simple: list[list[str]] = [[]]
        for w in words:
            if w in ("&&", "||", "|", ";"):
                simple.append([])
            elif w.endswith(";") and len(w) > 1:
                simple[-1].append(w[:-1])
                simple.append([])
            else:
                simple[-1].append(w)
        for s in simple:
            program, rest = _program(s)
            if program:
                ours.append(CommandLine(program, rest, n, chunk.strip()))
            elif s:
                foreign.append(s)
    return ours, foreign


def command_lines(text: str) -> tuple[list[CommandLine], list[list[str]]]:
    """Our command lines in shell blocks and inline code spans, and the foreign ones."""
    ours, foreign = [], []
    for f in read_fences(text):
        if f.lang in SHELL_LANGS:
            o, x = split_commands(f.body, f.line + 1)
            ours += o
            foreign += x
    for n, line in prose_lines(text):
        for span in code_spans(line):
            o, x = split_commands(span, n)
            ours += o
            foreign += [w for w in x if any(t.startswith("--") for t in w) and not w[0].startswith("--")]
    return ours, foreign


# --------------------------------------------------------------------------- parsers

def build_parsers() -> dict[str, argparse.ArgumentParser]:
    """The argparse parser of each program README documents."""
    from HNTumorSegLib.cli import build_parser
    from hntumorseg_training.cli import _parser as training_parser  # the training CLI's only builder

    return {"hntumorseg": build_parser(), "python -m hntumorseg_training": training_parser()}


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    """(path, parser) for ``parser`` and every nested subcommand (``models fetch`` ...)."""
    yield path, parser
    for name, sub in subparsers_of(parser).items():
        yield from walk(sub, path + (name,))


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``--help`` shows, except -h/--help (``--tta`` and ``--no-tta`` both; options
    hidden with ``help=argparse.SUPPRESS`` are internal, e.g. a client's ``session --temp-dir``)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        out += longs or action.option_strings[:1]
    return out


@dataclass
class Use:
    """An option README attributes to a command: ``path`` = (program, sub, ...), ``where`` = line."""

    path: tuple[str, ...]
    option: str
    line: int
    how: str


def resolve_command(parsers, words: list[str], program: str, line: int, text: str):
    """Walk ``words`` down the subcommands: (path, [Use of each option], [problems])."""
    parser, path = parsers[program], (program,)
    uses, problems = [], []
    for raw in words:
        word = raw.strip("[]{}(),")
        if not word:
            continue
        if word.startswith("-"):
            parts = word.split("/") if all(p.startswith("-") for p in word.split("/")) else [word]
            uses += [Use(path, opt.split("=")[0], line, text) for opt in parts]
            continue
        subs = subparsers_of(parser)
        if not subs:
            continue  # a value or a positional of a leaf command
        if word in subs:
            parser, path = subs[word], path + (word,)
        elif re.fullmatch(r"[a-z][a-z0-9-]*", word):
            problems.append(f"README line {line}: `{' '.join(path)} {word}`: no such subcommand "
                            f"(there are: {', '.join(subs)}) in: {text}")
            break
    return path, uses, problems


def marker_uses(text: str) -> tuple[list[Use], list[str]]:
    """Options attributed by ``<!-- options: COMMAND -->`` blocks, and malformed-marker problems."""
    lines = text.splitlines()
    uses, problems = [], []
    for i, line in enumerate(lines):
        m = MARKER_RE.match(line.strip())
        if not m:
            continue
        words = _split_words(m["command"])
        program, rest = _program(words)
        if program is None:
            problems.append(f"README line {i + 1}: options marker names no program of ours: {line.strip()}")
            continue
        prefix = (program,) + tuple(rest)
        block = []
        for j in range(i + 1, len(lines)):
            if not lines[j].strip():
                if block:
                    break
                continue
            block.append((j + 1, lines[j]))
        if not block:
            problems.append(f"README line {i + 1}: options marker with nothing after it")
            continue
        if block[0][1].lstrip().startswith("|"):
            header = [c.strip().strip("`").lower() for c in block[0][1].strip().strip("|").split("|")]
            rows = [(n, _cells(ln)) for n, ln in block[2:]]
            if header[0] == "option":
                for n, cells in rows:
                    for opt in options_in(" ".join(code_spans(cells[0]))):
                        uses.append(Use(prefix, opt, n, "options table"))
            elif header[0] == "command":
                for n, cells in rows:
                    # leading kebab-case words name the subcommand; ID, ID_OR_PATH ... are placeholders
                    words = _split_words(" ".join(code_spans(cells[0])))
                    sub = tuple(w for w in words if re.fullmatch(r"[a-z][a-z0-9-]*", w))
                    for opt in options_in(" ".join(s for c in cells[1:] for s in code_spans(c))):
                        uses.append(Use(prefix + sub, opt, n, "options table"))
            else:
                problems.append(f"README line {block[0][0]}: an options table's first header must be "
                                f"'option' or 'command', not {header[0]!r}")
        else:
            for n, ln in block:
                for opt in options_in(" ".join(code_spans(ln))):
                    uses.append(Use(prefix, opt, n, "options paragraph"))
    return uses, problems


def _cells(row: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [p.strip() for p in parts]
