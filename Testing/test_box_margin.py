"""The inference box margin is one number, the model card's ``box_margin_vox``, read alike by
the pipeline (mid-RT boxes from the prior) and by Slicer's "Boxes from prior" (issue 10).

Real parts: the bundled demo-midrt model (copied, its card changed to margin 6), NIfTI files
read by the pipeline's validation, a slicer-core MRML scene for the Slicer side.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.models.card import read_card, write_card  # noqa: E402
from HNTumorSegLib.models.loader import resolve_model_path  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.pipeline.tasks import prepare_work  # noqa: E402
from HNTumorSegLib.pipeline.validate import validate_request  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import boxes_from_roi_nodes  # noqa: E402


def _case(tmp_path):
    spacing, origin = (0.8, 0.8, 3.0), (-20.0, -25.0, 10.0)
    t2 = np.random.default_rng(0).normal(100, 10, (16, 48, 48)).astype(np.float32)
    prior = np.zeros(t2.shape, np.uint8)
    prior[5:9, 10:20, 12:22] = 1
    prior[10:12, 30:36, 30:34] = 2
    t2_img, prior_img = Image(t2, spacing, origin), Image(prior, spacing, origin)
    return t2_img, prior_img, write_image(t2_img, tmp_path / "t2.nii.gz"), write_image(prior_img, tmp_path / "prior.nii.gz")


def _model_with_margin(tmp_path, margin: int):
    folder = tmp_path / "model"
    shutil.copytree(resolve_model_path("demo-midrt"), folder)
    card = read_card(folder).to_dict()
    card["box_margin_vox"] = margin
    write_card(card, folder / "model.json")
    return folder


def _extent(boxes):
    return sorted((b.label, np.round(b.min_ras, 3).tolist(), np.round(b.max_ras, 3).tolist()) for b in boxes)


@pytest.mark.parametrize("margin", [6, 4])
def test_pipeline_and_slicer_boxes_use_the_cards_margin(tmp_path, margin):
    t2_img, prior_img, t2_path, prior_path = _case(tmp_path)
    folder = _model_with_margin(tmp_path, margin)

    case = validate_request(SegmentRequest(model=str(folder), input_paths={"T2": str(t2_path)},
                                           prior_path=str(prior_path), output_path=str(tmp_path / "out.nii.gz")))
    pipeline_boxes = prepare_work(case).boxes

    app = make_scene()
    t2_node = volume_node_from_image(app.scene, t2_img, "midRT_T2")
    prior_node = volume_node_from_image(app.scene, prior_img, "preRT_mask_registered", label=True)
    logic = SegmentationSceneLogic(app.scene)
    slicer_boxes = boxes_from_roi_nodes(logic.boxes_from_prior(prior_node, t2_node, model=str(folder)))

    expected = boxes_from_mask(prior_img, margin_vox=margin)
    assert len(pipeline_boxes) == len(slicer_boxes) == 2
    assert _extent(pipeline_boxes) == _extent(slicer_boxes) == _extent(expected)
    if margin != 4:   # the number really comes from the card, not a default
        assert _extent(expected) != _extent(boxes_from_mask(prior_img, margin_vox=4))
    assert not (tmp_path / "out.nii.gz").exists()
