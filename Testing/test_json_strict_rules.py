"""Strict JSON out, one depth-limited reader in (issues 21 and 22), checked over the whole source.

Every JSON we write - a file, a stdout event line, a session command - is strict: ``NaN`` and
``Infinity`` are not JSON, and other readers (jq, JavaScript, Slicer's own JSON) refuse a file
holding them, so a writer passes ``allow_nan=False`` (or goes through
:func:`HNTumorSegLib.fileio.write_json_atomic`, which always does). Every JSON we read from a file,
a user or a child goes through :func:`HNTumorSegLib.fileio.loads_json` / ``read_json``: it refuses
nesting past a limit before Python's decoder recurses (a RecursionError is a traceback, or a
session that ends) and refuses ``NaN`` tokens. This test reads HNTumorSegLib/ and training/ with
``ast`` and fails on a ``json.dump(s)`` without ``allow_nan=False`` or a ``json.load(s)`` outside
fileio.py; an internal round trip (``json.loads(json.dumps(x))``) is neither, and the few other
exceptions are listed with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "HNTumorSegLib", ROOT / "training" / "hntumorseg_training"]

#: (file, line's code) that are not a JSON we write or read from outside, and why (keep it short).
NOT_OUTSIDE_JSON = {
    ("HNTumorSegLib/batch/resume.py", "json.dumps(picked, sort_keys=True, default=str)"):
        "a fingerprint's bytes, hashed: never written or read as JSON",
    ("HNTumorSegLib/models/installed.py", "json.dumps(spec.normalisation, sort_keys=True)"):
        "a comparison key for two cards' normalisation, never written",
    ("HNTumorSegLib/session/messages.py", "json.loads(ev.to_json())"):
        "our own event, serialised strictly one line above (a round trip)",
}


def _is_json(node: ast.AST, names: tuple[str, ...]) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "json")


def json_problems(source: str, rel: str) -> list[str]:
    """``rel:line: code`` of every lax ``json.dump(s)`` and every ``json.load(s)`` outside fileio.py."""
    tree = ast.parse(source)
    round_trips = {id(node.args[0]) for node in ast.walk(tree)
                   if _is_json(node, ("loads",)) and node.args and _is_json(node.args[0], ("dumps",))}
    found = []
    for node in ast.walk(tree):
        if id(node) in round_trips:
            continue
        code = ast.unparse(node) if isinstance(node, ast.Call) else ""
        if (rel, code) in NOT_OUTSIDE_JSON:
            continue
        if _is_json(node, ("dump", "dumps")) and not any(
                k.arg == "allow_nan" and isinstance(k.value, ast.Constant) and k.value.value is False
                for k in node.keywords):   # type: ignore[attr-defined]
            found.append(f"{rel}:{node.lineno}: {code[:90]} (write strict JSON: allow_nan=False)")
        elif _is_json(node, ("load", "loads")) and rel != "HNTumorSegLib/fileio.py" and not (
                node.args and _is_json(node.args[0], ("dumps",))):   # type: ignore[attr-defined]
            found.append(f"{rel}:{node.lineno}: {code[:90]} (read with fileio.read_json / loads_json)")
    return found


def test_every_json_we_write_is_strict_and_every_json_we_read_is_depth_limited():
    found = []
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            found += json_problems(path.read_text("utf-8"), path.relative_to(ROOT).as_posix())
    assert not found, "\n".join(found)


def test_the_allow_list_has_no_stale_entry():
    present = set()
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            present |= {(rel, ast.unparse(n)) for n in ast.walk(ast.parse(path.read_text("utf-8")))
                        if isinstance(n, ast.Call)}
    assert set(NOT_OUTSIDE_JSON) <= present, sorted(set(NOT_OUTSIDE_JSON) - present)


@pytest.mark.parametrize("source, expected", [
    ("import json\npath.write_text(json.dumps(d, indent=1))\n", 1),       # runner.py's request.json, before
    ("import json\njson.dump(record, fh)\n", 1),
    ("import json\nplans = json.loads(p.read_text())\n", 1),              # scene/run_estimate.py, before
    ("import json\nx = json.load(open('a.json'))\n", 1),
    ("import json\nprint(json.dumps(d, allow_nan=False))\n", 0),
    ("import json\nd = json.loads(json.dumps(d, allow_nan=False))\n", 0),
    ("import json\nd = json.loads(json.dumps(d, default=list))\n", 0),   # a round trip: neither written nor read
])
def test_the_checker_catches_lax_writers_and_plain_readers(source, expected):
    assert len(json_problems(source, "x.py")) == expected


def test_a_strict_writer_refuses_nan_and_the_reader_refuses_a_deep_nest(tmp_path):
    from HNTumorSegLib.errors import InputError
    from HNTumorSegLib.fileio import loads_json, write_json_atomic

    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"risk": float("nan")})
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(InputError, match="nested"):
        loads_json("[" * 2000 + "]" * 2000, "plans.json")
