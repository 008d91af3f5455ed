"""Seed 003's training margins: the released code's draw (default) and the paper's, in voxels around a lesion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image
from HNTumorSegLib.prompts.boxes import box_to_index_range, boxes_from_mask
from HNTumorSegLib.prompts.margins import SEED003_PAPER, SEED003_RELEASED, MarginDraw


def _lesion_image() -> Image:
    m = np.zeros((30, 40, 40), np.uint8)
    m[12:16, 15:22, 18:24] = 1                      # far from every edge: margins are never clamped
    return Image(m, (0.7, 0.7, 3.0), (0.0, 0.0, 0.0))


def _margins(draw, seeds=range(150)) -> tuple[np.ndarray, np.ndarray]:
    img = _lesion_image()
    lo0, hi0 = box_to_index_range(boxes_from_mask(img)[0], img)
    below, above = [], []
    for seed in seeds:
        lo, hi = box_to_index_range(boxes_from_mask(img, random_margin_vox=draw, rng=seed)[0], img)
        below.append(lo0 - lo)
        above.append(hi - hi0)
    return np.array(below), np.array(above)


def _released_conversion_margins(seeds=range(150)) -> tuple[np.ndarray, np.ndarray]:
    """GradientSegHNTS's conversion literally: randint(4, 8) both sides, exclusive slice end."""
    m = _lesion_image().array
    coords = np.argwhere(m == 1)
    below, above = [], []
    for seed in seeds:
        rs = np.random.RandomState(seed)
        lo = coords.min(axis=0) - np.array([rs.randint(4, 8) for _ in range(3)])
        hi = coords.max(axis=0) + np.array([rs.randint(4, 8) for _ in range(3)])
        box = np.zeros_like(m)
        box[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
        idx = np.argwhere(box)
        below.append(coords.min(axis=0) - idx.min(axis=0))
        above.append(idx.max(axis=0) - coords.max(axis=0))
    return np.array(below), np.array(above)


def test_released_draw_is_the_training_default_and_matches_the_released_ranges():
    below, above = _margins(SEED003_RELEASED)
    assert set(np.unique(below)) == {4, 5, 6, 7}
    assert set(np.unique(above)) == {3, 4, 5, 6}
    ref_below, ref_above = _released_conversion_margins()
    assert set(np.unique(ref_below)) == set(np.unique(below))
    assert set(np.unique(ref_above)) == set(np.unique(above))
    # the per-side values are uniform: every value is drawn, none dominates (150 x 3 draws each side)
    for values in (below, above):
        counts = np.bincount(values.ravel())[values.min():]
        assert counts.min() > 60 and counts.max() < 170
    from hntumorseg_training.converters.hntsmrg import SEED003_RANDOM_MARGIN_VOX
    from hntumorseg_training.demo_model import TRAIN_RANDOM_MARGIN_VOX

    assert SEED003_RANDOM_MARGIN_VOX == SEED003_RELEASED == TRAIN_RANDOM_MARGIN_VOX


def test_paper_draw_is_two_to_six_on_every_side():
    below, above = _margins("paper")
    assert set(np.unique(below)) == set(np.unique(above)) == {2, 3, 4, 5, 6}
    assert MarginDraw.coerce((2, 6)) == SEED003_PAPER == MarginDraw.parse("2-6")


def test_margin_presets_and_bad_names():
    assert MarginDraw.parse("Released") == SEED003_RELEASED
    assert SEED003_RELEASED.to_json() == {"below": [4, 7], "above": [3, 6]}
    with pytest.raises(InputError, match="released"):
        MarginDraw.parse("relesed")
    with pytest.raises(ValueError):
        MarginDraw((5, 4), (1, 2))


def test_converter_writes_the_released_draw(tmp_path):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    from hntumorseg_training.converters import convert_hntsmrg

    cohort = tmp_path / "cohort"
    write_hntsmrg_cohort(cohort, 1, seed=3, shape=(12, 32, 32), spacing=(1.4, 1.4, 3.0))
    raw = convert_hntsmrg(cohort, tmp_path / "raw", 611, task="midrt", name="Margins")
    meta = json.loads((raw / "dataset.json").read_text())
    assert json.dumps(SEED003_RELEASED.to_json()) in json.dumps(meta)
    raw_paper = convert_hntsmrg(cohort, tmp_path / "raw2", 612, task="midrt", name="MarginsPaper",
                                random_margin_vox="paper")
    assert json.dumps(SEED003_PAPER.to_json()) in json.dumps(json.loads((raw_paper / "dataset.json").read_text()))
