"""PET/CT review on a real vtkMRMLScene (slicer-core): PET in SUV from its DICOM files, the biomarker
table, and the research-only outcome prediction run by ``hntumorseg outcome`` in a real child process.

The PET "loaded from DICOM" is made as Slicer's DICOM module leaves it: a volume of the series'
rescaled values (Bq/mL) carrying ``DICOM.instanceUIDs``; the DICOM database's
``fileForInstance`` is a dict from the UIDs pydicom reads back from the files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")
pydicom = require_module("pydicom")

from HNTumorSegLib.dicom.read import read_dicom_folder  # noqa: E402
from HNTumorSegLib.dicom.suv import read_pet_suv  # noqa: E402
from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.outcome.biomarkers import compute_biomarkers  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402
from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case  # noqa: E402
from HNTumorSegLib.scene.biomarkers_table import CHART_TITLE, biomarker_rows, survival_rows  # noqa: E402
from HNTumorSegLib.scene.inputs import load_image_node  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.dicom_source import dicom_source_files, pet_suv_image  # noqa: E402
from HNTumorSegLib.scene.outcome_review import biomarker_review, outcome_model_info, show_outcome, start_outcome  # noqa: E402
from HNTumorSegLib.scene.review import lesion_rows, rows_from_table_node  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real outcome model folder (2 folds per endpoint, small random networks, each fold its own
    clinical statistics), written with the library only: this file also runs in Slicer's self-test,
    where the training package is not installed."""
    torch = require_module("torch")
    from HNTumorSegLib.models.weights import sha256_file
    from HNTumorSegLib.outcome.card import write_outcome_card
    from HNTumorSegLib.outcome.clinical import ClinicalEncoder
    from HNTumorSegLib.outcome.network import OutcomeNet
    from HNTumorSegLib.outcome.patch import PatchSpec

    folder = tmp_path_factory.mktemp("outcome_model")
    records = [{**make_outcome_case(0, i)["clinical"], "MTV_ml": float(i), "NTV_ml": 0.5 * i, "SUVmax_T": 8.0 + i,
                "SUVmax_N": None, "TLG": 10.0 * i, "NLG": None} for i in range(4)]
    width = [4, 8, 16, 32]
    endpoints = {}
    for endpoint, n_out in (("rfs", 4), ("hpv", 1)):
        folds = []
        for k in range(2):
            torch.manual_seed(10 * k + n_out)
            enc = ClinicalEncoder.fit(records[k:])
            weights = folder / f"{endpoint}_fold{k}.pt"
            torch.save(OutcomeNet(enc.size, n_out, tuple(width)).state_dict(), weights)
            folds.append({"fold": k, "weights": weights.name, "sha256": sha256_file(weights), "clinical": enc.to_dict()})
        endpoints[endpoint] = {"folds": folds, **({"cut_points_days": [769, 1357, 2626]} if endpoint == "rfs" else {})}
    write_outcome_card({"id": "tiny", "title": "tiny test model", "patch": PatchSpec((12, 12, 12), (6.0, 6.0, 6.0)).to_dict(),
                        "architecture": {"name": "OutcomeNet", "block_inplanes": width}, "endpoints": endpoints}, folder)
    return folder


@pytest.fixture(scope="module")
def app():
    return make_scene()


@pytest.fixture(scope="module")
def case():
    return make_outcome_case(0, 5)


@pytest.fixture(scope="module")
def pet_dicom(case, tmp_path_factory):
    """The case's PET written as a BQML DICOM series; (folder, {SOPInstanceUID: file})."""
    folder = tmp_path_factory.mktemp("pet_dicom")
    files = write_dicom_series(case["PET"], folder, "PT")
    return folder, {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}


def _as_slicer_dicom_loads_it(scene, folder, uids, image=None, name="PET"):
    """A volume of the rescaled stored values (Bq/mL) with Slicer's DICOM.instanceUIDs attribute."""
    raw = image if image is not None else read_dicom_folder(folder, pet_in_suv=False)
    node = volume_node_from_image(scene, raw, name)
    node.SetAttribute("DICOM.instanceUIDs", " ".join(uids) + " ")
    return node


def test_dicom_pet_node_is_read_in_suv_from_its_files(app, case, pet_dicom):
    folder, lookup = pet_dicom
    expected = read_pet_suv(folder)  # the DICOM issue's SUV conversion (itself tested against hand values)
    node = _as_slicer_dicom_loads_it(app.scene, folder, lookup)
    raw = read_dicom_folder(folder, pet_in_suv=False)
    assert raw.array.max() > 1000 * expected.array.max()  # the node holds Bq/mL, not SUV

    suv = pet_suv_image(node, lookup.get)
    assert suv.same_grid(expected)
    np.testing.assert_allclose(suv.array, expected.array, rtol=1e-6)
    hot = case["PET"].array > 0.5
    np.testing.assert_allclose(suv.array[hot], case["PET"].array[hot], rtol=2e-3)  # the phantom's own SUV

    # slices stored in the opposite order (k reversed): matched by position, not by index
    flipped = Image(raw.array[::-1].copy(), raw.spacing, tuple(raw.index_to_physical(np.array([0, 0, raw.array.shape[0] - 1.0]))),
                    raw.direction @ np.diag([1.0, 1.0, -1.0]))
    node_rev = _as_slicer_dicom_loads_it(app.scene, folder, lookup, image=flipped, name="PET reversed")
    np.testing.assert_allclose(pet_suv_image(node_rev, lookup.get).array, expected.array[::-1], rtol=1e-6)

    # a PET registered with a linear transform: SUV values, world geometry
    transform = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 12.0)  # 12 mm towards R
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = pet_suv_image(node, lookup.get)
    np.testing.assert_allclose(moved.array, expected.array, rtol=1e-6)
    np.testing.assert_allclose(np.array(moved.origin) - np.array(expected.origin), [-12.0, 0.0, 0.0], atol=1e-6)  # LPS

    # cropped: its SUV cannot be known
    one_slice_less = Image(raw.array[1:].copy(), raw.spacing, tuple(raw.index_to_physical(np.array([0.0, 0.0, 1.0]))),
                           raw.direction)
    cropped = _as_slicer_dicom_loads_it(app.scene, folder, lookup, image=one_slice_less, name="PET cropped")
    with pytest.raises(InputError, match="no longer lies on the grid"):
        pet_suv_image(cropped, lookup.get)
    # from DICOM but no database / a file missing from it: refused, never read as SUV
    with pytest.raises(InputError, match="no DICOM database"):
        pet_suv_image(node_rev, None)
    partial = dict(list(lookup.items())[1:])
    with pytest.raises(InputError, match="1 of the"):
        dicom_source_files(node_rev, partial.get)
    # not from DICOM (a NIfTI PET): its voxels are taken as SUV
    nifti = volume_node_from_image(app.scene, case["PET"], "case__PT")
    assert dicom_source_files(nifti) is None
    np.testing.assert_array_equal(pet_suv_image(nifti).array, case["PET"].array)
    # our own DICOM folder loading (HNTumorSeg.SourceFiles): the same SUV
    ours = load_image_node(app.scene, folder)
    assert sorted(dicom_source_files(ours)) == sorted(lookup.values())
    np.testing.assert_allclose(pet_suv_image(ours).array, expected.array, rtol=1e-6)
    for n in (node, node_rev, transform, cropped, nifti, ours):
        app.scene.RemoveNode(n)


def test_biomarker_table_of_a_petct_result(app, case, pet_dicom):
    """The table equals compute_biomarkers on the SUV PET (own grid, 4 mm) and the mask (CT grid, 2x2x3 mm)."""
    folder, lookup = pet_dicom
    ct = volume_node_from_image(app.scene, case["CT"], "case__CT")
    seg = import_label_map(app.scene, case["mask"], ct)
    pet = _as_slicer_dicom_loads_it(app.scene, folder, lookup)
    table = biomarker_review(app.scene, seg, ct, pet, lookup.get)
    expected = biomarker_rows(compute_biomarkers(read_pet_suv(folder), case["mask"]))
    rows = rows_from_table_node(table)
    assert [r["name"] for r in rows] == [r["name"] for r in expected]
    assert rows[0]["name"] == "GTVp" and rows[0]["volume_ml"] > 0 and len(rows) >= 3
    for got, want in zip(rows, expected):
        for key in ("volume_ml", "SUVmax", "SUVmean", "SUVpeak", "TLG"):
            if want[key] is None:
                assert got[key] is None, (got["name"], key)
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-6), (got["name"], key)
    # the lesions are those of the review's lesion table, in the same order (one shared sort: metrics.lesions_by_size)
    review = lesion_rows(case["mask"])
    assert [r["name"] for r in rows[2:]] == [r["lesion"] for r in review]
    assert [r["volume_ml"] for r in rows[2:]] == pytest.approx([r["volume_ml"] for r in review])
    # pressed again: the same node refilled, not a second table
    n_tables = app.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    assert biomarker_review(app.scene, seg, ct, pet, lookup.get) is table
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == n_tables
    # a PET of another place (its origin lost): one line, no table change
    far = volume_node_from_image(app.scene, Image(case["PET"].array, case["PET"].spacing, (900.0, 900.0, 900.0)), "far PET")
    with pytest.raises(InputError, match="covers only"):
        biomarker_review(app.scene, seg, ct, far)
    for n in (ct, seg, pet, table, far):
        app.scene.RemoveNode(n)


def _scene_case(app, case):
    ct = volume_node_from_image(app.scene, case["CT"], "case__CT")
    pet = volume_node_from_image(app.scene, case["PET"], "case__PT")  # NIfTI-style: SUV
    seg = import_label_map(app.scene, case["mask"], ct)
    return ct, pet, seg


GUI_SIDE = textwrap.dedent("""
    # what the Slicer widget calls, in a fresh process as clean as Slicer's GUI: table, prediction
    import json, sys
    from HNTumorSegLib.phantoms.outcome_cohort import make_outcome_case
    from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    from HNTumorSegLib.scene.outcome_review import biomarker_review, outcome_summary, show_outcome, start_outcome
    from HNTumorSegLib.scene.segmentation_io import import_label_map

    model, clinical = sys.argv[1:3]
    app = make_scene()
    case = make_outcome_case(0, 5)
    ct = volume_node_from_image(app.scene, case["CT"], "case__CT")
    pet = volume_node_from_image(app.scene, case["PET"], "case__PT")  # NIfTI-style: SUV
    seg = import_label_map(app.scene, case["mask"], ct)
    biomarker_review(app.scene, seg, ct, pet)
    run = start_outcome(app.scene, seg, ct, ct, pet, model, clinical)
    run.wait(timeout=300)
    show_outcome(app.scene, run.result)
    print(json.dumps({"state": run.state, "error": run.error, "result": run.result, "summary": outcome_summary(run.result),
                      "temp_left": run.temp_dir.exists(), "torch": "torch" in sys.modules}))
""")


@pytest.mark.slow  # ~45 s at load ~8 on 2 shared cores: CI runs it, the default run skips it
@pytest.mark.usefixtures("one_torch_thread")
def test_outcome_prediction_runs_in_a_child_and_shows_a_research_only_chart(app, case, tiny_model, tmp_path):
    """The panel's calls predict through `hntumorseg outcome` in a child (torch never in the caller),
    giving what OutcomePredictor gives in-process; the result becomes a research-only chart."""
    from HNTumorSegLib.outcome.predictor import OutcomePredictor

    clinical = tmp_path / "ehr.json"
    clinical.write_text(json.dumps(case["clinical"]))
    out = subprocess.run([sys.executable, "-c", GUI_SIDE, str(tiny_model), str(clinical)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    panel = json.loads(out.stdout.strip().splitlines()[-1])
    assert panel["state"] == "succeeded", panel["error"]
    assert panel["torch"] is False and panel["temp_left"] is False  # no torch in the GUI; no images left behind
    assert panel["summary"].startswith("RESEARCH USE ONLY")
    want = OutcomePredictor(tiny_model).predict(case["CT"], case["PET"], case["mask"], case["clinical"])
    got = panel["result"]
    assert got["rfs"]["risk"] == pytest.approx(want["rfs"]["risk"], rel=1e-4)
    assert got["rfs"]["survival"] == pytest.approx(want["rfs"]["survival"], rel=1e-4)
    assert got["hpv"]["probability"] == pytest.approx(want["hpv"]["probability"], rel=1e-4)

    nodes = show_outcome(app.scene, got)
    assert nodes.chart.GetTitle() == CHART_TITLE and CHART_TITLE.startswith("Research only")
    assert nodes.view.GetPlotChartNodeID() == nodes.chart.GetID()
    assert nodes.series.GetTableNodeID() == nodes.table.GetID()
    points = rows_from_table_node(nodes.table)
    assert points == survival_rows(got) and len(points) == 4  # day 0 and the three cut points
    assert [p["day"] for p in points] == [0.0, 769.0, 1357.0, 2626.0]
    assert points[1]["relapse_free"] == pytest.approx(got["rfs"]["survival"][0])
    # a second prediction replaces the first one's nodes, in the same view; an HPV-only one shows no curve
    again = show_outcome(app.scene, got)
    assert app.scene.GetNodeByID(nodes.chart.GetID()) is None and again.view is nodes.view
    assert show_outcome(app.scene, {"hpv": got["hpv"]}) is None
    assert app.scene.GetNodeByID(again.chart.GetID()) is None
    app.scene.RemoveNode(again.view)


def test_outcome_bad_input_fails_in_one_line_and_cancel_cleans_up(app, case, tiny_model, tmp_path):
    ct, pet, seg = _scene_case(app, case)
    csv = tmp_path / "clinical.csv"
    csv.write_text("PatientID,Age,Gender\nA,60,M\nB,70,F\n")
    run = start_outcome(app.scene, seg, ct, ct, pet, tiny_model, csv)  # two patients, none chosen
    assert run.wait(timeout=300) == "failed"
    assert "--patient" in run.error and "\n" not in run.error and run.result is None
    assert not run.temp_dir.exists()
    assert outcome_model_info(tiny_model) == (True, "tiny: predicts hpv, rfs (research use only)")
    usable, why = outcome_model_info(tmp_path)
    assert not usable and "no model.json" in why
    with pytest.raises(InputError, match="no model.json"):
        start_outcome(app.scene, seg, ct, ct, pet, tmp_path, csv)
    with pytest.raises(InputError, match="no clinical data"):
        start_outcome(app.scene, seg, ct, ct, pet, tiny_model, "")

    run = start_outcome(app.scene, seg, ct, ct, pet, tiny_model, csv, patient="B")
    assert run.running
    run.cancel()
    assert run.state == "cancelled" and run.proc.poll() is not None and not run.temp_dir.exists()
    for n in (ct, pet, seg):
        app.scene.RemoveNode(n)

