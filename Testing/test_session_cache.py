"""Issue 27 item 4: a warm session remembers decoded inputs and model-grid copies by content.

In process (the session's worker thread does exactly this: ``WarmCache.active()`` around each
request): the second refinement reads and resamples nothing, gives the labels of an uncached
refinement, and changes nothing outside the edited box; a rewritten input is read again; the
cache stays within its byte budget. The session's own result event carries the counts.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from HNTumorSegLib.commands.demo import write_phantom
from HNTumorSegLib.image import Image, read_image, write_image
from HNTumorSegLib.pipeline.refine import refine_segmentation
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.pipeline.run import run_segmentation
from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask, read_boxes, write_boxes
from HNTumorSegLib.warm_cache import WarmCache, cached, file_identity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warm")
    inputs, prior, _ = write_phantom("midrt", 0, folder)
    boxes = boxes_from_mask(read_image(prior, label=True), margin_vox=4)
    edited = next(b for b in boxes if b.label == 2)
    moved = [LesionBox(b.label, b.name, (b.min_ras[0] + 3, *b.min_ras[1:]), (b.max_ras[0] + 3, *b.max_ras[1:]))
             if b is edited else b for b in boxes]
    write_boxes(moved, folder / "boxes.json")
    base = run_segmentation(SegmentRequest(model="demo-midrt", task="midrt", device="cpu", folds="first",
                                           input_paths={"T2": str(inputs["T2"])}, prior_path=str(prior),
                                           output_path=str(folder / "base.nii.gz"))).files["labels"]
    return folder, inputs["T2"], base, edited.name


def _refine(folder, t2, base, name, out):
    req = SegmentRequest(model="demo-midrt", task="midrt", device="cpu", folds="first", input_paths={"T2": str(t2)},
                         boxes_path=str(folder / "boxes.json"), output_path=str(folder / out))
    res = refine_segmentation(req, {"base_labels_path": str(base), "boxes": [name]})
    return read_image(res.files["labels"], label=True), res


@pytest.mark.slow   # a whole demo run and three refinements (~15 s idle, a minute or more loaded)
def test_second_refinement_reads_and_resamples_nothing(case):
    folder, t2, base, name = case
    plain, _ = _refine(folder, t2, base, name, "plain.nii.gz")
    cache = WarmCache()
    with cache.active():
        first, _ = _refine(folder, t2, base, name, "first.nii.gz")
        misses = cache.misses
        assert misses >= 2 and cache.hits == 0          # T2, base labels (the T2 is on the model's grid already)
        second, _ = _refine(folder, t2, base, name, "second.nii.gz")
    assert cache.misses == misses and cache.hits >= 2
    assert np.array_equal(first.array, plain.array) and np.array_equal(second.array, plain.array)
    # nothing outside the edited box changed
    base_img = read_image(base, label=True)
    box = next(b for b in read_boxes(folder / "boxes.json") if b.name == name)
    outside = np.ones(base_img.array.shape, bool)
    outside[box_to_index_slices(box, base_img)] = False
    assert np.array_equal(second.array[outside], base_img.array[outside])
    assert not np.array_equal(second.array, base_img.array)   # the box itself was refined


def test_rewritten_input_is_read_again(case, tmp_path):
    folder, t2, _base, _name = case
    img = read_image(t2)
    copy = write_image(img, tmp_path / "t2.nii.gz")
    cache = WarmCache()
    with cache.active():
        a = cached(("read", file_identity(copy)), lambda: read_image(copy))
        ident = file_identity(copy)
        write_image(img.with_array(np.asarray(img.array) + 1.0), tmp_path / "t2.nii.gz")   # same path, new content
        os.utime(copy, ns=(ident[3], ident[3]))                                             # even the same mtime
        b = cached(("read", file_identity(copy)), lambda: read_image(copy))
    assert file_identity(copy) != ident and cache.misses == 2 and not np.array_equal(a.array, b.array)


def test_model_grid_copy_is_made_once(case):
    from HNTumorSegLib.dicom.read import read_volume
    from HNTumorSegLib.pipeline.tasks import _working_images

    _folder, t2, _base, _name = case
    cache = WarmCache()
    with cache.active():
        grids = [_working_images({"T2": read_volume(t2)}, (1.2, 1.2, 3.0))["T2"] for _ in range(2)]
    assert grids[0] is grids[1] and cache.misses == 3 and cache.hits == 3   # read, grid, moved: then remembered
    plain = _working_images({"T2": read_volume(t2)}, (1.2, 1.2, 3.0))["T2"]   # no cache active: made again, equal
    assert plain is not grids[0] and np.array_equal(plain.array, grids[0].array)


def test_budget_evicts_least_recently_used():
    cache = WarmCache(budget_mb=1)
    make = lambda: Image(np.zeros((25, 64, 64), np.float32))   # 0.4 MB  # noqa: E731
    with cache.active():
        cached("a", make), cached("b", make)
        cached("a", make)                # a is now the most recent
        cached("c", make)                # over 1 MB: b goes
        cached("a", make)
        cached("b", make)
    assert cache.stats()["entries"] == 2 and cache.bytes <= cache.budget_bytes
    assert cache.hits == 2 and cache.misses == 4
    big = Image(np.zeros((128, 128, 128), np.float32))   # 8 MB: larger than the budget, never kept
    with cache.active():
        assert cached("big", lambda: big) is big
    assert "big" not in [k for k in cache._items]


def test_cached_arrays_are_read_only():
    cache = WarmCache()
    with cache.active():
        img = cached("ro", lambda: Image(np.zeros((2, 2, 2), np.float32)))
    with pytest.raises(ValueError):
        img.array[0, 0, 0] = 1.0
