"""Auto-assignment of a task's inputs by volume name, and the prior as a segmentation (slicer-core scene)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask  # noqa: E402
from HNTumorSegLib.scene.inputs import auto_assign, load_case_folder, score_name  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import boxes_from_roi_nodes  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402


def _vol(scene, name, label=False):
    arr = np.zeros((4, 8, 8), np.uint8 if label else np.float32)
    if label:
        arr[1:3, 2:5, 2:6] = 1
        arr[2, 6, 6] = 2
    return volume_node_from_image(scene, Image(arr, (1.0, 1.0, 3.0)), name, label=label)


def test_names_decide_the_roles():
    app = make_scene()
    s = app.scene
    nodes = {n: _vol(s, n) for n in ("CHUM-001__CT", "CHUM-001__PT", "12_preRT_T2", "12_midRT_T2",
                                     "12_preRT_T2_registered", "Localizer")}
    nodes.update({n: _vol(s, n, label=True) for n in ("12_midRT_mask", "12_preRT_mask", "12_preRT_mask_registered")})
    assert auto_assign(s, "petct") == {"CT": nodes["CHUM-001__CT"], "PET": nodes["CHUM-001__PT"]}
    assert auto_assign(s, "prert") == {"T2": nodes["12_preRT_T2"]}
    mid = auto_assign(s, "midrt")
    assert mid == {"T2": nodes["12_midRT_T2"], "prior": nodes["12_preRT_mask_registered"]}
    assert score_name("12_preRT_T2_registered", "midrt", "T2") == 0
    assert score_name("PET_SUV", "petct", "PET") > 0 and score_name("ct_mask", "petct", "CT") == 0
    with pytest.raises(InputError, match="unknown task"):
        auto_assign(s, "ct")


def test_unassigned_roles_stay_empty_and_bad_folder_refused(tmp_path):
    app = make_scene()
    _vol(app.scene, "Localizer")
    assert auto_assign(app.scene, "petct") == {}
    with pytest.raises(InputError, match="not a folder"):
        load_case_folder(app.scene, tmp_path / "missing")
    with pytest.raises(InputError, match="HECKTOR"):
        load_case_folder(app.scene, tmp_path)  # an empty folder: neither layout


def test_prior_as_segmentation_gives_the_same_boxes_as_the_label_map():
    app = make_scene()
    t2 = _vol(app.scene, "12_midRT_T2")
    prior_lm = _vol(app.scene, "12_preRT_mask_registered", label=True)
    from HNTumorSegLib.scene.mrml import image_from_volume_node

    prior_img = image_from_volume_node(prior_lm)
    prior_seg = import_label_map(app.scene, prior_img, t2, name="prior segmentation")
    logic = SegmentationSceneLogic(app.scene)
    from_lm = boxes_from_roi_nodes(logic.boxes_from_prior(prior_lm, t2))
    from_seg = boxes_from_roi_nodes(logic.boxes_from_prior(prior_seg, t2))
    assert from_lm == from_seg
    assert [b.name for b in from_seg] == [b.name for b in boxes_from_mask(prior_img, margin_vox=3)]
    assert len(from_seg) == 2


def test_hecktor_case_folder_loads_into_one_study(tmp_path):
    from HNTumorSegLib.phantoms import write_hecktor_cohort
    from HNTumorSegLib.scene.mrml import sh_item

    case_id = write_hecktor_cohort(tmp_path, 1, seed=0)[0]
    app = make_scene()
    nodes = load_case_folder(app.scene, tmp_path)
    assert set(nodes) == {"CT", "PET", "label"} and nodes["label"].IsA("vtkMRMLLabelMapVolumeNode")
    assert auto_assign(app.scene, "petct") == {"CT": nodes["CT"], "PET": nodes["PET"]}
    sh = app.scene.GetSubjectHierarchyNode()
    studies = {sh.GetItemParent(sh_item(app.scene, n)) for n in nodes.values()}
    assert len(studies) == 1
    study = studies.pop()
    assert sh.GetItemName(study) == "PET/CT" and sh.GetItemName(sh.GetItemParent(study)) == case_id
