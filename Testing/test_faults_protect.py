"""Issue 11: no output of a command may be, or resolve to, one of its inputs (exit 2, nothing touched).

Checked before any work, so these runs end in well under a second each: batch ``--out`` equal to
the data folder, to a case folder (HECKTOR: the prediction would land on the reference), or to the
label folder; ``evaluate --json`` equal to a reference; ``segment`` outputs that are a symlink or
a hard link to an input, or an existing folder. Every file is hashed before and after.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.phantoms import make_midrt_case, write_hecktor_cohort
from HNTumorSegLib.protect import check_outputs, same_file
from HNTumorSegLib.errors import InputError
from faults_testlib import hashes


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def hecktor(tmp_path_factory):
    root = tmp_path_factory.mktemp("hecktor")
    ids = write_hecktor_cohort(root, n=2, seed=1, in_plane=32)
    return root, ids


@pytest.mark.parametrize("where", ["data", "case"])
def test_batch_out_onto_the_hecktor_data_refused(hecktor, tmp_path, capsys, where):
    root, ids = hecktor
    out = root if where == "data" else root / ids[0]
    before = hashes(root)
    code = main(["batch", "--layout", "hecktor", "--data", str(root), "--model", "demo-petct", "--out", str(out),
                 "--device", "cpu"])
    assert code == 2
    err = _error(capsys)
    assert ("the data folder" in err) if where == "data" else ("the reference of case" in err), err
    assert hashes(root) == before


def test_batch_out_onto_the_label_folder_refused(tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    arr = np.zeros((8, 16, 16), np.float32)
    for cid in ("a1", "a2"):
        write_image(Image(arr + 1), images / f"{cid}_0000.nii.gz")
        write_image(Image(arr.astype(np.uint8)), labels / f"{cid}.nii.gz")
    before = hashes(images, labels)
    code = main(["batch", "--layout", "folder", "--data", str(images), "--labels", str(labels), "--task", "prert",
                 "--model", "demo-midrt", "--out", str(labels), "--device", "cpu"])
    assert code == 2
    assert "the label folder" in _error(capsys)
    assert hashes(images, labels) == before


def test_evaluate_json_onto_a_reference_refused(tmp_path, capsys):
    ref = tmp_path / "ref.nii.gz"
    write_image(Image(np.ones((6, 8, 8), np.uint8)), ref)
    pred = tmp_path / "pred.nii.gz"
    write_image(Image(np.ones((6, 8, 8), np.uint8)), pred)
    before = hashes(tmp_path)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--json", str(ref)]) == 2
    assert "--json" in _error(capsys)
    assert hashes(tmp_path) == before


@pytest.fixture
def midrt_inputs(tmp_path):
    case = make_midrt_case(seed=0)
    return (write_image(case["midRT_T2"], tmp_path / "in" / "t2.nii.gz"),
            write_image(case["preRT_mask_registered"], tmp_path / "in" / "prior.nii.gz"))


@pytest.mark.parametrize("how", ["symlink", "hardlink", "relative", "folder"])
def test_segment_output_resolving_to_an_input_refused(tmp_path, capsys, midrt_inputs, how):
    t2, prior = midrt_inputs
    out = tmp_path / "out" / "labels.nii.gz"
    out.parent.mkdir()
    if how == "symlink":
        out.symlink_to(prior)
    elif how == "hardlink":
        os.link(prior, out)
    elif how == "relative":
        out = tmp_path / "out" / ".." / "in" / "." / "prior.nii.gz"
    else:
        out.mkdir()
    before = hashes(tmp_path)
    code = main(["segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", str(prior),
                 "--output", str(out), "--device", "cpu", "--progress", "none"])
    assert code == 2
    err = _error(capsys)
    assert ("is a folder" in err) if how == "folder" else ("the prior" in err), err
    assert hashes(tmp_path) == before


def test_save_boxes_onto_the_model_folder_refused(tmp_path, midrt_inputs):
    from HNTumorSegLib.commands.demo import demo_model_folder

    with pytest.raises(InputError, match="inside the model folder"):
        check_outputs({"--save-boxes": demo_model_folder("midrt") / "model.json"}, {},
                      trees={"the model folder": demo_model_folder("midrt")})


def test_same_file_sees_links_and_spellings(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    (tmp_path / "l").symlink_to(a)
    os.link(a, tmp_path / "h")
    assert same_file(a, tmp_path / "l") and same_file(a, tmp_path / "h")
    assert same_file(a, tmp_path / "sub" / ".." / "a.txt")
    assert not same_file(a, tmp_path / "b.txt")
