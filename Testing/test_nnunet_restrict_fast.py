"""`--restrict-to-boxes` is a real fast path for nnU-Net results folders (not only a label filter).

The folder is the REAL GradientSegHNTS-layout one trained by nnunetv2 (:mod:`published_fixture`:
ResEnc M plans, channels T2 + gradient, patch 16 x 48 x 48, spacing 0.9 x 0.9 x 3 mm).

What is checked, and why that is the right bar:

* fewer tiles run (the result's ``n_tiles``), and the tiles are the whole-image run's tiles that
  touch the boxes (``region_tiling="grid"``), so INSIDE the boxes the labels equal the
  whole-image run's voxel for voxel - no margin is subtracted from the boxes: every tile covering
  a box voxel runs, and the boxes are mapped onto nnU-Net's grid grown by one preprocessed voxel
  plus :data:`REGION_CONTEXT_MM`, so the export's linear resampling of the logits back to the
  image reads only real logits for every voxel inside a box;
* outside the boxes + context everything is background;
* the mapping onto nnU-Net's preprocessed grid (transpose, non-zero crop, resampling) is checked
  against nnU-Net's own ``DefaultPreprocessor.run_case_npy`` fed the box as a segmentation, with a
  non-trivial transpose, crop and anisotropic resampling.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nnunetv2  # noqa: F401  (a requirement: missing fails, never skips)
import torch  # noqa: F401

from HNTumorSegLib.image import Image, read_image, write_image
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.pipeline.run import run_segmentation
from HNTumorSegLib.pipeline.tasks import REGION_CONTEXT_MM
from HNTumorSegLib.prompts.boxes import boxes_from_mask, boxes_to_mask
from published_fixture import build_gradientseg_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(test_cache_dir):
    return build_gradientseg_results(test_cache_dir)


@pytest.fixture(scope="module")
def midrt_case(tmp_path_factory):
    """A mid-RT phantom larger than the fixture's cases (5 x 5 x 5 tiles whole image) with its prior."""
    from HNTumorSegLib.phantoms import make_midrt_case

    d = tmp_path_factory.mktemp("restrict_case")
    case = make_midrt_case(seed=3, shape=(48, 112, 112), spacing=(0.9, 0.9, 3.0))
    write_image(case["midRT_T2"], d / "T2.nii.gz")
    write_image(case["preRT_mask_registered"], d / "prior.nii.gz")
    return d


def _segment(folder, case_dir, out, restrict: bool):
    req = SegmentRequest(model=str(folder), input_paths={"T2": str(case_dir / "T2.nii.gz")},
                         prior_path=str(case_dir / "prior.nii.gz"), output_path=str(out), task="midrt",
                         device="cpu", tta=False, restrict_to_boxes=restrict)
    events = []
    res = run_segmentation(req, progress=lambda stage, fraction, message="": events.append((stage, message)))
    return res, read_image(out, label=True), events


def test_restricted_runs_fewer_tiles_and_equals_whole_image_inside_boxes(folder, midrt_case, tmp_path):
    whole, whole_labels, _ = _segment(folder, midrt_case, tmp_path / "whole.nii.gz", restrict=False)
    fast, fast_labels, events = _segment(folder, midrt_case, tmp_path / "fast.nii.gz", restrict=True)
    assert whole.boxes and [b.to_dict() for b in fast.boxes] == [b.to_dict() for b in whole.boxes]
    assert whole.n_tiles >= 50                           # 16 x 48 x 48 tiles over the cropped body
    print(f"tiles whole {whole.n_tiles}, restricted {fast.n_tiles}")
    assert 0 < fast.n_tiles < whole.n_tiles
    tile_events = [m for s, m in events if s == "inference" and " tile " in m]
    assert tile_events[-1].endswith(f"tile {fast.n_tiles}/{fast.n_tiles}")
    t2 = read_image(midrt_case / "T2.nii.gz")
    inside = boxes_to_mask(fast.boxes, t2)
    kept = boxes_to_mask(fast.boxes, t2, margin_mm=REGION_CONTEXT_MM)
    assert whole_labels.array[inside].any(), "the test needs lesions inside the boxes"
    np.testing.assert_array_equal(fast_labels.array[inside], whole_labels.array[inside])
    assert not fast_labels.array[~kept].any()
    assert whole_labels.array[~kept].any(), "the whole-image run labels voxels outside the boxes"


def _nnunet_case_files(folder, tmp_path):
    """A T2 with zero background around the body (nnU-Net crops it) at a spacing unlike the plans'
    (nnU-Net resamples it), and a gradient channel zero outside a box: (files, box slices, T2 image)."""
    from HNTumorSegLib.phantoms import make_midrt_case
    from HNTumorSegLib.prompts.gradient_map import gradient_map

    case = make_midrt_case(seed=5, shape=(40, 150, 140), spacing=(0.7, 1.1, 2.2))
    t2, prior = case["midRT_T2"], case["preRT_mask_registered"]
    arr = np.asarray(t2.array, np.float32).copy()
    arr -= arr.min() - 1.0                            # strictly positive body ...
    arr[:4], arr[-3:], arr[:, :9], arr[:, -7:], arr[:, :, :5] = 0, 0, 0, 0, 0   # ... in zero air
    t2 = t2.with_array(arr)
    boxes = boxes_from_mask(prior, margin_vox=4)
    grad = gradient_map(t2, boxes)
    write_image(t2, tmp_path / "T2.nii.gz")
    write_image(grad, tmp_path / "grad.nii.gz")
    region = [b for b in (_slices(bx, t2) for bx in boxes)]
    return [str(tmp_path / "T2.nii.gz"), str(tmp_path / "grad.nii.gz")], region, t2


def _slices(box, image):
    from HNTumorSegLib.prompts.boxes import box_to_index_slices

    return box_to_index_slices(box.expanded(REGION_CONTEXT_MM), image)


@pytest.mark.slow  # ~50 s at load ~10 on 2 shared cores: CI runs it, the default run skips it
def test_cropped_anisotropic_case_api(folder, tmp_path):
    from HNTumorSegLib.inference.nnunet_inference import load_nnunet_model, predict_nnunet_case

    model = load_nnunet_model(folder, folds="all")
    files, region, t2 = _nnunet_case_files(folder, tmp_path)
    whole = predict_nnunet_case(model, files, device="cpu", tta=False)
    fast = predict_nnunet_case(model, files, device="cpu", tta=False, restrict_zyx=region)
    props = fast.properties
    bbox = props["bbox_used_for_cropping"]
    assert [tuple(b) for b in bbox] != [(0, s) for s in t2.array.shape], "nnU-Net must crop this case"
    assert not np.allclose(props["spacing"], model.configuration_manager.spacing), "nnU-Net must resample it"
    print(f"tiles whole {whole.n_tiles}, restricted {fast.n_tiles}")
    assert 0 < fast.n_tiles < whole.n_tiles
    inside = np.zeros(t2.array.shape, bool)
    for b in region:
        inside[b] = True
    np.testing.assert_array_equal(fast.segmentation[inside], whole.segmentation[inside])
    # outside the boxes grown by what one-plus-two preprocessed voxels are in image voxels: background
    ratio = np.asarray(model.configuration_manager.spacing) / np.asarray(t2.spacing[::-1])
    pad = [int(math.ceil(3 * r)) + 1 for r in ratio]
    near = np.zeros_like(inside)
    for b in region:
        near[tuple(slice(max(0, s.start - p), s.stop + p) for s, p in zip(b, pad))] = True
    assert not fast.segmentation[~near].any()


def test_mapping_matches_nnunet_preprocessing(folder, tmp_path):
    """A box given to nnU-Net's own preprocessor as a segmentation lands inside our mapped region
    (which is at most 4 voxels larger per side: the linear neighbours, the one-voxel growth, rounding), with a transpose, a crop and anisotropic resampling."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from HNTumorSegLib.inference.nnunet_inference import region_on_preprocessed_grid

    plans = json.loads((folder / "plans.json").read_text())
    plans["transpose_forward"], plans["transpose_backward"] = [2, 0, 1], [1, 2, 0]
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    files, region, t2 = _nnunet_case_files(folder, tmp_path)
    rw = pm.image_reader_writer_class()
    data, props = rw.read_images(files)
    for box in region:
        seg = np.zeros((1, *data.shape[1:]), np.int16)
        seg[(0, *box)] = 1
        pre, pre_seg, p = DefaultPreprocessor(verbose=False).run_case_npy(data, seg, dict(props), pm, cm, dataset_json)
        assert [tuple(b) for b in p["bbox_used_for_cropping"]] != [(0, s) for s in data.shape[1:]]
        assert tuple(p["shape_after_cropping_and_before_resampling"]) != tuple(pre.shape[1:])
        mapped = region_on_preprocessed_grid([box], p, pm.transpose_forward, pre.shape[1:])
        assert len(mapped.boxes) == 1
        theirs = pre_seg[0] == 1
        assert theirs.any()
        assert not (theirs & ~mapped.mask_zyx).any(), "nnU-Net's box voxels must all be in our region"
        idx = np.argwhere(theirs)
        for axis, sl in enumerate(mapped.boxes[0]):
            assert idx[:, axis].min() - sl.start <= 4 and sl.stop - 1 - idx[:, axis].max() <= 4


def test_predict_logits_region_default_unchanged_and_background_outside():
    """TiledPredictor.predict_logits: no region = the same tensor as before; a region runs fewer tiles and
    gives background logits (softmax -> P(background) = 1) outside it; an empty region runs nothing."""
    from HNTumorSegLib.inference.tiled import TiledPredictor, TilingOptions

    torch.manual_seed(0)
    net = torch.nn.Conv3d(2, 3, 3, padding=1)
    x = np.random.default_rng(0).normal(size=(2, 20, 40, 40)).astype(np.float32)
    calls = []
    tp = TiledPredictor(net, (8, 16, 16), 3, device="cpu", options=TilingOptions(region_tiling="grid"),
                        progress=lambda **kw: calls.append(kw["message"]))
    whole = tp.predict_logits(x)
    n_whole = len(calls)
    box = (slice(5, 9), slice(10, 20), slice(12, 18))
    part = tp.predict_logits(x, region=[box])
    assert 0 < len(calls) - n_whole < n_whole
    torch.testing.assert_close(part[(slice(None), *box)], whole[(slice(None), *box)])
    outside = np.ones(x.shape[1:], bool)
    outside[box] = False
    prob = torch.softmax(part, 0).numpy()
    assert np.all(prob[0][outside] == 1.0)
    empty = tp.predict_logits(x, region=np.zeros(x.shape[1:], bool))
    assert torch.softmax(empty, 0)[0].min() == 1.0
