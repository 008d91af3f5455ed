"""Issue 23 part 4: the Slicer prior selector takes a planning system's RTSTRUCT / SEG segmentation.

A segmentation shaped like the one Slicer's DICOM module makes from a clinic's RTSTRUCT (segment
names GTV_P, GTVn_L2, "GTV node", Brainstem; no terminology) -> the structure table is auto-filled
by the command line's rules -> the prior label map the worker gets equals the expected one; the
table is editable; nothing recognised or a double match is one message listing the segments.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.panel_params import PanelParameters  # noqa: E402
from HNTumorSegLib.scene.prior_table import (auto_table_text, prior_label_map, segmentation_from_label_map,  # noqa: E402
                                             table_message, table_rows, table_text)
from HNTumorSegLib.scene.segmentation_io import TERMINOLOGY  # noqa: E402
from HNTumorSegLib.vocab import StructureRole, Task  # noqa: E402

CLINIC_NAMES = {1: ["GTV_P"], 2: ["GTVn_L2", "GTV node"]}


@pytest.fixture(scope="module")
def scene_case():
    scene = make_scene().scene
    case = make_midrt_case(seed=4, shape=(12, 48, 48))
    mask = case["preRT_mask_registered"]
    from scipy import ndimage

    assert ndimage.label(mask.array == 2)[1] >= 2, "the phantom needs two nodes for two node structures"
    t2 = volume_node_from_image(scene, case["midRT_T2"], "midRT_T2")
    seg = segmentation_from_label_map(scene, mask, t2, CLINIC_NAMES, extra=["Brainstem", "Parotid_L"])
    return scene, case, t2, seg


def test_rtstruct_like_segmentation_fills_the_table_and_gives_the_expected_prior(scene_case, tmp_path):
    scene, case, t2, seg = scene_case
    assert table_rows(seg) == [("GTV_P", StructureRole.GTVP), ("GTVn_L2", StructureRole.GTVN),
                               ("GTV node", StructureRole.GTVN), ("Brainstem", StructureRole.IGNORE),
                               ("Parotid_L", StructureRole.IGNORE)]
    text = auto_table_text(seg)
    assert text == "GTVp=GTV_P;GTVn=GTVn_L2,GTV node"
    assert table_message(seg, text) == ""
    expected = case["preRT_mask_registered"].array
    assert np.array_equal(prior_label_map(seg, t2, text).array, expected)
    assert np.array_equal(prior_label_map(seg, t2, "").array, expected)   # "" = automatic, the same
    # the panel's parameters reach the worker's prior.nii.gz through the table
    logic = SegmentationSceneLogic(scene)
    params = PanelParameters(task=Task.MIDRT, model="demo-midrt", t2=t2, prior=seg,
                             prior_structures=text).to_run_parameters()
    assert params.prior_structures == text
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(), out.mkdir()
    request = logic.build_request(params, work, out)
    assert np.array_equal(read_image(request.prior_path, label=True).array, expected)
    # boxes from this prior: one per lesion, as from a prior named GTVp / GTVn (refused before)
    rois = logic.boxes_from_prior(seg, t2, structures=text)
    assert sorted(r.GetName() for r in rois) == ["GTVn-1", "GTVn-2", "GTVp-1"]


def test_table_is_editable(scene_case):
    _scene, case, t2, seg = scene_case
    rows = [(name, StructureRole.IGNORE if name == "GTV node" else role) for name, role in table_rows(seg)]
    rows = [(name, StructureRole.GTVP if name == "Brainstem" else role) for name, role in rows]
    text = table_text(rows)
    assert text == "GTVp=GTV_P,Brainstem;GTVn=GTVn_L2"
    assert [r for _n, r in table_rows(seg, text)] == [StructureRole.GTVP, StructureRole.GTVN, StructureRole.IGNORE,
                                                       StructureRole.GTVP, StructureRole.IGNORE]
    labels = prior_label_map(seg, t2, text).array
    full = case["preRT_mask_registered"].array
    assert (labels == 1).sum() == (full == 1).sum()              # Brainstem is empty: GTVp unchanged
    assert 0 < (labels == 2).sum() < (full == 2).sum()           # the ignored node is gone
    only_p = prior_label_map(seg, t2, "GTVp=GTV_P").array         # GTVn all ignored: not filled in by itself
    assert (only_p == 2).sum() == 0 and (only_p == 1).sum() == (full == 1).sum()


def test_nothing_recognised_or_a_double_match_is_one_message(scene_case):
    scene, case, t2, _seg = scene_case
    organs = segmentation_from_label_map(scene, case["preRT_mask_registered"], t2, {1: ["Brainstem"], 2: ["Cord"]},
                                         name="organs")
    message = table_message(organs)
    assert "no structure" in message and "'Brainstem', 'Cord'" in message and "\n" not in message
    assert "structure table" in message
    assert auto_table_text(organs) == ""
    with pytest.raises(InputError, match="Brainstem"):
        prior_label_map(organs, t2, "")
    # a name and a code that disagree (a SEG whose "GTVp" segment is coded Neoplasm, Secondary)
    coded = segmentation_from_label_map(scene, case["preRT_mask_registered"], t2, {1: ["GTVp"], 2: ["GTVn"]},
                                        name="coded")
    segment = coded.GetSegmentation().GetNthSegment(0)
    segment.SetTerminology(TERMINOLOGY[2])
    message = table_message(coded)
    assert "matches both GTVp and GTVn" in message and "'GTVp', 'GTVn'" in message
    # the table giving one segment to both labels, or naming a segment that is not there
    assert "both GTVp and GTVn" in table_message(coded, "GTVp=GTVn;GTVn=GTVn")
    assert "did you mean GTVn" in table_message(coded, "GTVp=GTVp;GTVn=GTVnn")
    # Apply refuses it with the same line, before any worker starts
    logic = SegmentationSceneLogic(scene)
    params = Parameters(task="midrt", inputs={"T2": t2.GetID()}, prior=organs.GetID(), model="demo-midrt")
    with pytest.raises(InputError, match="no structure"):
        logic.start(params)
    assert logic.run is None
