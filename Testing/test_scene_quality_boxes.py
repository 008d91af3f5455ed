"""Quality chooses folds and TTA only; the region is restricted to the boxes only when the user
ticked "Restrict to boxes", and then the status line says what was skipped (issue 26, item 6).

Before, the default quality ("fast") sent ``restrict_to_boxes`` and for mid-RT the boxes came
from the prior even with the box unticked, so a new node outside the pre-RT boxes was never
segmented. On slicer-core with the real worker and the demo model on a phantom case.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_module

require_module("slicer", "pip install slicer-core")

from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.pipeline.tasks import REGION_CONTEXT_MM  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask, boxes_to_mask  # noqa: E402
from HNTumorSegLib.scene.inputs import load_case_folder  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import image_from_volume_node, make_scene  # noqa: E402
from HNTumorSegLib.scene.panel_params import QUALITY_TEXT, PanelParameters  # noqa: E402
from HNTumorSegLib.vocab import Quality  # noqa: E402


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    root = tmp_path_factory.mktemp("cohort")
    ids = write_hntsmrg_cohort(root, n=1, seed=3, shape=(16, 48, 48), spacing=(1.8, 1.8, 3.0))
    return root / ids[0]


def _run(case, ended_logics, **choices):
    """Apply on mid-RT with the registered prior and no scene boxes; the panel's other defaults."""
    app = make_scene()
    nodes = load_case_folder(app.scene, case)
    logic = SegmentationSceneLogic(app.scene, timeout_s=600)
    ended_logics.append(logic)
    params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                        prior=nodes["preRT_mask_registered"].GetID(), model="demo-midrt", device="cpu", **choices)
    logic.start(params)
    t_end = time.monotonic() + 600
    while logic.running and time.monotonic() < t_end:
        logic.poll()
        time.sleep(0.1)
    state = logic.poll()
    assert logic.run.state == "succeeded", (state.error, list(logic.run.stderr_tail)[-5:])
    labels = read_image(logic.result_files["labels"], label=True)
    return logic, state, nodes, labels


def test_default_apply_on_midrt_with_a_prior_segments_the_whole_image(case, ended_logics):
    defaults = PanelParameters()
    assert defaults.quality is Quality.FAST and defaults.restrict_to_boxes is False
    logic, state, nodes, _ = _run(case, ended_logics)      # the defaults: fast, Use boxes on, Restrict to boxes off
    # the old code sent restrict_to_boxes=True for "fast" (and the prior's boxes were the region)
    assert logic.run._request["restrict_to_boxes"] is False
    assert state.note == ""                     # nothing was skipped: no restriction line
    full = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                      prior=nodes["preRT_mask_registered"].GetID(), model="demo-midrt", quality="full")
    assert logic.snapshot(full).fields["restrict_to_boxes"] is False
    assert all("whole image" in QUALITY_TEXT[q] for q in Quality)   # the panel's list says so


def test_ticking_restrict_to_boxes_restricts_and_the_status_line_says_so(case, ended_logics):
    logic, state, nodes, labels = _run(case, ended_logics, restrict_to_boxes=True)
    assert logic.run._request["restrict_to_boxes"] is True
    # the pipeline's boxes: the prior's (no scene boxes), + 5 mm; nothing is labelled outside them
    prior = image_from_volume_node(nodes["preRT_mask_registered"])
    boxes = boxes_from_mask(prior, margin_vox=4)
    inside = boxes_to_mask(boxes, labels, margin_mm=REGION_CONTEXT_MM)
    assert not labels.array[~inside].any()
    skipped = 100.0 * (1.0 - inside.mean())
    assert state.note.startswith("Restricted to the boxes (" + ", ".join(b.name for b in boxes))
    assert f"{skipped:.1f} % of the image outside them was not segmented" in state.note
    assert "untick Restrict to boxes" in state.note
    assert np.isclose(REGION_CONTEXT_MM, 5.0) and "+ 5 mm" in state.note
