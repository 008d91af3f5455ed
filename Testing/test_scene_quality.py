"""Slicer's quality switch on a real MRML scene (slicer-core) and the real worker: "fast" runs
the first fold the model has. A model trained on folds 1-4 (no fold 0) must work, with fold 1.

The model is the bundled demo model re-labelled: its one network is fold 1, and the card also
lists folds 2-4 whose weight files are absent. "fast" loading anything but fold 1 would fail;
"full" (every fold) does fail, naming the missing file - so the test can tell them apart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.folds import Folds  # noqa: E402
from HNTumorSegLib.models.card import read_card  # noqa: E402
from HNTumorSegLib.scene.inputs import load_case_folder  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic, quality_settings  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene  # noqa: E402

DEMO = "demo-midrt"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    root = tmp_path_factory.mktemp("cohort")
    ids = write_hntsmrg_cohort(root, n=1, seed=7, shape=(16, 48, 48), spacing=(1.8, 1.8, 3.0))
    return root / ids[0]


@pytest.fixture(scope="module")
def folds_1_to_4_model(tmp_path_factory):
    from HNTumorSegLib.models.loader import resolve_model_path

    demo = resolve_model_path(DEMO)
    folder = tmp_path_factory.mktemp("model") / "folds-1-4"
    folder.mkdir()
    card = json.loads((demo / "model.json").read_text())
    (only,) = card["weights"].values()
    shutil.copyfile(demo / only, folder / "fold_1.pt")
    card["folds"] = [1, 2, 3, 4]
    card["weights"] = {str(f): f"fold_{f}.pt" for f in (1, 2, 3, 4)}
    card["sha256"] = {"fold_1.pt": hashlib.sha256((folder / "fold_1.pt").read_bytes()).hexdigest()}
    card["id"] = "folds-1-4"
    (folder / "model.json").write_text(json.dumps(card, indent=1))
    return folder


def test_quality_settings():
    assert quality_settings("fast") == (Folds.first(), False)
    assert quality_settings("full") == (Folds.all(), True)


def _run(case, model, quality):
    app = make_scene()
    nodes = load_case_folder(app.scene, case)
    logic = SegmentationSceneLogic(app.scene, timeout_s=600)
    params = Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                        prior=nodes["preRT_mask_registered"].GetID(), model=str(model), device="cpu",
                        quality=quality)
    logic.start(params)
    t_end = time.monotonic() + 600
    while logic.running and time.monotonic() < t_end:
        logic.poll()
        time.sleep(0.2)
    return logic, logic.poll()


def test_fast_on_a_model_with_folds_1_to_4_uses_fold_1(case, folds_1_to_4_model, tmp_path):
    assert Folds.first().resolve(read_card(folds_1_to_4_model).folds, folds_1_to_4_model) == [1]
    logic, state = _run(case, folds_1_to_4_model, "fast")
    assert logic.run.state == "succeeded", f"{state.state}: {state.error} {list(logic.run.stderr_tail)[-5:]}"
    seg = logic.import_result()
    assert seg.GetSegmentation().GetNumberOfSegments() == 2


def test_full_on_that_model_needs_every_fold(case, folds_1_to_4_model):
    logic, state = _run(case, folds_1_to_4_model, "full")
    assert logic.run.state == "failed"
    assert "fold 2" in state.error and "fold_2.pt" in state.error
