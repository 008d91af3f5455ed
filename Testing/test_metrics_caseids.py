"""Case ids from HNTS-MRG, HECKTOR and plain names, and the pairing of predictions with references."""

from __future__ import annotations

from pathlib import Path

import pytest

from HNTumorSegLib.caseids import IMAGE, LABEL, PRIOR, case_id_from_filename, match_cases, parse_case_filename
from HNTumorSegLib.errors import InputError


@pytest.mark.parametrize("name, expected", [
    ("12_midRT_mask.nii.gz", ("12", "midRT", LABEL)),
    ("12_preRT_mask.nii.gz", ("12", "preRT", LABEL)),
    ("12_midRT_T2.nii.gz", ("12", "midRT", IMAGE)),
    ("12_preRT_T2_registered.nii.gz", ("12", "preRT", IMAGE)),
    ("12_preRT_mask_registered.nii.gz", ("12", "preRT", PRIOR)),
    ("12_midRT.nii.gz", ("12", "midRT", LABEL)),
    ("12_midRT_pred.mha", ("12", "midRT", LABEL)),
    ("CHUM-001__CT.nii.gz", ("CHUM-001", None, IMAGE)),
    ("CHUM-001__PT.nii.gz", ("CHUM-001", None, IMAGE)),
    ("CHUM-001.nii.gz", ("CHUM-001", None, LABEL)),
    ("case_07.nrrd", ("case_07", None, LABEL)),
    ("some/dir/45/midRT/45_midRT_mask.nii.gz", ("45", "midRT", LABEL)),
])
def test_parse_case_filename(name, expected):
    assert parse_case_filename(name) == expected
    assert case_id_from_filename(name) == expected[0]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_hntsmrg_folder_layout_with_timepoint(tmp_path):
    refs = tmp_path / "refs"
    for cid in ("2", "10"):
        for tp in ("preRT", "midRT"):
            touch(refs / cid / tp / f"{cid}_{tp}_mask.nii.gz")
            touch(refs / cid / tp / f"{cid}_{tp}_T2.nii.gz")
        touch(refs / cid / "midRT" / f"{cid}_preRT_mask_registered.nii.gz")
    preds = tmp_path / "preds"
    touch(preds / "2.nii.gz")
    touch(preds / "10.nii.gz")
    touch(preds / "99.nii.gz")
    touch(preds / ".tmp-abc.nii.gz")  # a half-written file from an atomic write: ignored
    with pytest.raises(InputError, match="--timepoint"):
        match_cases(preds, refs)
    m = match_cases(preds, refs, timepoint="midRT")
    assert [p.case_id for p in m.pairs] == ["2", "10"]  # natural order
    assert all(p.ref.path.name == f"{p.case_id}_midRT_mask.nii.gz" for p in m.pairs)
    assert [p.path.name for p in m.unmatched_pred] == ["99.nii.gz"]
    assert m.unmatched_ref == []


def test_prediction_names_carry_the_timepoint(tmp_path):
    refs = tmp_path / "refs"
    touch(refs / "5" / "preRT" / "5_preRT_mask.nii.gz")
    touch(refs / "5" / "midRT" / "5_midRT_mask.nii.gz")
    preds = tmp_path / "preds"
    touch(preds / "5_midRT_mask.nii.gz")
    touch(preds / "5_preRT.nii.gz")
    m = match_cases(preds, refs)
    assert sorted((p.case_id, p.ref.timepoint) for p in m.pairs) == [("5_midRT", "midRT"), ("5_preRT", "preRT")]


def test_hecktor_images_are_never_labels(tmp_path):
    refs = tmp_path / "refs"
    for cid in ("CHUM-001", "CHUV-002"):
        touch(refs / f"{cid}__CT.nii.gz")
        touch(refs / f"{cid}__PT.nii.gz")
        touch(refs / f"{cid}.nii.gz")
    preds = tmp_path / "preds"
    touch(preds / "CHUM-001.nii.gz")
    m = match_cases(preds, refs)
    assert [(p.case_id, p.ref.path.name) for p in m.pairs] == [("CHUM-001", "CHUM-001.nii.gz")]
    assert [r.path.name for r in m.unmatched_ref] == ["CHUV-002.nii.gz"]
    with pytest.raises(InputError, match="named as an image"):
        match_cases(preds / "CHUM-001.nii.gz", refs / "CHUM-001__CT.nii.gz")


def test_file_against_file_and_file_against_folder(tmp_path):
    a = touch(tmp_path / "anything.nii.gz")
    b = touch(tmp_path / "refs" / "17_midRT_mask.nii.gz")
    assert [(p.case_id, p.pred.path) for p in match_cases(a, b).pairs] == [("17", a)]
    p17 = touch(tmp_path / "p" / "17.nii.gz")
    assert [p.case_id for p in match_cases(p17, tmp_path / "refs").pairs] == ["17"]
    assert [p.case_id for p in match_cases(tmp_path / "p", b).pairs] == ["17"]


def test_matching_errors(tmp_path):
    touch(tmp_path / "refs" / "1.nii.gz")
    touch(tmp_path / "preds" / "2.nii.gz")
    with pytest.raises(InputError, match="does not exist"):
        match_cases(tmp_path / "missing", tmp_path / "refs")
    with pytest.raises(InputError, match="no prediction matches"):
        match_cases(tmp_path / "preds", tmp_path / "refs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no label map"):
        match_cases(tmp_path / "empty", tmp_path / "refs")
    touch(tmp_path / "preds2" / "1.nii.gz")
    touch(tmp_path / "preds2" / "sub" / "1.nii.gz")
    with pytest.raises(InputError, match="two predictions for case 1"):
        match_cases(tmp_path / "preds2", tmp_path / "refs")
