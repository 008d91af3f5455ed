"""Challenge layouts: cohort writers produce the challenges' file names, find_* reads them back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from HNTumorSegLib.datasets import (HecktorCase, HNTSMRGCase, find_hecktor_cases, find_hntsmrg_cases,
                                    find_plain_cases, prediction_path, read_hntsmrg_case)
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.phantoms import write_hecktor_cohort, write_hntsmrg_cohort


@pytest.fixture(scope="module")
def hnts_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hnts")
    write_hntsmrg_cohort(root, n=4, seed=1, shape=(16, 48, 48))
    return root


@pytest.fixture(scope="module")
def hecktor_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hecktor")
    write_hecktor_cohort(root, n=4, seed=1, in_plane=64, ct_spacing=(4.0, 4.0, 3.0))
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_hntsmrg_writer_exact_names(hnts_root):
    expected = set()
    for cid in ("1", "2", "3", "4"):
        expected |= {f"{cid}/preRT/{cid}_preRT_T2.nii.gz", f"{cid}/preRT/{cid}_preRT_mask.nii.gz",
                     f"{cid}/midRT/{cid}_midRT_T2.nii.gz", f"{cid}/midRT/{cid}_midRT_mask.nii.gz",
                     f"{cid}/midRT/{cid}_preRT_T2_registered.nii.gz",
                     f"{cid}/midRT/{cid}_preRT_mask_registered.nii.gz"}
    assert _files(hnts_root) == expected  # nothing more: no temporary files left behind


def test_hecktor_writer_exact_names(hecktor_root):
    ids = ["CHUM-001", "CHUP-002", "CHUS-003", "HGJ-004"]
    expected = {f"{i}/{i}{s}" for i in ids for s in ("__CT.nii.gz", "__PT.nii.gz", ".nii.gz")}
    assert _files(hecktor_root) == expected


def test_find_hntsmrg_reads_back(hnts_root):
    cases = find_hntsmrg_cases(hnts_root, task="midrt")
    assert [c.case_id for c in cases] == ["1", "2", "3", "4"]
    case = cases[0]
    assert isinstance(case, HNTSMRGCase)
    assert case.inputs("midrt") == {"T2": case.midRT_T2, "prior": case.preRT_mask_registered}
    assert case.reference("prert") == case.preRT_mask
    mask = case.load("midRT_mask")
    assert mask.array.dtype == np.uint8 and mask.same_grid(case.load("midRT_T2"))
    # every 4th case has no GTVn, the others have some
    has_gtvn = [2 in np.unique(c.load("preRT_mask").array) for c in cases]
    assert has_gtvn == [True, True, True, False]
    # a single case folder works as the root too
    assert [c.case_id for c in find_hntsmrg_cases(hnts_root / "2")] == ["2"]


def test_find_hecktor_reads_back(hecktor_root):
    cases = find_hecktor_cases(hecktor_root)
    assert [c.case_id for c in cases] == ["CHUM-001", "CHUP-002", "CHUS-003", "HGJ-004"]
    case = cases[1]
    assert isinstance(case, HecktorCase)
    assert case.pet.name == "CHUP-002__PT.nii.gz" and case.label.name == "CHUP-002.nii.gz"
    label, ct = case.load("label"), case.load("CT")
    assert label.same_grid(ct) and set(np.unique(label.array)) <= {0, 1, 2}
    assert 2 not in np.unique(cases[3].load("label").array)
    assert case.inputs() == {"CT": case.ct, "PET": case.pet}


def test_hecktor_labels_in_another_folder(tmp_path, hecktor_root):
    """HECKTOR 2022 style: images in imagesTr/, labels in labelsTr/."""
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    src = hecktor_root / "CHUM-001"
    for name in ("CHUM-001__CT.nii.gz", "CHUM-001__PT.nii.gz"):
        shutil.copy(src / name, tmp_path / "imagesTr" / name)
    shutil.copy(src / "CHUM-001.nii.gz", tmp_path / "labelsTr" / "CHUM-001.nii.gz")
    (case,) = find_hecktor_cases(tmp_path)
    assert case.label == tmp_path / "labelsTr" / "CHUM-001.nii.gz"


def test_hecktor_missing_pet_names_the_file(tmp_path, hecktor_root):
    shutil.copytree(hecktor_root / "CHUM-001", tmp_path / "CHUM-001")
    (tmp_path / "CHUM-001" / "CHUM-001__PT.nii.gz").unlink()
    with pytest.raises(InputError) as err:
        find_hecktor_cases(tmp_path)
    assert "CHUM-001__PT.nii.gz" in str(err.value) and "no PET" in str(err.value)


def test_hntsmrg_missing_files_name_them(tmp_path, hnts_root):
    shutil.copytree(hnts_root / "3", tmp_path / "3")
    (tmp_path / "3" / "midRT" / "3_preRT_mask_registered.nii.gz").unlink()
    case = read_hntsmrg_case(tmp_path / "3")
    assert case.preRT_mask_registered is None
    with pytest.raises(InputError) as err:
        find_hntsmrg_cases(tmp_path, task="midrt")
    assert "3_preRT_mask_registered.nii.gz" in str(err.value)
    find_hntsmrg_cases(tmp_path, task="prert")  # task 1 does not need it
    # a test-set case without masks is fine; asking for its mask is not
    (tmp_path / "3" / "preRT" / "3_preRT_mask.nii.gz").unlink()
    (case,) = find_hntsmrg_cases(tmp_path)
    assert case.reference("prert") is None
    with pytest.raises(InputError, match="3_preRT_mask.nii.gz"):
        case.load("preRT_mask")


def test_hntsmrg_no_t2_and_bad_roots(tmp_path):
    (tmp_path / "7" / "preRT").mkdir(parents=True)
    with pytest.raises(InputError, match="7_preRT_T2"):
        find_hntsmrg_cases(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        find_hntsmrg_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no HNTS-MRG case"):
        find_hntsmrg_cases(tmp_path / "empty")
    with pytest.raises(InputError, match="__CT"):
        find_hecktor_cases(tmp_path / "empty")


def _tiny(path: Path, value: int = 0) -> None:
    write_image(Image(np.full((4, 5, 6), value, np.int16), (1, 1, 2)), path)


def test_plain_cases_nnunet_style(tmp_path):
    for cid in ("case_2", "case_10"):
        for ch in (0, 1):
            _tiny(tmp_path / "img" / f"{cid}_{ch:04d}.nii.gz", ch)
        _tiny(tmp_path / "lab" / f"{cid}.nii.gz")
    cases = find_plain_cases(tmp_path / "img", labels_dir=tmp_path / "lab")
    assert [c.case_id for c in cases] == ["case_2", "case_10"]
    assert [p.name for p in cases[0].channels] == ["case_2_0000.nii.gz", "case_2_0001.nii.gz"]
    assert cases[1].label == tmp_path / "lab" / "case_10.nii.gz"
    assert int(cases[0].load(1).array.max()) == 1
    (tmp_path / "img" / "case_10_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="case_10_0001.nii.gz"):
        find_plain_cases(tmp_path / "img")


def test_plain_cases_one_file_each(tmp_path):
    for cid in ("a", "b"):
        _tiny(tmp_path / f"{cid}.nii.gz")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [(c.case_id, len(c.channels), c.label) for c in find_plain_cases(tmp_path)] == [("a", 1, None),
                                                                                           ("b", 1, None)]
    (tmp_path / "a.nii.gz").unlink()
    (tmp_path / "b.nii.gz").unlink()
    with pytest.raises(InputError, match="no image"):
        find_plain_cases(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        find_plain_cases(tmp_path / "nowhere")


def test_prediction_paths(tmp_path):
    assert prediction_path("hntsmrg", tmp_path, "12", "prert") == tmp_path / "12_preRT_pred.nii.gz"
    assert prediction_path("hntsmrg", tmp_path, "12", "midrt") == tmp_path / "12_midRT_pred.nii.gz"
    assert prediction_path("hecktor", tmp_path, "CHUM-001", "petct") == tmp_path / "CHUM-001.nii.gz"
    assert prediction_path("folder", tmp_path, "x", "prert") == tmp_path / "x.nii.gz"
    for bad in (("hecktor", "1", "prert"), ("hntsmrg", "1", "petct"), ("nnunet", "1", "prert"),
                ("folder", "1", "segment"), ("folder", "../x", "prert")):
        with pytest.raises(InputError):
            prediction_path(bad[0], tmp_path, bad[1], bad[2])


def test_prediction_names_parse_back_to_case_ids():
    """The metrics module pairs predictions by id: our names must give the id (and timepoint) back."""
    from HNTumorSegLib.caseids import parse_case_filename
    assert parse_case_filename(prediction_path("hntsmrg", "o", "12", "midrt").name) == ("12", "midRT", "label")
    assert parse_case_filename(prediction_path("hntsmrg", "o", "12", "prert").name) == ("12", "preRT", "label")
    assert parse_case_filename(prediction_path("hecktor", "o", "CHUM-001", "petct").name)[0] == "CHUM-001"


def test_hecktor_2025_release_extras_and_task_folders(tmp_path, hecktor_root):
    """HECKTOR 2025 ships 'Task 1/<ID>/...' with a CSV, and 'Task 2/<ID>/<ID>__CTPlanning' extras."""
    task1, task2 = tmp_path / "Task 1", tmp_path / "Task 2"
    shutil.copytree(hecktor_root / "CHUM-001", task1 / "CHUM-001")
    (task1 / "HECKTOR_2025_Training_Task_1.csv").write_text("PatientID\nCHUM-001\n")
    shutil.copytree(hecktor_root / "CHUP-002", task2 / "CHUP-002")
    for extra in ("CHUP-002__CTPlanning.nii.gz", "CHUP-002__RTDOSE.nii.gz"):
        shutil.copy(task2 / "CHUP-002" / "CHUP-002__CT.nii.gz", task2 / "CHUP-002" / extra)
    (task2 / "CHUP-002" / "CHUP-002.nii.gz").unlink()  # task 2 has no labels
    (case,) = find_hecktor_cases(task2)
    assert case.ct.name == "CHUP-002__CT.nii.gz" and case.label is None
    assert [c.case_id for c in find_hecktor_cases(tmp_path)] == ["CHUM-001", "CHUP-002"]
    shutil.copytree(task1 / "CHUM-001", task2 / "CHUM-001")
    with pytest.raises(InputError, match="two CT images for HECKTOR case CHUM-001"):
        find_hecktor_cases(tmp_path)


def test_hntsmrg_case_folder_renamed(tmp_path, hnts_root):
    """The id comes from the folder name, or from the T2 file names when the folder was renamed."""
    shutil.copytree(hnts_root / "2", tmp_path / "patient two")
    case = read_hntsmrg_case(tmp_path / "patient two")
    assert case.case_id == "2" and case.midRT_mask.name == "2_midRT_mask.nii.gz"
