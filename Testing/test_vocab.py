"""The fixed vocabularies (HNTumorSegLib/vocab.py): conversions, "did you mean", and a grep
that fails when an old copy of a vocabulary or fold parser comes back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.vocab import Device, NetworkOutput, OutputKind, ProgressMode, Quality, Task, parse_device

from test_vocab_single_source import NEW_WORDS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("enum, text, member", [
    (Task, "prert", Task.PRERT), (Task, "MidRT", Task.MIDRT), (Task, " petct ", Task.PETCT),
    (Device, "auto", Device.AUTO), (Device, "CPU", Device.CPU), (Device, "cuda", Device.CUDA), (Device, "mps", Device.MPS),
    (ProgressMode, "bar", ProgressMode.BAR), (ProgressMode, "JSON", ProgressMode.JSON), (ProgressMode, "none", ProgressMode.NONE),
    (OutputKind, "labels", OutputKind.LABELS), (OutputKind, "probabilities", OutputKind.PROBABILITIES),
    (OutputKind, "uncertainty", OutputKind.UNCERTAINTY), (OutputKind, "boxes", OutputKind.BOXES),
    (Quality, "fast", Quality.FAST), (Quality, "Full", Quality.FULL),
    (NetworkOutput, "softmax", NetworkOutput.SOFTMAX), (NetworkOutput, "sigmoid_regions", NetworkOutput.SIGMOID_REGIONS),
])
def test_parse_accepts_every_value_in_any_case(enum, text, member):
    parsed = enum.parse(text)
    assert parsed is member
    assert enum.parse(parsed) is member
    assert parsed == text.strip().lower()                 # a member is its string
    assert json.dumps({"v": parsed}) == json.dumps({"v": text.strip().lower()})
    assert f"{parsed}" == text.strip().lower()


@pytest.mark.parametrize("enum, typo, suggestion, word", [
    (Task, "mdrt", "midrt", "task"), (Task, "pre-rt", "prert", "task"), (Task, "petc", "petct", "task"),
    (Device, "cdua", "cuda", "device"), (Device, "cpuu", "cpu", "device"),
    (ProgressMode, "jsno", "json", "progress mode"), (ProgressMode, "bars", "bar", "progress mode"),
    (OutputKind, "probabilties", "probabilities", "output kind"),
    (Quality, "fats", "fast", "quality"),
    (NetworkOutput, "sigmoid", "sigmoid_regions", "model output"),
    *NEW_WORDS,   # issue 21's vocabularies (test_vocab_single_source.py)
])
def test_typo_gives_did_you_mean(enum, typo, suggestion, word):
    with pytest.raises(InputError) as info:
        enum.parse(typo)
    line = info.value.one_line()
    assert f"unknown {word} {typo!r}" in line
    assert f"(did you mean {suggestion}?)" in line
    assert ", ".join(enum.values()) in line


def test_far_off_value_has_no_suggestion_and_what_names_the_field():
    with pytest.raises(InputError) as info:
        Task.parse("zzzzzz", what="model.json task")
    assert "did you mean" not in str(info.value)
    assert "unknown model.json task 'zzzzzz'" in str(info.value)
    with pytest.raises(InputError):
        Task.parse(None)
    with pytest.raises(InputError):
        Task.parse("")


def test_parse_optional():
    assert Task.parse_optional(None) is None
    assert Task.parse_optional("  ") is None
    assert Task.parse_optional("midrt") is Task.MIDRT
    with pytest.raises(InputError):
        Task.parse_optional("midrtt")


def test_values_are_in_definition_order():
    assert Task.values() == ("prert", "midrt", "petct")
    assert Device.values() == ("auto", "cpu", "cuda", "mps")
    assert ProgressMode.values() == ("bar", "json", "none")
    assert Quality.values() == ("fast", "full")


@pytest.mark.parametrize("text, canonical", [
    ("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), ("mps", "mps"),
    ("cuda:0", "cuda:0"), (" CUDA:1 ", "cuda:1"), ("cuda:01", "cuda:1"), (Device.CPU, "cpu"),
])
def test_parse_device_returns_the_canonical_string(text, canonical):
    assert parse_device(text) == canonical


@pytest.mark.parametrize("text", ["cuda:", "cuda:-1", "cuda:x", "gpu", "", None, "cuda0"])
def test_parse_device_refuses(text):
    with pytest.raises(InputError) as info:
        parse_device(text)
    assert "cuda:N" in str(info.value)


def test_parse_device_did_you_mean():
    with pytest.raises(InputError, match=r"did you mean cuda\?"):
        parse_device("cdua")


# ---- the old vocabularies must not come back ---------------------------------------------------------

OLD_SPELLINGS = [
    r"""\(\s*["']prert["'],\s*["']midrt["'],\s*["']petct["']\s*\)""",       # TASKS tuples
    r"""\(\s*["']prert["'],\s*["']midrt["']\s*\)""",
    r"""\(\s*["']auto["'],\s*["']cpu["'],\s*["']cuda["']""",                # DEVICES tuples
    r"""\(\s*["'](bar|json|none)["'],\s*["'](bar|json|none)["'],\s*["'](bar|json|none)["']\s*\)""",
    r"""\bPROGRESS_MODES\s*=""",
    r"""\bDEVICES\s*=""",
    r"""\bDEVICE_NAMES\s*=""",
    r"""^\s*TASKS\s*=""",
    r"""\bQUALITIES\s*=""",
    r"""\bdef\s+parse_folds\w*\s*\(""",
    r"""\bdef\s+_parse_folds\w*\s*\(""",
]
SEARCHED = ("HNTumorSegLib", "HNTumorSeg", "training")
ALLOWED = {"HNTumorSegLib/vocab.py", "HNTumorSegLib/folds.py"}


def test_no_old_vocabulary_tuple_or_fold_parser_remains():
    found = []
    for top in SEARCHED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in ALLOWED:
                continue
            text = path.read_text(encoding="utf-8")
            for pattern in OLD_SPELLINGS:
                for m in re.finditer(pattern, text, flags=re.MULTILINE):
                    line = text.count("\n", 0, m.start()) + 1
                    found.append(f"{rel}:{line}: {m.group(0).strip()}")
    assert not found, "old vocabulary spelled again (use HNTumorSegLib.vocab / folds):\n" + "\n".join(found)


def test_the_grep_would_catch_an_old_tuple():
    sample = 'TASKS = ("prert", "midrt", "petct")\nPROGRESS_MODES = ("json", "bar", "none")\ndef parse_folds(x):\n'
    hits = [p for p in OLD_SPELLINGS if re.search(p, sample, flags=re.MULTILINE)]
    assert len(hits) >= 4


@pytest.mark.parametrize("option, typo, suggestion", [("--task", "mdrt", "midrt"), ("--device", "cdua", "cuda"),
                                                      ("--progress", "jsno", "json")])
def test_segment_command_typo_is_one_line_with_did_you_mean(tmp_path, capsys, option, typo, suggestion):
    from HNTumorSegLib.cli import main

    out = tmp_path / "labels.nii.gz"
    argv = ["segment", "--model", "demo-midrt", "--input", f"T2={tmp_path / 't2.nii.gz'}", "--output", str(out),
            option, typo]
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("hntumorseg segment: error: ") and f"(did you mean {suggestion}?)" in err[0]
    assert not out.exists()


def test_batch_command_task_typo_is_one_line(tmp_path, capsys):
    from HNTumorSegLib.cli import main

    rc = main(["batch", "--layout", "hntsmrg", "--data", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o"),
               "--task", "prrt"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "did you mean prert?" in err[0], err
