"""Box-only refinement (issue 27, ``RefineSpec.box_only``): the output is the crop over the edited
boxes, placed by its origin; it needs no base; with a base, the crop outside the edited boxes is the
base. Real pipeline, bundled demo-midrt model, demo-size phantom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.refine import REFINE_KEYS, RefineSpec, refine_segmentation
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask, write_boxes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- RefineSpec -------------------------------------------------------------------------------------
def test_spec_round_trip_and_key():
    assert "box_only" in REFINE_KEYS
    for spec in (RefineSpec(None, ("GTVn-2",), True), RefineSpec("l.nii.gz", ("GTVn-2", "GTVp-1"), True),
                 RefineSpec("l.nii.gz", ("GTVn-2",))):
        assert RefineSpec.from_dict(spec.to_dict()) == spec
    assert RefineSpec("l.nii.gz", ("GTVn-2",)).to_dict() == {"base_labels_path": "l.nii.gz", "boxes": ["GTVn-2"],
                                                             "box_only": False}
    assert set(RefineSpec(None, ("GTVn-2",), True).to_dict()) == set(REFINE_KEYS)   # key = field, every one
    assert RefineSpec.from_dict({"base_labels": "l.nii.gz", "boxes": ["a"], "box_only": True}).box_only


@pytest.mark.parametrize("data, words", [
    ({"boxes": ["GTVn-2"], "box_only": "yes"}, "'box_only' must be true or false"),
    ({"boxes": ["GTVn-2"], "box_only": 1}, "'box_only' must be true or false"),
    ({"boxes": ["GTVn-2"], "boxonly": True}, "did you mean box_only?"),
    ({"boxes": ["GTVn-2"]}, "refine needs 'base_labels_path'"),
    ({"boxes": ["GTVn-2"], "box_only": False}, "refine needs 'base_labels_path'"),
    ({"boxes": ["GTVn-2"], "box_only": True, "base_labels_path": ""}, "refine needs 'base_labels_path'"),
    ({"box_only": True}, "refine needs 'boxes'"),
])
def test_spec_errors_one_line(data, words):
    with pytest.raises(InputError) as err:
        RefineSpec.from_dict(data)
    assert words in err.value.one_line() and "\n" not in err.value.one_line()


# ---- the pipeline -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The demo mid-RT phantom, its whole-image result (the base) and its boxes, two of them moved."""
    from HNTumorSegLib.pipeline.run import run_segmentation

    root = tmp_path_factory.mktemp("boxonly")
    phantom = make_midrt_case(seed=0)
    write_image(phantom["midRT_T2"], root / "mid.nii.gz")
    write_image(phantom["preRT_mask_registered"], root / "prior.nii.gz")
    fields = dict(model="demo-midrt", input_paths={"T2": str(root / "mid.nii.gz")}, device="cpu", folds="first")
    run_segmentation(SegmentRequest(prior_path=str(root / "prior.nii.gz"), output_path=str(root / "v1.nii.gz"),
                                    **fields))
    boxes = boxes_from_mask(phantom["preRT_mask_registered"], margin_vox=4)
    shift = np.array([1.5, -1.0, 0.0])
    boxes = [LesionBox(b.label, b.name, tuple(np.add(b.min_ras, shift)), tuple(np.add(b.max_ras, shift)))
             if b.label == 2 else b for b in boxes]
    write_boxes(boxes, root / "boxes_v2.json")
    return root, fields, boxes


def refine(root, fields, name, spec):
    request = SegmentRequest(boxes_path=str(root / "boxes_v2.json"), output_path=str(root / name), **fields)
    return refine_segmentation(request, spec)


def crop_start_and_shape(boxes, grid):
    slices = [box_to_index_slices(b, grid) for b in boxes]
    lo = [min(s[a].start for s in slices) for a in range(3)]
    hi = [max(s[a].stop for s in slices) for a in range(3)]
    return lo, [h - l for l, h in zip(lo, hi)]


def test_box_only_without_base_is_the_whole_refinement_cut_to_the_box(case):
    root, fields, boxes = case
    name = [b.name for b in boxes if b.label == 2][0]
    whole = refine(root, fields, "whole.nii.gz", {"base_labels_path": str(root / "v1.nii.gz"), "boxes": [name]})
    res = refine(root, fields, "crop.nii.gz", {"boxes": [name], "box_only": True})
    grid = read_image(whole.files["labels"], label=True)
    box = [b for b in boxes if b.name == name][0]
    sl = box_to_index_slices(box, grid)
    crop = read_image(res.files["labels"], label=True)
    assert crop.array.shape == grid.array[sl].shape                   # the box's shape, not the grid's
    assert np.array_equal(crop.array, grid.array[sl])                 # voxel for voxel
    assert crop.array.any()
    # placed by its origin: SimpleITK's physical origin is the whole map's index_to_physical of the crop start
    img = sitk.ReadImage(res.files["labels"])
    start_ijk = [sl[2].start, sl[1].start, sl[0].start]
    assert np.allclose(img.GetOrigin(), grid.index_to_physical(np.array(start_ijk, float)), atol=1e-4)
    assert np.allclose(img.GetOrigin(), sitk.ReadImage(whole.files["labels"]).TransformIndexToPhysicalPoint(start_ijk),
                       atol=1e-4)
    assert np.allclose(img.GetSpacing(), grid.spacing) and np.allclose(img.GetDirection(), grid.direction.ravel())
    assert res.regions == [box.to_dict()]
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0                  # volumes of the crop
    assert res.volumes_ml["GTVn"] == round(float((crop.array == 2).sum()) * voxel_ml, 3)


def test_two_boxes_with_base_keep_the_base_in_the_crop(case):
    root, fields, boxes = case
    edited = [b for b in boxes if b.label == 2][:1] + [b for b in boxes if b.label == 1][:1]
    assert len(edited) == 2
    res = refine(root, fields, "two.nii.gz", {"base_labels_path": str(root / "v1.nii.gz"),
                                              "boxes": [b.name for b in edited], "box_only": True})
    base = read_image(root / "v1.nii.gz", label=True)
    whole = refine(root, fields, "two_whole.nii.gz", {"base_labels_path": str(root / "v1.nii.gz"),
                                                      "boxes": [b.name for b in edited]})
    crop = read_image(res.files["labels"], label=True)
    lo, shape = crop_start_and_shape(edited, base)
    c = tuple(slice(l, l + n) for l, n in zip(lo, shape))
    assert crop.array.shape == tuple(shape)
    assert np.array_equal(crop.array, read_image(whole.files["labels"], label=True).array[c])
    outside = np.ones(base.array.shape, bool)
    for b in edited:
        outside[box_to_index_slices(b, base)] = False
    assert outside[c].any()                                           # the union box holds voxels of no edited box
    assert np.array_equal(crop.array[outside[c]], base.array[c][outside[c]])
    assert np.allclose(crop.origin, base.index_to_physical(np.array(lo[::-1], float)), atol=1e-4)


def test_base_given_is_checked_and_protected(case, tmp_path):
    root, fields, boxes = case
    name = boxes[0].name
    with pytest.raises(InputError, match="base label map"):           # no output may be the base
        refine(root, fields, "v1.nii.gz", {"base_labels_path": str(root / "v1.nii.gz"), "boxes": [name],
                                           "box_only": True})
    other = read_image(root / "v1.nii.gz", label=True)
    write_image(other.with_array(np.full(other.array.shape, 3, np.uint8)), tmp_path / "bad.nii.gz")
    with pytest.raises(InputError):                                   # labels {0, 1, 2} only
        refine(root, fields, "out_bad.nii.gz", {"base_labels_path": str(tmp_path / "bad.nii.gz"), "boxes": [name],
                                                "box_only": True})
    assert not (root / "out_bad.nii.gz").exists()


def test_no_base_without_box_only_is_the_old_error(case):
    root, fields, boxes = case
    with pytest.raises(InputError, match="refine needs 'base_labels_path'"):
        refine(root, fields, "never.nii.gz", {"boxes": [boxes[0].name], "box_only": False})
    assert not (root / "never.nii.gz").exists()
