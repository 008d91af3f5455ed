"""A demo model on a non-phantom image says so in the panel (issue 26, item 8), decided by scene logic.

Demo = the model card's ``training.phantom_seeds`` (written by the demo trainer); phantom = the
``HNTumorSeg.Phantom`` node attribute, or the phantoms' size rule (at most one axis longer than
128 voxels; clinical head-and-neck CT and T2w MRI have 256 or more in-plane). Real MRML volume
nodes (slicer-core); the phantoms are the project's own generators at their default sizes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.fileio import read_json  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.models.catalogue import installed_path  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case  # noqa: E402
from HNTumorSegLib.scene.model_choice import (DEMO_WARNING, PHANTOM_ATTRIBUTE, demo_warning,  # noqa: E402
                                              is_demo_model, is_project_phantom)
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    return make_scene().scene


def clinical(scene, shape_zyx=(40, 512, 512), spacing=(0.5, 0.5, 3.0), name="T2"):
    return volume_node_from_image(scene, Image(np.zeros(shape_zyx, np.int16), spacing), name)


def test_demo_model_on_clinical_images_shows_the_line(scene):
    assert DEMO_WARNING == "Demo model, synthetic training, not for clinical images."
    assert demo_warning("demo-midrt", "midrt", clinical(scene)) == DEMO_WARNING
    ct = clinical(scene, (180, 512, 512), (0.98, 0.98, 2.0), "CT")
    assert demo_warning("demo-petct", "petct", ct) == DEMO_WARNING
    sagittal = clinical(scene, (256, 256, 30), (1.0, 1.0, 4.0))     # sagittal T2: in-plane axes j, k
    assert demo_warning("demo-midrt  ", "midrt", sagittal) == DEMO_WARNING


def test_no_line_on_the_project_phantoms(scene):
    mid = make_midrt_case(seed=0)                      # the generators' default sizes
    t2 = volume_node_from_image(scene, mid["midRT_T2"], "1_midRT_T2")
    assert is_project_phantom(t2) and demo_warning("demo-midrt", "midrt", t2) == ""
    pet_ct = make_petct_case(seed=0)
    ct = volume_node_from_image(scene, pet_ct["CT"], "CHUM-001__CT")
    assert is_project_phantom(ct) and demo_warning("demo-petct", "petct", ct) == ""


def test_the_phantom_marker_wins_over_size(scene):
    big = clinical(scene)
    assert not is_project_phantom(big)
    big.SetAttribute(PHANTOM_ATTRIBUTE, "1")
    assert is_project_phantom(big) and demo_warning("demo-midrt", "midrt", big) == ""
    big.SetAttribute(PHANTOM_ATTRIBUTE, "0")
    assert demo_warning("demo-midrt", "midrt", big) == DEMO_WARNING


def test_only_demo_models_warn(scene, tmp_path):
    image = clinical(scene)
    assert demo_warning("GradientSegHNTS", "midrt", image) == ""          # not installed, not a demo
    assert demo_warning("", "midrt", image) == "" and demo_warning("demo-midrt", "midrt", None) == ""
    demo_copy = tmp_path / "my-demo"                                      # a demo browsed to as a folder
    shutil.copytree(installed_path("demo-midrt"), demo_copy)
    assert is_demo_model(str(demo_copy), "midrt") and demo_warning(str(demo_copy), "midrt", image) == DEMO_WARNING
    card = read_json(demo_copy / "model.json", "model.json", "fix it")
    del card["training"]                                                  # a real model's card: no phantom seeds
    (demo_copy / "model.json").write_text(__import__("json").dumps(card))
    assert not is_demo_model(str(demo_copy), "midrt") and demo_warning(str(demo_copy), "midrt", image) == ""
