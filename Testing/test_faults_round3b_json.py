"""Issue 22 item 8: deep JSON, corrupt zip members and impossible devices are one line, not a traceback.

Before: 1,100 nested brackets on one session line ended the whole session (exit 1, the running
request lost); ``outcome --clinical deep.json`` and every other JSON reader raised RecursionError;
a zip member with a bad CRC, a lying size, the encrypted flag or deflate64 crashed ``models
import``; ``outcome --device cuda`` without a GPU was a traceback. Now: an error event for that
line (the session answers the next), and exit 2 with one line everywhere else.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from faults_testlib import ROOT, hntumorseg, one_error_line
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import JSON_MAX_DEPTH, loads_json
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
from test_outcome_model_io import tiny_model  # noqa: F401 (the fixture: a real exported outcome model)

DEEP = "[" * 1100 + "]" * 1100


def test_a_deep_session_line_is_that_line_s_error_and_the_session_goes_on():
    lines = [DEEP, '{"id": "d", "request": ' + '{"a": ' * 1100 + "1" + "}" * 1100 + "}",
             '{"id": "s", "status": true}', '{"shutdown": true}']
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "session"], input="\n".join(lines) + "\n",
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 2 and all(e["kind"] == "bad_input" and "nested" in e["message"] for e in errors), events
    assert any(e["event"] == "session" and e["id"] == "s" for e in events), events   # it answered the next line


def _write_deep(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEEP)
    return path


def _readers(tmp: Path):
    """(name, call) of every reader of a user's JSON file, each given the deep file."""
    from HNTumorSegLib.models.card import read_card
    from HNTumorSegLib.models.catalogue import read_catalogue
    from HNTumorSegLib.models.declaration import DECLARATION_NAME, read_declaration
    from HNTumorSegLib.models.ensemble_card import read_ensemble_spec
    from HNTumorSegLib.outcome.card import read_outcome_card
    from HNTumorSegLib.outcome.clinical import read_clinical_record
    from HNTumorSegLib.prompts.boxes import read_boxes
    from HNTumorSegLib.worker import load_request

    return [("request.json", lambda: load_request(_write_deep(tmp / "request.json"))),
            ("boxes.json", lambda: read_boxes(_write_deep(tmp / "boxes.json"))),
            ("clinical", lambda: read_clinical_record(_write_deep(tmp / "ehr.json"))),
            ("model card", lambda: read_card(_write_deep(tmp / "card" / "model.json"))),
            ("declaration", lambda: read_declaration(_write_deep(tmp / "decl" / DECLARATION_NAME).parent, {})),
            ("catalogue", lambda: read_catalogue(_write_deep(tmp / "models.json"))),
            ("ensemble", lambda: read_ensemble_spec(_write_deep(tmp / "ens" / "ensemble.json"))),
            ("outcome card", lambda: read_outcome_card(_write_deep(tmp / "outcome" / "model.json").parent))]


def test_every_json_reader_refuses_deep_nesting_in_one_line(tmp_path):
    for name, call in _readers(tmp_path):
        with pytest.raises(InputError, match="nested 1100 levels deep") as info:
            call()
        assert "\n" not in str(info.value), name


def test_batch_reads_a_deep_model_card_as_no_task(tmp_path):
    from HNTumorSegLib.batch.cohort import model_task

    assert model_task(str(_write_deep(tmp_path / "model" / "model.json").parent)) is None   # not RecursionError


def test_the_reader_is_strict_about_numbers_and_keeps_strings_out_of_the_depth():
    assert loads_json('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}
    assert loads_json("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH) is not None
    for text in ("[NaN]", "[Infinity]", "[1e400]", '{"x": -Infinity}', "[" + "9" * 400 + "]"):
        with pytest.raises(InputError):
            loads_json(text)


def test_outcome_with_a_deep_clinical_json_is_exit_2(tiny_model, tmp_path):  # noqa: F811
    case = make_outcome_case(seed=2, index=3)
    for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
        write_image(case[key], tmp_path / f"{name}.nii.gz")
    deep = _write_deep(tmp_path / "deep.json")
    res = hntumorseg("outcome", "--model", tiny_model, "--input", f"CT={tmp_path / 'ct.nii.gz'}",
                     "--input", f"PET={tmp_path / 'pet.nii.gz'}", "--labels", tmp_path / "labels.nii.gz",
                     "--clinical", deep, "--json", tmp_path / "o.json")
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and "deep.json" in line and "nested" in line, line
    assert not (tmp_path / "o.json").exists()


def test_outcome_device_cuda_without_a_gpu_is_exit_2(tiny_model, tmp_path):  # noqa: F811
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    case = make_outcome_case(seed=2, index=4)
    for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
        write_image(case[key], tmp_path / f"{name}.nii.gz")
    (tmp_path / "ehr.json").write_text(json.dumps({"Age": 60}))
    res = hntumorseg("outcome", "--model", tiny_model, "--input", f"CT={tmp_path / 'ct.nii.gz'}",
                     "--input", f"PET={tmp_path / 'pet.nii.gz'}", "--labels", tmp_path / "labels.nii.gz",
                     "--clinical", tmp_path / "ehr.json", "--device", "cuda", "--json", tmp_path / "o.json")
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and "cuda" in line and "--device" in line, line
    assert not (tmp_path / "o.json").exists()
    res = hntumorseg("segment", "--model", "demo-petct", "--input", f"CT={tmp_path / 'ct.nii.gz'}",
                     "--input", f"PET={tmp_path / 'pet.nii.gz'}", "--output", tmp_path / "seg.nii.gz",
                     "--device", "cuda", "--progress", "none")
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and "cuda" in line and "--device" in line, line
    assert not (tmp_path / "seg.nii.gz").exists()


# ---- corrupt zip members in `models import` --------------------------------------------------------

def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("mymodel/model.json", json.dumps({"id": "mymodel"}))
        zf.writestr("mymodel/weights.bin", bytes(range(256)) * 64)
    return buf.getvalue()


def _patch(data: bytes, name: str, central: tuple[int, str, int] | None = None,
           local: tuple[int, str, int] | None = None, data_byte: bool = False) -> bytes:
    """Change one field of ``name``'s central-directory entry and/or local header (or a data byte)."""
    out = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    if central:
        at = out.index(b"PK\x01\x02")
        while out[at + 46: at + 46 + len(name)] != name.encode():
            at = out.index(b"PK\x01\x02", at + 4)
        offset, fmt, value = central
        struct.pack_into(fmt, out, at + offset, value)
    head = info.header_offset
    if local:
        offset, fmt, value = local
        struct.pack_into(fmt, out, head + offset, value)
    if data_byte:
        name_len, extra_len = struct.unpack_from("<HH", out, head + 26)
        out[head + 30 + name_len + extra_len + 100] ^= 0xFF
    return bytes(out)


NAME = "mymodel/weights.bin"
CORRUPT = {
    "bad CRC": lambda d: _patch(d, NAME, data_byte=True),
    "lying size": lambda d: _patch(d, NAME, central=(24, "<I", 16384 + 5000)),
    "encrypted flag": lambda d: _patch(d, NAME, central=(8, "<H", 0x1), local=(6, "<H", 0x1)),
    "deflate64": lambda d: _patch(d, NAME, central=(10, "<H", 9), local=(8, "<H", 9)),
}


@pytest.mark.parametrize("fault, words", [("bad CRC", "damaged"), ("lying size", "damaged"),
                                          ("encrypted flag", "encrypted"), ("deflate64", "deflate64")])
def test_a_corrupt_zip_member_is_one_line_and_nothing_is_installed(tmp_path, fault, words):
    archive = tmp_path / "mymodel.zip"
    archive.write_bytes(CORRUPT[fault](_zip_bytes()))
    cache = tmp_path / "cache"
    res = hntumorseg("models", "import", archive, "--id", "mine", "--cache", cache, "--accept-licence",
                     "--progress", "none", timeout=120)
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and words in line and "mymodel.zip" in line, line
    assert not (cache / "models" / "mine").exists()
    assert not [p for p in (cache / "models").iterdir() if "staging" in p.name]


def test_the_same_zip_unpatched_imports(tmp_path):
    archive = tmp_path / "mymodel.zip"
    archive.write_bytes(_zip_bytes())
    res = hntumorseg("models", "import", archive, "--id", "mine", "--cache", tmp_path / "cache", "--accept-licence",
                     "--progress", "none", timeout=120)
    assert res.returncode == 0, res.stderr
