"""Per-case scores and cohort aggregates (DSCagg, F1agg) against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image
from HNTumorSegLib.metrics import CohortScorer, evaluate_pairs, format_table, score_case, write_json

CASE_KEYS = {"DSC", "HD95", "HD99_9", "HD100", "MSD", "IoU", "sensitivity", "specificity", "volume_pred_ml", "volume_ref_ml",
             "n_lesions_pred", "n_lesions_ref"}


def img(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Image:
    return Image(np.asarray(array, dtype=np.uint8), spacing, origin)


def blank(shape=(6, 10, 10)) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def test_anisotropic_case_volumes_and_scores():
    # spacing x, y = 0.5 mm, z = 3 mm: voxel 0.75 mm³
    ref, pred = blank(), blank()
    ref[1:3, 2:6, 2:6] = 1          # 32 voxels = 24 mm³
    pred[1:3, 2:6, 2:4] = 1         # 16 voxels inside
    pred[4, 8, 8] = 2               # a GTVn voxel where the reference has none
    s = score_case(img(pred, (0.5, 0.5, 3.0)), img(ref, (0.5, 0.5, 3.0)))
    p, n = s.metrics["GTVp"], s.metrics["GTVn"]
    assert set(p) == CASE_KEYS and set(n) == CASE_KEYS | {"TP", "FP", "FN"}
    assert p["DSC"] == pytest.approx(2 * 16 / 48)
    assert p["IoU"] == pytest.approx(0.5)
    assert p["sensitivity"] == pytest.approx(0.5)
    assert p["specificity"] == pytest.approx(1.0)
    assert p["volume_ref_ml"] == pytest.approx(0.024)
    assert p["volume_pred_ml"] == pytest.approx(0.012)
    # surfaces along x at 0.5 mm: the ref's far face (x=5) is 2 voxels = 1 mm from the pred's (x=3)
    assert p["HD95"] == pytest.approx(1.0)
    assert (p["n_lesions_pred"], p["n_lesions_ref"]) == (1, 1)
    assert n["DSC"] == 0.0 and n["HD95"] is None and n["sensitivity"] is None
    assert (n["TP"], n["FP"], n["FN"]) == (0, 1, 0)
    assert n["volume_pred_ml"] == pytest.approx(0.00075)


def test_dscagg_weighs_cases_by_mm3_and_ignores_double_empty_cases():
    # case a (1 mm³ voxels): ref 8, pred 4 inside -> 2*4 / 12 in mm³
    ref_a, pred_a = blank(), blank()
    ref_a[1:3, 1:3, 1:3] = 1
    pred_a[1:3, 1:3, 1:2] = 1
    # case b (8 mm³ voxels): ref 8, pred 8 disjoint -> 0 / 128 mm³
    ref_b, pred_b = blank(), blank()
    ref_b[1:3, 1:3, 1:3] = 1
    pred_b[3:5, 5:7, 5:7] = 1
    # case c: empty in both; case d: prediction empty only (ref 2 voxels of 1 mm³)
    ref_d = blank(); ref_d[0, 0, 0:2] = 1
    result = evaluate_pairs([
        ("a", img(pred_a), img(ref_a)),
        ("b", img(pred_b, (2, 2, 2)), img(ref_b, (2, 2, 2))),
        ("c", img(blank()), img(blank())),
        ("d", img(blank()), img(ref_d)),
    ])
    expected = 2 * (4 * 1 + 0 * 8) / ((4 + 8) * 1 + (8 + 8) * 8 + (0 + 2) * 1)  # = 8 / 142
    assert result["aggregate"]["GTVp"]["DSCagg"] == pytest.approx(expected)
    # the same without case c: a double-empty case changes nothing
    without_c = evaluate_pairs([("a", img(pred_a), img(ref_a)), ("b", img(pred_b, (2, 2, 2)), img(ref_b, (2, 2, 2))),
                                ("d", img(blank()), img(ref_d))])
    assert without_c["aggregate"]["GTVp"]["DSCagg"] == pytest.approx(expected)
    cases = result["cases"]
    assert cases["c"]["GTVp"]["DSC"] is None and cases["c"]["GTVp"]["HD95"] is None
    assert cases["d"]["GTVp"]["DSC"] == 0.0 and cases["d"]["GTVp"]["HD95"] is None
    assert cases["d"]["GTVp"]["sensitivity"] == 0.0
    # no GTVn anywhere: undefined, not a crash, and so is the mean
    assert result["aggregate"]["GTVn"] == {"DSCagg": None, "F1agg": None}
    assert result["aggregate"]["DSCagg_mean"] is None
    assert "n/a" in format_table(result)


def test_dscagg_mean_and_f1agg_with_missed_and_false_positive_nodes():
    # case 1: GTVp perfect; two reference nodes, one found (IoU 3/4), one missed, one FP node
    ref1, pred1 = blank(), blank()
    ref1[0:2, 0:2, 0:2] = 1
    pred1[0:2, 0:2, 0:2] = 1
    ref1[4, 0, 0:4] = 2
    ref1[4, 5, 0:4] = 2                # missed node
    pred1[4, 0, 1:4] = 2               # found
    pred1[4, 9, 6:9] = 2               # false positive
    # case 2: one node found exactly
    ref2, pred2 = blank(), blank()
    ref2[2, 2, 2:5] = 2
    pred2[2, 2, 2:5] = 2
    result = evaluate_pairs([("1", img(pred1), img(ref1)), ("2", img(pred2), img(ref2))])
    n1 = result["cases"]["1"]["GTVn"]
    assert (n1["TP"], n1["FP"], n1["FN"]) == (1, 1, 1)
    assert (n1["n_lesions_pred"], n1["n_lesions_ref"]) == (2, 2)
    agg = result["aggregate"]
    assert agg["GTVn"]["F1agg"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # GTVn DSCagg: intersections 3 + 3, sizes (6 + 8) + (3 + 3)
    assert agg["GTVn"]["DSCagg"] == pytest.approx(2 * 6 / 20)
    assert agg["GTVp"]["DSCagg"] == pytest.approx(1.0)
    assert agg["DSCagg_mean"] == pytest.approx((1.0 + 0.6) / 2)


def test_prediction_on_a_finer_grid_is_resampled_with_a_warning():
    ref = blank((4, 6, 6))
    ref[1:3, 1:4, 1:4] = 1
    pred_coarse = ref.copy()
    pred_coarse[1:3, 1:4, 3] = 0        # GTVp 12 of the reference's 18 voxels
    # the same prediction on a grid twice as fine with the same origin: voxel centre 2i of the
    # fine grid is voxel centre i of the reference, so nearest neighbour gives pred_coarse back
    fine = np.repeat(np.repeat(np.repeat(pred_coarse, 2, 0), 2, 1), 2, 2)
    warnings: list[str] = []
    result = evaluate_pairs([("g", img(fine, (0.5, 0.5, 1.0)), img(ref, (1.0, 1.0, 2.0)))], warn=warnings.append)
    assert len(warnings) == 1 and "resampled" in warnings[0] and "g" in warnings[0]
    p = result["cases"]["g"]["GTVp"]
    assert p["DSC"] == pytest.approx(2 * 12 / 30)
    assert p["volume_pred_ml"] == pytest.approx(12 * 2.0 / 1000)  # on the reference grid (2 mm³ voxels)


def test_prediction_on_a_larger_shifted_grid_is_cropped_by_resampling():
    ref = blank((4, 6, 6))
    ref[1:3, 2:4, 2:4] = 1
    # prediction padded by 2 voxels on every side (origin moved back by 2 voxels), shifted by one x voxel
    big = np.zeros((8, 10, 10), np.uint8)
    big[3:5, 4:6, 5:7] = 1
    warnings: list[str] = []
    result = evaluate_pairs([("s", img(big, (1, 1, 3), (-2.0, -2.0, -6.0)), img(ref, (1, 1, 3)))],
                            warn=warnings.append)
    assert len(warnings) == 1
    p = result["cases"]["s"]["GTVp"]
    assert p["DSC"] == pytest.approx(2 * 4 / 16)
    assert p["HD95"] == pytest.approx(1.0)


def test_same_grid_gives_no_warning_and_bad_labels_raise():
    ref = blank(); ref[1, 1, 1] = 1
    warnings: list[str] = []
    evaluate_pairs([("x", img(ref), img(ref))], warn=warnings.append)
    assert warnings == []
    bad = ref.copy(); bad[2, 2, 2] = 3
    with pytest.raises(InputError, match=r"labels \[3\]"):
        evaluate_pairs([("x", img(bad), img(ref))])
    scorer = CohortScorer()
    scorer.add("x", img(ref), img(ref))
    with pytest.raises(InputError, match="twice"):
        scorer.add("x", img(ref), img(ref))


def test_json_shape_and_nulls(tmp_path):
    ref = blank(); ref[1:3, 1:3, 1:3] = 1; ref[4, 4, 4:6] = 2
    result = evaluate_pairs([("7", img(ref), img(ref)), ("8", img(blank()), img(blank()))])
    out = write_json(result, tmp_path / "sub" / "scores.json")
    data = json.loads(out.read_text())
    assert set(data) == {"aggregate", "cases"}
    assert set(data["aggregate"]) == {"GTVp", "GTVn", "DSCagg_mean"}
    assert data["aggregate"]["GTVn"]["F1agg"] == 1.0 and data["aggregate"]["DSCagg_mean"] == 1.0
    assert set(data["cases"]) == {"7", "8"}
    assert set(data["cases"]["7"]["GTVn"]) == CASE_KEYS | {"TP", "FP", "FN"}
    assert data["cases"]["8"]["GTVp"]["DSC"] is None
    assert "NaN" not in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]  # no temporary file left


def test_warning_names_a_prediction_that_misses_the_reference_extent():
    ref = blank((4, 6, 6)); ref[1:3, 2:4, 2:4] = 1
    pred = ref.copy()
    warnings: list[str] = []
    # the same array 4 voxels further along x (lost origin / wrong pairing): 1/3 of the extent
    result = evaluate_pairs([("far", img(pred, (1, 1, 3), (4.0, 0.0, 0.0)), img(ref, (1, 1, 3)))],
                            warn=warnings.append)
    assert len(warnings) == 1 and "covers only 33%" in warnings[0]
    assert result["cases"]["far"]["GTVp"]["DSC"] == 0.0
