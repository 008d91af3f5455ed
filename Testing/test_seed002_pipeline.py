"""Seed 002 as a pipeline: CT-derived head labels, the three stage datasets, and a whole run on a tall phantom.

The stage models are small STU-Nets trained here for a few iterations
(:mod:`hntumorseg_training.seed002_stages`): the run checks the pipeline's plumbing and its
regions, not segmentation quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")

from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.models import load_model  # noqa: E402
from HNTumorSegLib.phantoms.petct import make_petct_case  # noqa: E402
from HNTumorSegLib.prompts.coarse_to_fine import coarse_grid, head_grid, head_point  # noqa: E402
from hntumorseg_training.converters.seed002 import convert_seed002, head_label_from_ct, stage_samples  # noqa: E402


# one seed in the default run, all three (~20 s each at load ~12 on 2 shared cores) in CI's
@pytest.mark.parametrize("seed", [3, pytest.param(11, marks=pytest.mark.slow), pytest.param(12, marks=pytest.mark.slow)])
def test_ct_head_labels_put_every_lesion_in_the_coarse_and_fine_rois(seed):
    case = make_petct_case(seed=seed, tall=True, in_plane=64)
    s = stage_samples(case["CT"], case["PET"], case["mask"])
    head = s.head[1]
    assert head.array.any() and head.same_grid(s.grids["head"].reference())
    # the head is the top of the body: no head voxel below the lowest lesion, and its top is the body's top
    ct_h = s.grids["head"].resample(case["CT"], default=-1024.0)
    zs = np.flatnonzero(head.array.any(axis=(1, 2)))
    body_top = np.flatnonzero((ct_h.array > -300).any(axis=(1, 2)))[-1]
    assert zs[-1] == body_top
    lesion_z_mm = case["mask"].index_to_physical(np.argwhere(case["mask"].array > 0)[:, ::-1])[:, 2]
    head_bottom_mm = s.grids["head"].origin_xyz[2] + zs[0] * 3.0
    assert head_bottom_mm > lesion_z_mm.min()
    # the coarse ROI placed from that head keeps every lesion voxel (volume in mm3), and so does the fine ROI
    lesion_mm3 = (case["mask"].array > 0).sum() * case["mask"].voxel_volume_mm3
    assert (s.coarse[1].array > 0).sum() * 8.0 == pytest.approx(lesion_mm3, rel=0.05)
    assert (s.fine[1].array > 0).sum() * 1.0 == pytest.approx(lesion_mm3, rel=0.05)
    assert s.grids["coarse"] == coarse_grid(head_point(head).xyz)


def test_head_label_of_a_scan_without_body_is_empty():
    grid = head_grid(make_petct_case(seed=0, in_plane=32)["CT"]).reference()
    assert not head_label_from_ct(grid.with_array(np.full(grid.array.shape, -1000, np.int16))).array.any()


@pytest.mark.slow  # ~32 s at load ~12 on 2 shared cores: CI runs it, the default run skips it
def test_convert_seed002_writes_the_three_stage_datasets(tmp_path):
    from HNTumorSegLib.phantoms import write_hecktor_cohort

    cohort = tmp_path / "cohort"
    write_hecktor_cohort(cohort, 1, seed=2, in_plane=48)
    folders = convert_seed002(cohort, tmp_path / "raw", 604, name="Tiny", fine_channels=("seed002", 4))
    head = json.loads((folders["head"] / "dataset.json").read_text())
    coarse = json.loads((folders["coarse"] / "dataset.json").read_text())
    fine = json.loads((folders["fine"] / "dataset.json").read_text())
    assert folders["head"].name == "Dataset604_TinyHead" and head["labels"] == {"background": 0, "Head": 1}
    assert head["channel_names"] == {"0": "CT_norm"} and coarse["channel_names"] == {"0": "CT_norm", "1": "PET_norm"}
    assert [i["name"] for i in fine["hntumorseg"]["inputs"]] == ["CT", "ct_sq", "ct_cbrt", "PET"]
    cid = next(iter(head["hntumorseg"]["cases"]))
    h = read_image(folders["head"] / "imagesTr" / f"{cid}_0000.nii.gz")
    c = read_image(folders["coarse"] / "imagesTr" / f"{cid}_0001.nii.gz")
    f = read_image(folders["fine"] / "imagesTr" / f"{cid}_0002.nii.gz")
    assert h.shape_xyz == (256, 256, 128) and h.spacing == pytest.approx((2.0, 2.0, 3.0))
    assert c.shape_xyz == (144, 144, 144) and c.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert f.shape_xyz == (144, 144, 144) and f.spacing == pytest.approx((1.0, 1.0, 1.0))
    x = read_image(folders["fine"] / "imagesTr" / f"{cid}_0000.nii.gz").array
    np.testing.assert_allclose(f.array, np.power(np.clip(x, 0, None), 1 / 3), atol=1e-5)
    assert read_image(folders["head"] / "labelsTr" / f"{cid}.nii.gz", label=True).array.any()


@pytest.mark.slow
def test_whole_pipeline_runs_on_a_tall_phantom_with_tiny_trained_stages(tmp_path, one_torch_thread):
    from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation
    from hntumorseg_training.seed002_stages import train_stage, write_seed002_ensemble

    samples = [stage_samples(c["CT"], c["PET"], c["mask"])
               for c in (make_petct_case(seed=s, tall=True, in_plane=64) for s in (11, 12))]
    small = {"patch_zyx": (16, 32, 32), "iterations": 15}
    train_stage("head", [s.head for s in samples], tmp_path / "head", spacing_xyz=(4.0, 4.0, 6.0), **small)
    train_stage("coarse", [s.coarse for s in samples], tmp_path / "coarse", spacing_xyz=(4.0, 4.0, 4.0), **small)
    train_stage("fine", [s.fine for s in samples], tmp_path / "fine", spacing_xyz=(2.0, 2.0, 2.0), **small)
    write_seed002_ensemble(tmp_path / "seed002", tmp_path / "head", tmp_path / "coarse",
                           [(tmp_path / "fine", 0.5), (tmp_path / "fine", 0.5)])
    model = load_model(tmp_path / "seed002")
    assert model.kind == "ensemble" and model.pipeline == "seed002-coarse-to-fine" and model.tta_default is False
    assert set(model.stages) == {"head", "coarse"} and len(model.members) == 2

    case = make_petct_case(seed=3, tall=True, in_plane=64)
    ct_path, pet_path = write_image(case["CT"], tmp_path / "ct.nii.gz"), write_image(case["PET"], tmp_path / "pet.nii.gz")
    messages: list[str] = []
    res = run_segmentation(SegmentRequest(model=str(tmp_path / "seed002"), input_paths={"CT": str(ct_path),
                                                                                          "PET": str(pet_path)},
                                          output_path=str(tmp_path / "seg.nii.gz"), device="cpu"),
                           progress=lambda stage, fraction, message: messages.append(f"{stage}: {message}"))
    labels = read_image(res.files["labels"], label=True)
    assert labels.same_grid(case["CT"]) and set(np.unique(labels.array)) <= {0, 1, 2}
    head, coarse, fine = res.regions
    assert head == {"stage": "head", **head_grid(case["CT"]).to_json()}
    assert (coarse["size"], coarse["spacing"]) == ([144] * 3, [2.0] * 3)
    assert (fine["size"], fine["spacing"]) == ([144] * 3, [1.0] * 3)
    if fine["from_tumour"]:   # the fine ROI's centre is the centroid of labels inside the coarse ROI
        centre = np.add(fine["origin"], 72.0)
        assert np.all(centre >= np.subtract(coarse["origin"], 1.0))
        assert np.all(centre <= np.add(coarse["origin"], 288.0))
    shown = "\n".join(messages)
    assert "head region origin" in shown and "coarse ROI origin" in shown and "fine ROI origin" in shown
    assert "stage 3/3: fine ensemble of 2 model(s)" in shown


def test_qa_report_shows_the_stage_crops(tmp_path):
    from HNTumorSegLib.report.qa_report import QACase, region_text, render_html

    regions = [{"stage": "coarse", "origin": [10.0, -20.5, 300.0], "size": [144, 144, 144], "spacing": [2.0, 2.0, 2.0]},
               {"stage": "fine", "origin": [1.0, 2.0, 3.0], "size": [144, 144, 144], "spacing": [1.0, 1.0, 1.0]}]
    assert region_text(regions[0]) == "coarse ROI: 144x144x144 at 2x2x2 mm, origin (10.0, -20.5, 300.0) mm"
    page = render_html([QACase("7", regions=regions)])
    assert "coarse ROI: 144x144x144 at 2x2x2 mm" in page and "fine ROI: 144x144x144 at 1x1x1 mm" in page
