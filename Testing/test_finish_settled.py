"""Issue 27: labels moved back chunk by chunk equal those of the whole probability map.

:func:`HNTumorSegLib.pipeline.finish.labels_on_target` resamples only the target chunks that can
hold a voxel whose label is not settled background; everything else is background without
resampling. These tests build
probability maps on a model grid (softmax and seed 002's sigmoid pair, with near-ties placed on
purpose), move them onto a rotated, differently spaced target grid both ways, and compare label
for label. The crop-then-label helpers of the clean-up are compared with labelling the whole array.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from HNTumorSegLib.image import Image
from HNTumorSegLib.pipeline import finish
from HNTumorSegLib.pipeline.finish import SETTLED_LEAD, labels_from, labels_on_target, settled_background
from HNTumorSegLib.pipeline.outputs import paste, to_target_block
from HNTumorSegLib.postprocess import STRUCTURE_26, bounding_box, clean_up, label_components


def _grids():
    model = Image(np.zeros((18, 30, 28), np.uint8), (1.5, 1.5, 3.0), (-20.0, -22.0, -25.0))
    angle = np.deg2rad(7.0)
    c, s = np.cos(angle), np.sin(angle)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    target = Image(np.zeros((30, 52, 50), np.uint8), (0.9, 0.9, 2.0), (-21.0, -23.0, -27.0), direction)
    return model, target


def _softmax_map(rng, model, near_ties: int):
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in model.array.shape), indexing="ij")
    logits = np.zeros((3,) + model.array.shape, np.float32)
    logits[0] = 6.0
    logits[1] = 9.0 - 0.35 * ((z - 8) ** 2 + (y - 10) ** 2 + (x - 9) ** 2) ** 0.5 * 3
    logits[2] = 9.0 - 0.35 * ((z - 5) ** 2 + (y - 20) ** 2 + (x - 18) ** 2) ** 0.5 * 4
    logits += rng.normal(0, 0.3, logits.shape).astype(np.float32)
    e = np.exp(logits - logits.max(axis=0))
    prob = (e / e.sum(axis=0)).astype(np.float32)
    for _ in range(near_ties):   # blocks where background is barely ahead, exactly tied, barely behind
        v = tuple(int(rng.integers(2, n - 2)) for n in model.array.shape)
        lead = float(rng.choice([SETTLED_LEAD / 10, 0.0, -SETTLED_LEAD / 10]))
        block = prob[:, v[0] - 1:v[0] + 2, v[1] - 1:v[1] + 2, v[2] - 1:v[2] + 2]   # 27 voxels: seen by the target
        block[...] = np.array([(1 + lead) / 2, (1 - lead) / 2, 0.0], np.float32).reshape(3, 1, 1, 1)
    return prob


def _labels_both_ways(prob, model, target, output):
    fill = np.zeros(prob.shape[0], np.float32)
    if output == "softmax":
        fill[0] = 1.0
    chunks = []
    real = finish.sub_grid
    finish.sub_grid = lambda g, sl: chunks.append(sl) or real(g, sl)
    try:
        block, at = labels_on_target(prob, model, target, fill, output)
    finally:
        finish.sub_grid = real
    cut = np.zeros(target.array.shape, np.uint8)
    cut[at] = block
    wblock, wsl = to_target_block(prob, model, target, fill)
    whole = labels_from(paste(wblock, wsl, target.array.shape, fill), output)
    return cut, whole, chunks[2:]   # the first two: the cut of the map, the covered block


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_labels_from_the_cut_map_equal_the_whole_map(seed, monkeypatch):
    monkeypatch.setattr(finish, "CHUNK_VOX", (4, 8, 8))   # the test grid in many chunks
    model, target = _grids()
    prob = _softmax_map(np.random.default_rng(seed), model, near_ties=12)
    cut, whole, chunks = _labels_both_ways(prob, model, target, "softmax")
    assert (whole == 1).any() and (whole == 2).any()
    assert np.array_equal(cut, whole)
    done = sum(np.prod([s.stop - s.start for s in c]) for c in chunks)
    assert 0 < done < 0.7 * target.array.size   # part of the grid was not resampled (12 near-ties scattered)


def test_sigmoid_labels_from_the_cut_map_equal_the_whole_map(monkeypatch):
    monkeypatch.setattr(finish, "CHUNK_VOX", (4, 8, 8))
    model, target = _grids()
    rng = np.random.default_rng(5)
    prob = np.clip(_softmax_map(rng, model, near_ties=0)[1:] * 1.3, 0, 1).astype(np.float32)
    prob[0, 9, 9, 9] = 0.5 - SETTLED_LEAD / 10      # just below the threshold: undecided
    prob[1, 12, 20, 6] = 0.5 + SETTLED_LEAD / 10    # just above
    cut, whole, _ = _labels_both_ways(prob, model, target, "sigmoid")
    assert whole.any()
    assert np.array_equal(cut, whole)


def test_settled_voxels_and_the_same_grid():
    model, _ = _grids()
    prob = np.full((3,) + model.array.shape, 1 / 3, np.float32)
    assert not settled_background(prob, "softmax").any()          # unsure everywhere: all computed
    prob[0], prob[1:] = 1.0, 0.0
    prob[:, 3, 4, 5] = np.nan                                      # NaN is never settled
    prob[:, 6, 7, 8] = [0.2, 0.3, 0.5]
    settled = settled_background(prob, "softmax")
    assert settled.sum() == settled.size - 2
    block, at = labels_on_target(prob, model, model, np.array([1.0, 0, 0], np.float32), "softmax")
    same = np.zeros(model.array.shape, np.uint8)
    same[at] = block
    expect = np.zeros(model.array.shape, np.uint8)
    expect[6, 7, 8] = 2                                            # argmax of NaN is 0, as np.argmax says
    assert np.array_equal(same, expect)


def test_cropped_labelling_equals_labelling_the_whole_array():
    rng = np.random.default_rng(3)
    arr = np.zeros((40, 60, 60), np.uint8)
    arr[10:30, 20:45, 15:40] = (ndimage.gaussian_filter(rng.random((20, 25, 25)), 1.5) > 0.52).astype(np.uint8)
    arr[12:14, 22:24, 17:19] = 2
    comps, n, box = label_components(arr, 1)
    full, n_full = ndimage.label(arr == 1, structure=STRUCTURE_26)
    assert n == n_full > 3
    assert np.array_equal(full[box], comps) and not full[tuple(slice(0, b.start) for b in box)].any()
    assert bounding_box(arr == 7) == (slice(0, 0),) * 3 and label_components(arr, 7)[1] == 0
    cleaned = clean_up(arr, (1.0, 1.0, 1.0), {1: 0.05, 2: 0.001}, keep_largest_gtvp=True)
    sizes = np.bincount(full.ravel())[1:]
    keep = 1 + int(np.argmax(sizes))
    expect = arr.copy()
    expect[(full > 0) & (full != keep)] = 0
    assert np.array_equal(cleaned, expect)
