"""Refinement of one edited box (:mod:`HNTumorSegLib.pipeline.refine`) with the real pipeline and
the bundled demo models: outside the edited box not one voxel changes; inside it the result equals a
full run of the request restricted to that box (its boxes.json holding that box alone,
restrict_to_boxes), in the box's
label; fewer tiles run than for all boxes; a box moved onto another lesion replaces that lesion's
voxels inside the box only."""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case
from HNTumorSegLib.pipeline.refine import RefineSpec, merge_boxes, refine_segmentation
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.pipeline.run import run_segmentation
from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask, write_boxes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moved(box: LesionBox, by_mm) -> LesionBox:
    d = np.asarray(by_mm, float)
    return LesionBox(box.label, box.name, tuple(np.asarray(box.min_ras) + d), tuple(np.asarray(box.max_ras) + d))


def moved_onto(box: LesionBox, other: LesionBox) -> LesionBox:
    return moved(box, np.asarray(other.centre_ras) - np.asarray(box.centre_ras))


@pytest.fixture(scope="module")
def midrt(tmp_path_factory):
    root = tmp_path_factory.mktemp("midrt")
    case = make_midrt_case(seed=3, shape=(24, 112, 112), n_nodes=2)
    write_image(case["midRT_T2"], root / "t2.nii.gz")
    boxes = boxes_from_mask(case["preRT_mask_registered"], margin_vox=4)
    base = dict(model="demo-midrt", task="midrt", input_paths={"T2": str(root / "t2.nii.gz")}, device="cpu",
                folds="first")
    return root, case["midRT_T2"], boxes, base


@pytest.fixture(scope="module")
def prert(tmp_path_factory):
    """Pre-RT T2 with user boxes; no pre-RT model ships, so a real model folder with random weights."""
    from pipeline_testlib import make_random_model

    root = tmp_path_factory.mktemp("prert")
    case = make_midrt_case(seed=4, shape=(24, 112, 112), n_nodes=2)
    write_image(case["preRT_T2"], root / "t2.nii.gz")
    model = make_random_model(root / "model", "prert", [{"name": "T2", "normalisation": {"type": "zscore"}}])
    boxes = boxes_from_mask(case["preRT_mask"], margin_vox=3)
    base = dict(model=str(model), task="prert", input_paths={"T2": str(root / "t2.nii.gz")}, device="cpu")
    return root, case["preRT_T2"], boxes, base


@pytest.fixture(scope="module")
def petct(tmp_path_factory):
    root = tmp_path_factory.mktemp("petct")
    case = make_petct_case(seed=1, n_nodes=2, in_plane=96)
    write_image(case["CT"], root / "ct.nii.gz")
    write_image(case["PET"], root / "pet.nii.gz")
    boxes = boxes_from_mask(case["mask"], margin_vox=3)
    base = dict(model="demo-petct", task="petct", device="cpu", folds="first",
                input_paths={"CT": str(root / "ct.nii.gz"), "PET": str(root / "pet.nii.gz")})
    return root, case["CT"], boxes, base


_BASES: dict = {}


def full_and_refined(root, boxes_a, boxes_b, fields, names):
    """Full run with boxes A (the base, once per case); full run with boxes B; full run restricted
    to the edited boxes (a boxes.json holding them alone); refinement of ``names`` from A to B."""
    tag = "_".join(f"{b.name}{b.min_ras[0]:.1f}" for b in boxes_b)
    alone = [b for b in boxes_b if b.name in names]

    def run(boxes, stem, restrict=False):
        write_boxes(boxes, root / f"{stem}.json")
        return run_segmentation(SegmentRequest(**fields, boxes_path=str(root / f"{stem}.json"),
                                               output_path=str(root / f"{stem}.nii.gz"), restrict_to_boxes=restrict))

    if root not in _BASES:
        _BASES[root] = run(boxes_a, "a")
    run_a, run_b, run_c = _BASES[root], run(boxes_b, f"b_{tag}"), run(alone, f"c_{tag}", restrict=True)
    refined = refine_segmentation(SegmentRequest(**fields, boxes_path=str(root / f"b_{tag}.json"),
                                                 output_path=str(root / f"r_{tag}.nii.gz")),
                                  {"base_labels": run_a.files["labels"], "boxes": list(names)})
    read = lambda res: read_image(res.files["labels"], label=True).array  # noqa: E731
    return read(run_a), read(run_c), read(refined), (run_b, run_c), refined


# midrt in the default run (its session is shared with the tests below); prert and petct (~40 s
# each at load ~11 on 2 shared cores) in CI's full run
@pytest.mark.parametrize("task", ["midrt", pytest.param("prert", marks=pytest.mark.slow),
                                  pytest.param("petct", marks=pytest.mark.slow)])
def test_refinement_changes_nothing_outside_the_box_and_equals_the_full_run_inside(task, request):
    root, reference, boxes, fields = request.getfixturevalue(task)
    edited = next(b for b in boxes if b.label == 2)
    boxes_b = [moved(b, (4.0, -3.0, 0.0)) if b is edited else b for b in boxes]
    new_box = next(b for b in boxes_b if b.name == edited.name)
    a, c, r, (run_b, run_c), refined = full_and_refined(root, boxes, boxes_b, fields, [edited.name])
    inside = np.zeros(a.shape, bool)
    inside[box_to_index_slices(new_box, reference)] = True
    np.testing.assert_array_equal(r[~inside], a[~inside])                       # not one voxel outside
    np.testing.assert_array_equal(r[inside], np.where(c[inside] > 0, 2, 0))     # the run restricted to the box
    assert refined.n_tiles == run_c.n_tiles < run_b.n_tiles                      # only the box's tiles ran
    assert refined.regions == [new_box.to_dict()]
    assert (c[inside] > 0).any() and (r != a).any()                              # a lesion there, and news


def test_box_moved_onto_another_lesion_replaces_it_inside_the_box_only(midrt):
    root, reference, boxes, fields = midrt
    gtvp = next(b for b in boxes if b.label == 1)
    node = next(b for b in boxes if b.label == 2)
    on_p = moved_onto(node, gtvp)
    boxes_b = [on_p if b is node else b for b in boxes]
    a, c, r, _runs, _refined = full_and_refined(root, boxes, boxes_b, fields, [node.name])
    inside = np.zeros(a.shape, bool)
    inside[box_to_index_slices(on_p, reference)] = True
    assert (a[inside] == 1).any()                                   # the box now lies over GTVp voxels
    assert not (r[inside] == 1).any()                               # ... which it replaced: its label is GTVn
    np.testing.assert_array_equal(r[~inside], a[~inside])           # the rest of GTVp is untouched
    np.testing.assert_array_equal(r[inside] > 0, c[inside] > 0)


def test_merge_boxes_and_spec_checks(midrt, tmp_path):
    base = np.zeros((4, 5, 6), np.uint8)
    base[0] = 1
    new = np.zeros_like(base)
    new[1:3, 1:3, 1:3] = 1
    out = merge_boxes(base, new, [((slice(0, 3), slice(0, 4), slice(0, 4)), 2)])
    assert (out[1:3, 1:3, 1:3] == 2).all() and (out[0, :4, :4] == 0).all() and (out[0, 4:, :] == 1).all()
    assert (out[0, :, 4:] == 1).all() and out[3].max() == 0
    for bad, word in (({"boxes": ["GTVn-1"]}, "base_labels"), ({"base_labels": "x.nii.gz"}, "boxes"),
                      ({"base_labels": "x", "boxes": ["a", "a"]}, "twice"), ({"base_labels": "x", "boxs": []}, "boxes")):
        with pytest.raises(InputError, match=word):
            RefineSpec.from_dict(bad)
    root, reference, boxes, fields = midrt
    write_boxes(boxes, tmp_path / "b.json")
    wrong_grid = reference.with_array(np.zeros(reference.array.shape, np.uint8))
    small = type(reference)(np.zeros((4, 4, 4), np.uint8), reference.spacing, reference.origin, reference.direction)
    write_image(small, tmp_path / "small.nii.gz")
    req = SegmentRequest(**fields, boxes_path=str(tmp_path / "b.json"), output_path=str(tmp_path / "o.nii.gz"))
    with pytest.raises(InputError, match="grid"):
        refine_segmentation(req, {"base_labels": str(tmp_path / "small.nii.gz"), "boxes": [boxes[0].name]})
    write_image(wrong_grid, tmp_path / "zeros.nii.gz")
    with pytest.raises(InputError, match="GTVn-7"):
        refine_segmentation(req, {"base_labels": str(tmp_path / "zeros.nii.gz"), "boxes": ["GTVn-7"]})
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.slow  # ~20-30 s on 2 shared cores: CI runs it, the default run skips it
def test_an_nnunet_folder_refines_by_a_whole_run_then_the_same_merge(tiny_nnunet_results, tmp_path):
    """nnU-Net folders run their own path: labels change inside the box only, as the rule says."""
    from nnunet_fixture import tiny_nnunet_test_cases

    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    reference = read_image(ct)
    base = reference.with_array(np.full(reference.array.shape, 1, np.uint8))   # "everything GTVp"
    write_image(base, tmp_path / "base.nii.gz")
    lo, hi = np.array(reference.array.shape) // 4, np.array(reference.array.shape) // 2
    from HNTumorSegLib.prompts.boxes import index_box_to_ras

    mn, mx = index_box_to_ras(reference, lo[::-1], hi[::-1])
    write_boxes([LesionBox(2, "GTVn-1", tuple(mn), tuple(mx))], tmp_path / "boxes.json")
    req = SegmentRequest(model=str(tiny_nnunet_results), input_paths={"CT": str(ct), "PET": str(pet)}, device="cpu",
                         boxes_path=str(tmp_path / "boxes.json"), output_path=str(tmp_path / "r.nii.gz"))
    res = refine_segmentation(req, {"base_labels": str(tmp_path / "base.nii.gz"), "boxes": ["GTVn-1"]})
    r = read_image(res.files["labels"], label=True).array
    inside = np.zeros(r.shape, bool)
    inside[box_to_index_slices(LesionBox(2, "GTVn-1", tuple(mn), tuple(mx)), reference)] = True
    assert (r[~inside] == 1).all() and set(np.unique(r[inside])) <= {0, 2} and not list(tmp_path.glob("*refine*"))
