"""Label map <-> segmentation node on a real vtkMRMLScene (slicer-core): geometry, terminology, hierarchy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

slicer = require_module("slicer")

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.scene.mrml import (image_from_volume_node, make_scene, sh_item, study_item,  # noqa: E402
                                      volume_node_from_image)
from HNTumorSegLib.scene.roi_boxes import LABEL_COLOURS  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import (TERMINOLOGY_CONTEXT, add_uncertainty_volume,  # noqa: E402
                                                 export_label_map, import_label_map, label_of_segment)

TERM_JSON = (Path(__file__).resolve().parent.parent / "HNTumorSeg" / "Resources"
             / "SegmentationCategoryTypeModifier-HNTumorSeg.term.json")


@pytest.fixture(scope="module")
def app():
    return make_scene()


def _labels(direction=np.eye(3), with_nodes=True) -> Image:
    arr = np.zeros((9, 18, 22), np.uint8)
    arr[2:6, 3:9, 4:12] = 1
    arr[4, 6, 7] = 0  # a hole
    if with_nodes:
        arr[6:8, 12:16, 14:19] = 2
        arr[1, 15, 2] = 2  # a one-voxel node
    return Image(arr, (0.7, 0.9, 2.5), (-40.0, 25.0, -10.0), direction)


def _oblique() -> np.ndarray:
    a = np.radians(20)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([1, -1, 1])


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), _oblique()],
                         ids=["identity", "flipped", "oblique"])
def test_import_then_export_equals_label_map_and_grid(app, direction):
    labels = _labels(direction)
    ref = volume_node_from_image(app.scene, labels.with_array(labels.array.astype(np.float32) * 100), "T2")
    seg = import_label_map(app.scene, labels, ref)
    out = export_label_map(seg, ref)
    assert out.same_grid(labels)
    np.testing.assert_allclose(out.direction, labels.direction, atol=1e-6)
    np.testing.assert_array_equal(out.array, labels.array)
    assert out.array.dtype == np.uint8
    app.scene.RemoveNode(seg)
    app.scene.RemoveNode(ref)


def test_segments_carry_names_colours_terminology_and_reference(app):
    labels = _labels()
    ref = volume_node_from_image(app.scene, labels.with_array(labels.array.astype(np.float32)), "T2")
    seg = import_label_map(app.scene, labels, ref, name="result")
    s = seg.GetSegmentation()
    assert s.GetNumberOfSegments() == 2
    entry = slicer.vtkSlicerTerminologyEntry()
    expected = {1: ("GTVp", "372087000", "Neoplasm, Primary"), 2: ("GTVn", "14799000", "Neoplasm, Secondary")}
    for i, label in enumerate((1, 2)):
        segment = s.GetNthSegment(i)  # GTVp first
        name, code, meaning = expected[label]
        assert segment.GetName() == name and label_of_segment(segment) == label
        np.testing.assert_allclose(segment.GetColor(), LABEL_COLOURS[label])
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        assert entry.GetTerminologyContextName() == TERMINOLOGY_CONTEXT
        assert entry.GetCategoryObject().GetCodeValue() == "49755003"
        assert (entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()) == (code, meaning)
        assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert entry.GetRegionObject().GetCodeValue() == "774007"
    # reference geometry is the input volume's
    assert seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole()) == ref.GetID()
    app.scene.RemoveNode(seg)
    app.scene.RemoveNode(ref)


def test_terminology_file_loads_in_slicer_and_matches_segments():
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert logic.LoadTerminologyFromFile(str(TERM_JSON)) == TERMINOLOGY_CONTEXT
    category = slicer.vtkSlicerTerminologyCategory()
    assert logic.GetNthCategoryInTerminology(TERMINOLOGY_CONTEXT, 0, category)
    types = {}
    for i in range(logic.GetNumberOfTypesInTerminologyCategory(TERMINOLOGY_CONTEXT, category)):
        t = slicer.vtkSlicerTerminologyType()
        logic.GetNthTypeInTerminologyCategory(TERMINOLOGY_CONTEXT, category, i, t)
        types[t.GetSlicerLabel()] = (t.GetCodeValue(), tuple(t.GetRecommendedDisplayRGBValue()))
    assert types["GTVp"] == ("372087000", tuple(round(255 * c) for c in LABEL_COLOURS[1]))
    assert types["GTVn"] == ("14799000", tuple(round(255 * c) for c in LABEL_COLOURS[2]))
    assert json.loads(TERM_JSON.read_text())["SegmentationCodes"]["Category"][0]["CodeValue"] == "49755003"


def test_segmentation_goes_into_the_input_study_and_empty_label_gets_a_segment(app):
    labels = _labels(with_nodes=False)
    ref = volume_node_from_image(app.scene, labels.with_array(labels.array.astype(np.float32)), "1_midRT_T2")
    sh = app.scene.GetSubjectHierarchyNode()
    study = study_item(app.scene, "1", "midRT")
    sh.SetItemParent(sh_item(app.scene, ref), study)
    seg = import_label_map(app.scene, labels, ref)
    assert sh.GetItemParent(sh_item(app.scene, seg)) == study
    assert sh.GetItemLevel(study) == "Study"
    names = [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
    assert names == ["GTVp", "GTVn"]  # GTVn present (empty) so the user can paint nodes
    np.testing.assert_array_equal(export_label_map(seg, ref).array, labels.array)
    unc = add_uncertainty_volume(app.scene, labels.with_array(np.random.rand(*labels.array.shape)), ref)
    assert sh.GetItemParent(sh_item(app.scene, unc)) == study
    for n in (seg, ref, unc):
        app.scene.RemoveNode(n)


def test_renamed_user_segment_exports_by_label_and_bad_grid_refused(app):
    labels = _labels()
    ref = volume_node_from_image(app.scene, labels.with_array(labels.array.astype(np.float32)), "T2")
    seg = import_label_map(app.scene, labels, ref)
    s = seg.GetSegmentation()
    # the user moves GTVn to the top and renames it: its label tag still says GTVn
    gtvn_id = s.GetNthSegmentID(1)
    s.SetSegmentIndex(gtvn_id, 0)
    s.GetSegment(gtvn_id).SetName("nodes level II")
    np.testing.assert_array_equal(export_label_map(seg, ref).array, labels.array)
    other = Image(labels.array, (1.0, 1.0, 1.0), labels.origin)
    with pytest.raises(InputError, match="grid differs"):
        import_label_map(app.scene, other, ref)
    app.scene.RemoveNode(seg)
    app.scene.RemoveNode(ref)


def test_volume_node_round_trip_keeps_geometry(app):
    img = Image(np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32), (0.5, 0.6, 4.0),
                (1.0, 2.0, 3.0), _oblique())
    node = volume_node_from_image(app.scene, img, "x")
    back = image_from_volume_node(node)
    assert back.same_grid(img)
    np.testing.assert_array_equal(back.array, img.array)
    app.scene.RemoveNode(node)
