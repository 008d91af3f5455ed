"""One PET path (issue 24): every way a PET enters reaches SUVbw through dicom/pet_units.py.

* the rule: a PET whose 99.9th percentile inside the body is above 100 does not look like SUV;
* ``segment`` and ``biomarkers`` refuse a Bq/mL NIfTI PET for an SUV model / measure without
  ``--pet-units`` (exit 2, one line naming the file and ``--pet-units``), and take it with
  ``--pet-units BQML --suv-factor F``;
* Slicer's Apply: a DICOM PET loaded as Slicer's DICOM module leaves it (a node of Bq/mL carrying
  ``DICOM.instanceUIDs``) reaches the worker's request in SUV, equal to the command line's SUV
  image to 1e-4; a NIfTI PET node in Bq/mL is refused before any worker starts.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from conftest import require_module

from HNTumorSegLib.dicom.pet_units import (SUV_PLAUSIBLE_MAX, pet_to_suv, plausibility_percentile,
                                           read_pet)
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import read_json
from HNTumorSegLib.image import Image, read_image, write_image
from HNTumorSegLib.phantoms import make_petct_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.vocab import PetUnit, PetUnitSource

BQML_PER_SUV = 3.7e8 / 75000.0   # 370 MBq in 75 kg, no decay: 4933 Bq/mL per SUV


@pytest.fixture(scope="module")
def petct(tmp_path_factory):
    """A phantom PET/CT case: CT, PET in SUV and the same PET in Bq/mL, as NIfTI files."""
    folder = tmp_path_factory.mktemp("petct")
    case = make_petct_case(seed=2, in_plane=48)
    pet = case["PET"]
    write_image(case["CT"], folder / "ct.nii.gz")
    write_image(pet, folder / "pet_suv.nii.gz")
    write_image(pet.with_array((pet.array * BQML_PER_SUV).astype(np.float32)), folder / "pet_bqml.nii.gz")
    write_image(case["mask"], folder / "labels.nii.gz")
    return folder, case


def test_the_rule_tells_suv_from_bqml(petct):
    _, case = petct
    suv = case["PET"]
    assert 1.0 < plausibility_percentile(suv) < SUV_PLAUSIBLE_MAX / 4           # a real SUV: far below
    assert plausibility_percentile(suv.with_array(suv.array * BQML_PER_SUV)) > 10 * SUV_PLAUSIBLE_MAX
    assert plausibility_percentile(suv.with_array(np.zeros_like(suv.array))) == 0.0
    took = pet_to_suv(suv, "pet.nii.gz", card=True)
    assert took.source is PetUnitSource.MODEL_CARD and took.unit == PetUnit.SUV
    assert np.array_equal(took.image.array, suv.array.astype(np.float32))


def _one_line(err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_biomarkers_refuse_bqml_without_pet_units(petct, tmp_path, capsys):
    from HNTumorSegLib.cli import main

    folder, _ = petct
    out = tmp_path / "bm.json"
    base = ["biomarkers", "--labels", str(folder / "labels.nii.gz"), "--json", str(out)]
    assert main([*base, "--pet", str(folder / "pet_bqml.nii.gz")]) == 2
    _one_line(capsys.readouterr().err, "pet_bqml.nii.gz", "--pet-units", "do not look like SUV")
    assert not out.exists()
    assert main([*base, "--pet", str(folder / "pet_bqml.nii.gz"), "--pet-units", "BQML",
                 "--suv-factor", repr(1.0 / BQML_PER_SUV)]) == 0, capsys.readouterr().err
    by_factor = read_json(out)["patient"]
    out.unlink()
    assert main([*base, "--pet", str(folder / "pet_suv.nii.gz")]) == 0, capsys.readouterr().err
    as_suv = read_json(out)["patient"]
    assert as_suv["SUVmax_T"] > 1.0
    for key, value in as_suv.items():   # the same biomarkers, up to float32 rounding of the factor
        assert by_factor[key] == (pytest.approx(value, rel=1e-5) if value is not None else None), key


def test_segment_refuses_bqml_for_an_suv_model(petct, tmp_path, capsys):
    """``segment`` with the bundled PET/CT demo (card: pet_unit SUV): a Bq/mL PET exits 2, one line."""
    from HNTumorSegLib.cli import main

    folder, _ = petct
    out = tmp_path / "labels.nii.gz"
    code = main(["segment", "--model", "demo-petct", "--input", f"CT={folder / 'ct.nii.gz'}",
                 "--input", f"PET={folder / 'pet_bqml.nii.gz'}", "--output", str(out), "--device", "cpu",
                 "--progress", "none"])
    assert code == 2
    _one_line(capsys.readouterr().err, "pet_bqml.nii.gz", "--pet-units")
    assert not out.exists()


def test_validate_takes_the_stated_unit(petct):
    """The request's --pet-units / --suv-factor reach the one path: the PET the model sees is SUV."""
    from HNTumorSegLib.pipeline.validate import validate_request

    folder, case = petct
    req = SegmentRequest(model="demo-petct", input_paths={"CT": str(folder / "ct.nii.gz"),
                                                          "PET": str(folder / "pet_bqml.nii.gz")},
                         output_path=str(folder / "never.nii.gz"), device="cpu", pet_units="bqml",
                         suv_factor=1.0 / BQML_PER_SUV)
    assert SegmentRequest.from_dict(req.to_dict()) == req
    assert req.to_argv()[req.to_argv().index("--pet-units") + 1] == "BQML"
    validated = validate_request(req)
    np.testing.assert_allclose(validated.images["PET"].array, case["PET"].array, rtol=1e-5, atol=1e-6)
    assert any("user's --pet-units" in n for n in validated.notes)
    with pytest.raises(InputError, match="unknown --pet-units"):
        SegmentRequest(model="demo-petct", input_paths={"PET": "p.nii.gz"}, output_path="o.nii.gz", pet_units="kbq")


def test_a_model_card_must_expect_suv(tmp_path):
    from HNTumorSegLib.errors import ModelError
    from HNTumorSegLib.fileio import read_json
    from HNTumorSegLib.models.card import ModelCard
    from HNTumorSegLib.models.catalogue import installed_path

    data = read_json(installed_path("demo-petct") / "model.json")
    assert ModelCard.from_dict(data).pet_unit is PetUnit.SUV      # the default: SUV
    with pytest.raises(ModelError, match="pet_unit"):
        ModelCard.from_dict({**data, "pet_unit": "BQML"})


# ---- Slicer: Apply sends SUV ------------------------------------------------------------------


def _dicom_pet(case, folder):
    require_module("pydicom")
    from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series

    acq = PetAcquisition(weight_kg=68.0, dose_bq=2.9e8, injection=datetime.datetime(2024, 5, 2, 8, 10, 0),
                         series_start=datetime.datetime(2024, 5, 2, 9, 17, 30))
    return write_dicom_series(case["PET"], folder, "PT", pet=acq)


def test_slicer_apply_sends_a_dicom_pet_in_suv(petct, tmp_path):
    require_module("slicer")
    import pydicom

    from HNTumorSegLib.dicom.read import read_dicom_folder
    from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic
    from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image

    folder, case = petct
    files = _dicom_pet(case, tmp_path / "pt")
    database = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}
    app = make_scene()
    ct = volume_node_from_image(app.scene, case["CT"], "CT")
    raw = read_dicom_folder(tmp_path / "pt", pet_in_suv=False)       # what Slicer's DICOM module loads: Bq/mL
    assert float(raw.array.max()) > 1000.0
    pet = volume_node_from_image(app.scene, raw, "PET")
    pet.SetAttribute("DICOM.instanceUIDs", " ".join(database))
    logic = SegmentationSceneLogic(app.scene)
    logic.file_for_instance = database.get                          # slicer.dicomDatabase.fileForInstance
    params = Parameters(task="petct", inputs={"CT": ct.GetID(), "PET": pet.GetID()}, model="demo-petct", device="cpu")
    (tmp_path / "work").mkdir()
    request = logic.build_request(params, tmp_path / "work", tmp_path / "out")
    sent = read_image(request.input_paths["PET"])
    cli = read_pet(tmp_path / "pt").image                              # the command line's SUV image
    assert sent.same_grid(cli)
    np.testing.assert_allclose(sent.array, cli.array, rtol=1e-4, atol=1e-4)
    assert float(sent.array.max()) < SUV_PLAUSIBLE_MAX

    # a NIfTI PET node holding Bq/mL: refused at Apply, one line naming the volume
    bqml = volume_node_from_image(app.scene, read_image(folder / "pet_bqml.nii.gz"), "PET bqml")
    params.inputs["PET"] = bqml.GetID()
    with pytest.raises(InputError, match="volume 'PET bqml'.*do not look like SUV"):
        logic.build_request(params, tmp_path / "work", tmp_path / "out")
