"""``--model`` text: a path, or a catalogue id before a folder of the same name (issue 18, item 2).

README's own ``hntumorseg demo --task petct --out demo-petct`` used to leave a folder that hid the
catalogue's ``demo-petct``. The rule (``models.loader.resolve_model_path``, ``segment --help``): text
with a separator, or starting with ``.``/``~``, is a path; a bare name is a catalogue id first, then a
folder of that name in the working directory; when neither exists the error names both.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from HNTumorSegLib.errors import ModelError
from HNTumorSegLib.models.loader import load_model, looks_like_path, resolve_model_path


def test_catalogue_id_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-petct").mkdir()   # what `hntumorseg demo --out demo-petct` leaves
    assert resolve_model_path("demo-petct") != tmp_path / "demo-petct"
    assert (resolve_model_path("demo-petct") / "model.json").is_file()
    assert resolve_model_path("./demo-petct").resolve() == (tmp_path / "demo-petct").resolve()
    with pytest.raises(ModelError, match="is neither a model folder"):
        load_model("./demo-petct")


def test_bare_name_falls_back_to_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-model").mkdir()
    assert resolve_model_path("my-model").resolve() == (tmp_path / "my-model").resolve()
    with pytest.raises(ModelError, match="no catalogue entry has this id"):
        load_model("my-model")   # an empty folder: the message says the catalogue was asked too


def test_neither_names_both_candidates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as err:
        resolve_model_path("no-such-model")
    assert "no catalogue entry named 'no-such-model'" in str(err.value) and "./no-such-model" in str(err.value)
    with pytest.raises(ModelError, match="model folder not found"):
        resolve_model_path("./no-such-model")


@pytest.mark.parametrize("text, is_path", [("demo-midrt", False), ("./demo-midrt", True), ("models/x", True),
                                           ("~/m", True), ("/abs/m", True), ("card.json", True), ("m.pt", True)])
def test_looks_like_path(text, is_path):
    assert looks_like_path(text) is is_path


def test_segment_cli_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "segment", "--model", "no-such-model",
                           "--input", "T2=t2.nii.gz", "--output", "out.nii.gz"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert any("no-such-model" in ln and "catalogue" in ln for ln in lines), proc.stderr
    assert "Traceback" not in proc.stderr
