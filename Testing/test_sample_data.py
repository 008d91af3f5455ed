"""The Sample Data phantom cases shipped in HNTumorSeg/Resources/SampleData.

Checks what a clinician's first click depends on: every file is there with the SHA256 Slicer's
Sample Data module will verify, each case stays under 2 MB, the files load with the right
geometry and labels, the registration arguments point at them, and on a real MRML scene
(slicer-core) the loaded nodes are picked by "Assign inputs by name" and give one box per lesion.
Runs from the source tree and from the tests installed beside the module (ctest / self-test).
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import require_module

from HNTumorSegLib.scene.sample_data import (CATEGORY, MAX_CASE_BYTES, SAMPLE_CASES, check_files, load_into_scene,
                                      register_kwargs, sample_case, sha256_of, shipped_folder)

HERE = Path(__file__).resolve().parent
FOLDER = shipped_folder()


def _needs_slicer():
    require_module("slicer", "pip install slicer-core")


def _file(case_name: str, suffix: str) -> Path:
    return FOLDER / next(f.file_name for f in sample_case(case_name).files if f.file_name.endswith(suffix))


def test_files_match_registered_sha256_and_size_budget():
    assert FOLDER.is_dir(), FOLDER
    assert check_files(FOLDER) == []
    for case in SAMPLE_CASES:
        assert sum((FOLDER / f.file_name).stat().st_size for f in case.files) < MAX_CASE_BYTES


def test_check_files_reports_a_changed_file(tmp_path):
    for case in SAMPLE_CASES:
        for f in case.files:
            (tmp_path / f.file_name).write_bytes((FOLDER / f.file_name).read_bytes())
    victim = tmp_path / SAMPLE_CASES[1].files[0].file_name
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # one byte changed
    victim.write_bytes(bytes(data))
    problems = check_files(tmp_path)
    assert len(problems) == 1 and victim.name in problems[0] and "SHA256" in problems[0]


def test_midrt_files_geometry_and_labels():
    t2 = sitk.ReadImage(str(_file("midrt", "T2.nrrd")))
    prior = sitk.ReadImage(str(_file("midrt", ".seg.nrrd")))
    assert t2.GetPixelID() == sitk.sitkInt16 and t2.GetSize() == (96, 96, 32)
    assert np.allclose(t2.GetSpacing(), (0.9, 0.9, 3.0)) and np.allclose(prior.GetOrigin(), t2.GetOrigin())
    labels = sitk.GetArrayFromImage(prior)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert prior.GetMetaData("Segment0_Name") == "GTVp" and prior.GetMetaData("Segment1_Name") == "GTVn"
    assert "SCT^372087000" in prior.GetMetaData("Segment0_Tags")  # terminology: primary neoplasm


def test_petct_files_cover_the_same_neck():
    ct = sitk.ReadImage(str(_file("petct", "CT.nrrd")))
    pet = sitk.ReadImage(str(_file("petct", "PET.nrrd")))
    assert ct.GetPixelID() == sitk.sitkInt16 and pet.GetPixelID() == sitk.sitkFloat32
    ct_lo = np.array(ct.TransformIndexToPhysicalPoint((0, 0, 0)))
    ct_hi = np.array(ct.TransformIndexToPhysicalPoint([s - 1 for s in ct.GetSize()]))
    pet_lo = np.array(pet.TransformIndexToPhysicalPoint((0, 0, 0)))
    pet_hi = np.array(pet.TransformIndexToPhysicalPoint([s - 1 for s in pet.GetSize()]))
    # the PET grid covers the CT's in-plane square to within one PET voxel
    assert np.all(np.abs(ct_lo[:2] - pet_lo[:2]) < 4.0) and np.all(np.abs(ct_hi[:2] - pet_hi[:2]) < 4.0)
    suv = sitk.GetArrayFromImage(pet)
    assert suv.max() > 5  # the lesions (and the brain) stand out
    hu = sitk.GetArrayFromImage(ct)
    body = hu > -500
    assert 0.2 < body.mean() < 0.9  # cropped to the neck, not to air or into the body


def test_register_kwargs_point_at_the_shipped_files():
    for case in SAMPLE_CASES:
        kw = register_kwargs(case, FOLDER)
        assert kw["category"] == CATEGORY == "HNTumorSeg" and kw["sampleName"] == case.name
        n = len(case.files)
        assert all(len(kw[k]) == n for k in ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes"))
        for uri, name, checksum in zip(kw["uris"], kw["fileNames"], kw["checksums"]):
            parsed = urlparse(uri)
            assert parsed.scheme == "file"
            path = Path(url2pathname(parsed.path))
            assert path.name == name and path.is_file()
            assert checksum == "SHA256:" + sha256_of(path)
    assert register_kwargs(sample_case("midrt"), FOLDER)["loadFileTypes"] == ["VolumeFile", "SegmentationFile"]
    with pytest.raises(KeyError, match="known"):
        sample_case("prert")


def test_loaded_case_is_assigned_by_name_and_gives_one_box_per_lesion():
    _needs_slicer()
    from HNTumorSegLib.scene.inputs import auto_assign, load_image_node
    from HNTumorSegLib.scene.logic import SegmentationSceneLogic
    from HNTumorSegLib.scene.mrml import make_scene
    from HNTumorSegLib.scene.roi_boxes import label_of_roi

    app = make_scene()
    case = sample_case("midrt")
    t2_file, prior_file = case.files
    # what Slicer's Sample Data module does: one reader per file type, the registered node names
    nodes = load_into_scene(app.scene, case, FOLDER)
    t2, seg = nodes[t2_file.node_name], nodes[prior_file.node_name]
    assert t2.IsA("vtkMRMLScalarVolumeNode") and seg.IsA("vtkMRMLSegmentationNode")
    assigned = auto_assign(app.scene, "midrt")
    assert assigned["T2"] is t2 and assigned["prior"] is seg
    rois = SegmentationSceneLogic(app.scene).boxes_from_prior(seg, t2)
    labels = sorted(label_of_roi(r) for r in rois)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(FOLDER / prior_file.file_name)))
    assert labels[0] == 1 and set(labels) == {1, 2} and len(labels) >= 2
    assert set(np.unique(truth)) == {0, 1, 2}
    petct = make_scene()
    ct_file, pet_file = sample_case("petct").files
    ct = load_image_node(petct.scene, FOLDER / ct_file.file_name, name=ct_file.node_name)
    pet = load_image_node(petct.scene, FOLDER / pet_file.file_name, name=pet_file.node_name)
    assert auto_assign(petct.scene, "petct") == {"CT": ct, "PET": pet}


def test_generator_reproduces_the_shipped_voxels(tmp_path):
    script = HERE.parent / "scripts" / "make_sample_data.py"
    if not script.is_file():
        pytest.skip("installed tests: the generator script lives in the source tree only")
    _needs_slicer()
    sys.path.insert(0, str(script.parent))
    try:
        import make_sample_data
    finally:
        sys.path.remove(str(script.parent))
    files = make_sample_data.build(tmp_path)
    assert set(files) == {f.file_name for c in SAMPLE_CASES for f in c.files}
    for name, path in files.items():
        new, shipped = sitk.ReadImage(str(path)), sitk.ReadImage(str(FOLDER / name))
        assert np.array_equal(sitk.GetArrayFromImage(new), sitk.GetArrayFromImage(shipped)), name
        assert np.allclose(new.GetOrigin(), shipped.GetOrigin()) and np.allclose(new.GetSpacing(), shipped.GetSpacing())
