"""One scripted session through the module's logic on a real vtkMRMLScene (slicer-core).

Load a phantom HNTS-MRG case folder -> inputs assigned by name -> boxes from the registered
prior -> the user moves a box -> the worker runs in a child process (polled like the GUI's
QTimer does) -> the result is imported -> reviewed against the mid-RT reference -> exported.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.folds import Folds  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask, read_boxes  # noqa: E402
from HNTumorSegLib.scene.inputs import auto_assign, load_case_folder  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic, Parameters  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene  # noqa: E402
from HNTumorSegLib.scene.review import rows_from_table_node  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import box_from_roi_node, lesion_roi_nodes  # noqa: E402

DEMO_MODEL = "demo-midrt"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    root = tmp_path_factory.mktemp("cohort")
    ids = write_hntsmrg_cohort(root, n=1, seed=5, shape=(16, 48, 48), spacing=(1.8, 1.8, 3.0))
    return root / ids[0]


def test_load_assign_boxes_and_request(case, tmp_path):
    app = make_scene()
    nodes = load_case_folder(app.scene, case)
    assert {"midRT_T2", "preRT_mask_registered", "midRT_mask", "preRT_T2"} <= set(nodes)
    assigned = auto_assign(app.scene, "midrt")
    assert assigned["T2"] is nodes["midRT_T2"] and assigned["prior"] is nodes["preRT_mask_registered"]
    assert auto_assign(app.scene, "prert")["T2"] is nodes["preRT_T2"]
    sh = app.scene.GetSubjectHierarchyNode()
    study = sh.GetItemParent(sh.GetItemByDataNode(nodes["midRT_T2"]))
    assert sh.GetItemName(study) == "midRT" and sh.GetItemName(sh.GetItemParent(study)) == case.name

    logic = SegmentationSceneLogic(app.scene)
    rois = logic.boxes_from_prior(nodes["preRT_mask_registered"], nodes["midRT_T2"])
    prior = read_image(case / "midRT" / f"{case.name}_preRT_mask_registered.nii.gz", label=True)
    assert len(rois) >= 1 and rois[0].GetName() == "GTVp-1"
    assert len(rois) == len(boxes_from_mask(prior))
    moved = np.array(rois[0].GetCenter()) + [3.6, 0.0, 0.0]
    rois[0].SetCenter(*moved)
    params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                        prior=nodes["preRT_mask_registered"].GetID(), model=DEMO_MODEL, quality="fast")
    request = logic.build_request(params, tmp_path, tmp_path)
    assert request.folds == Folds.first() and request.tta is False and request.task == "midrt"
    boxes = read_boxes(request.boxes_path)
    np.testing.assert_allclose(boxes[0].centre_ras, moved, atol=1e-6)
    np.testing.assert_allclose(boxes[0].min_ras, box_from_roi_node(rois[0]).min_ras, atol=1e-5)  # json: 6 decimals
    np.testing.assert_array_equal(read_image(request.prior_path, label=True).array, prior.array)
    assert read_image(request.input_paths["T2"]).same_grid(prior)
    json.dumps(request.to_dict())
    with pytest.raises(InputError, match="no pre-RT prior"):
        logic.build_request(Parameters(task="midrt", inputs=params.inputs, model=DEMO_MODEL), tmp_path, tmp_path)


def test_full_session_runs_the_worker_and_exports(case, tmp_path):
    app = make_scene()
    nodes = load_case_folder(app.scene, case)
    logic = SegmentationSceneLogic(app.scene, timeout_s=600)
    rois = logic.boxes_from_prior(nodes["preRT_mask_registered"], nodes["midRT_T2"])
    rois[0].SetCenter(*(np.array(rois[0].GetCenter()) + [1.8, 0.0, 0.0]))
    params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                        prior=nodes["preRT_mask_registered"].GetID(), model=DEMO_MODEL, device="cpu")
    logic.start(params)
    percents, t_end = [], time.monotonic() + 600
    while logic.running and time.monotonic() < t_end:
        state = logic.poll()
        percents.append(state.percent)
        time.sleep(0.2)
    state = logic.poll()
    assert logic.run.state == "succeeded", f"{logic.run.state}: {state.error} {list(logic.run.stderr_tail)[-5:]}"
    assert percents == sorted(percents)  # progress never goes back
    seg = logic.import_result()
    assert seg.GetSegmentation().GetNumberOfSegments() == 2
    tables = logic.review(seg, nodes["midRT_T2"], reference=nodes["midRT_mask"])
    rows = rows_from_table_node(tables["comparison"])
    assert [r["segment"] for r in rows] == ["GTVp", "GTVn"]
    files = logic.export(seg, nodes["midRT_T2"], tmp_path, formats=("nifti", "csv"))
    out = read_image(files["nifti"], label=True)
    assert out.same_grid(read_image(case / "midRT" / f"{case.name}_midRT_T2.nii.gz"))
    assert set(np.unique(out.array)) <= {0, 1, 2}
    assert lesion_roi_nodes(app.scene)  # the boxes stay for another run


def _start(case, model):
    app = make_scene()
    nodes = load_case_folder(app.scene, case)
    logic = SegmentationSceneLogic(app.scene, timeout_s=300)
    params = Parameters(task="prert", inputs={"T2": nodes["preRT_T2"].GetID()}, model=model, device="cpu")
    logic.start(params)
    logic.wait_started()   # start() returns at once (issue 26: the inputs are written in a thread)
    return logic


def test_cancel_ends_the_run_and_leaves_nothing(case):
    logic = _start(case, DEMO_MODEL)
    temp_dir, result_dir = logic.run.temp_dir, logic.result_dir
    assert logic.running and temp_dir.is_dir() and result_dir.is_dir()
    logic.poll()
    t0 = time.monotonic()
    logic.cancel()
    assert time.monotonic() - t0 < 30.0  # the kill's grace period + ~0.5 s; room for a loaded machine
    assert not logic.running and logic.run.state == "cancelled"
    assert not temp_dir.exists() and not result_dir.exists()
    assert logic.poll().state == "cancelled"
    with pytest.raises(InputError, match="no finished segmentation"):
        logic.import_result()


def test_worker_error_reaches_the_poll_state(case):
    logic = _start(case, "no-such-model-hntumorseg")
    t_end = time.monotonic() + 300
    while logic.running and time.monotonic() < t_end:
        logic.poll()
        time.sleep(0.2)
    state = logic.poll()
    assert logic.run.state == "failed" and not state.running
    assert logic.result_dir is None  # nothing left behind
    assert "no-such-model-hntumorseg" in state.error
