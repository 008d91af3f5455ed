"""Issue 27 item 5: tiles batched on the CPU give the labels of one tile at a time, on both demo cases.

"Today's path" is one tile per forward pass (``CPU_BATCH_TILES = 1``); the new default runs
:data:`HNTumorSegLib.inference.tiling.CPU_BATCH_TILES` per pass. Labels must be equal voxel for
voxel (float sums may differ in the last bits). Also: a run's labels, moved back only where they
are not settled background (:func:`HNTumorSegLib.pipeline.finish.labels_on_target`), equal those
made from the whole map, restricted to boxes or not, and the tile weight is built once and reused.
"""

from __future__ import annotations

import numpy as np
import pytest

from HNTumorSegLib.commands.demo import write_phantom
from HNTumorSegLib.image import read_image
from HNTumorSegLib.inference import tiling
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.pipeline.run import run_segmentation


def _run(tmp_path, task, name, restrict=False):
    inputs, prior, _truth = write_phantom(task, 0, tmp_path / "in")
    req = SegmentRequest(model=f"demo-{task}", task=task, device="cpu", folds="first",
                         input_paths={k: str(v) for k, v in inputs.items()},
                         prior_path=str(prior) if prior else None, restrict_to_boxes=restrict,
                         output_path=str(tmp_path / f"{name}.nii.gz"))
    res = run_segmentation(req)
    return read_image(res.files["labels"], label=True).array, res


@pytest.mark.slow   # two whole demo runs per task (~20 s idle, minutes on the loaded machine)
@pytest.mark.parametrize("task", ["midrt", "petct"])
def test_batched_tiles_give_the_labels_of_single_tiles(tmp_path, monkeypatch, task, one_torch_thread):
    assert tiling.default_batch_size("cpu", (16, 48, 48)) > 1   # the new default does batch
    new, res_new = _run(tmp_path, task, "batched")
    monkeypatch.setattr(tiling, "CPU_BATCH_TILES", 1)           # today's path: one tile per pass
    old, res_old = _run(tmp_path, task, "single")
    assert res_new.n_tiles == res_old.n_tiles > 1
    assert new.any() and np.array_equal(new, old)


@pytest.mark.slow
@pytest.mark.parametrize("task,restrict", [("midrt", True), ("midrt", False), ("petct", False)])
def test_labels_from_the_cut_map_equal_the_whole_map(tmp_path, monkeypatch, one_torch_thread, task, restrict):
    from HNTumorSegLib.pipeline import finish

    cut, _ = _run(tmp_path, task, "cut", restrict=restrict)
    calls = []
    monkeypatch.setattr(finish, "settled_background",     # nothing settled: every chunk is resampled
                        lambda p, output: calls.append(1) or np.zeros(p.shape[1:], bool))
    whole, _ = _run(tmp_path, task, "whole", restrict=restrict)
    assert calls and cut.any() and np.array_equal(cut, whole)


def test_tile_weight_is_made_once_and_reused():
    g1 = tiling.gaussian_tensor((4, 8, 8), "cpu")
    g2 = tiling.gaussian_tensor((4, 8, 8), "cpu")
    assert g1 is g2 and float(g1.max()) > float(g1.min())


def test_batches_keep_order_and_shape():
    tiles = [tiling.slices3(slice(i, i + 4) for _ in range(3)) for i in range(5)]
    assert tiling.tile_batches(tiles, 4) == [[0, 1, 2, 3], [4]]
    assert tiling.tile_batches(tiles, 1) == [[i] for i in range(5)]
