"""HD99.9 / HD100, HECKTOR 2025's GTVp mean per-patient DSC and ``evaluate --challenge``, by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.metrics import (Challenge, evaluate_pairs, format_challenge, hd_percentile, ranking_values,
                                   score_case)


def img(array, spacing=(1.0, 1.0, 1.0)) -> Image:
    return Image(np.asarray(array, dtype=np.uint8), spacing, (0.0, 0.0, 0.0))


def three_voxel_case() -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) on a (x 1, y 1, z 3) mm grid: ref one voxel; pred that voxel, one 4 voxels along x,
    one 3 slices along z. Pooled surface distances: pred->ref [0, 4, 9] mm, ref->pred [0]."""
    ref = np.zeros((8, 5, 9), np.uint8)
    ref[2, 2, 2] = 1
    pred = ref.copy()
    pred[2, 2, 6] = 1   # 4 x 1 mm
    pred[5, 2, 2] = 1   # 3 x 3 mm
    return pred, ref


def test_hd99_9_and_hd100_hand_computed_on_an_anisotropic_case():
    pred, ref = three_voxel_case()
    scores = score_case(img(pred, (1.0, 1.0, 3.0)), img(ref, (1.0, 1.0, 3.0))).metrics["GTVp"]
    # sorted pooled set [0, 0, 4, 9]; numpy's linear percentile at q: position q/100 * 3
    assert scores["HD100"] == pytest.approx(9.0)
    assert scores["HD99_9"] == pytest.approx(4 + (0.999 * 3 - 2) * 5)   # 8.985
    assert scores["HD95"] == pytest.approx(4 + (0.95 * 3 - 2) * 5)      # 8.25
    assert scores["MSD"] == pytest.approx(13 / 4)
    assert hd_percentile(pred == 1, ref == 1, 100.0, (3.0, 1.0, 1.0)) == pytest.approx(9.0)
    # empty GTVn: undefined, never a crash
    gtvn = score_case(img(pred, (1.0, 1.0, 3.0)), img(ref, (1.0, 1.0, 3.0))).metrics["GTVn"]
    assert gtvn["HD99_9"] is None and gtvn["HD100"] is None
    with pytest.raises(ValueError):
        hd_percentile(pred == 1, ref == 1, 101.0)


@pytest.mark.parametrize("seed", range(4))
def test_hd100_is_the_brute_force_hausdorff_distance_of_the_surfaces(seed):
    rng = np.random.default_rng(seed)
    a = ndimage.binary_dilation(rng.random((9, 12, 11)) > 0.97)
    b = ndimage.binary_dilation(rng.random((9, 12, 11)) > 0.97)
    a[1, 1, 1] = b[-2, -2, -2] = True
    spacing_xyz = tuple(float(s) for s in rng.uniform(0.5, 4.0, 3))
    spacing_zyx = spacing_xyz[::-1]
    struct = ndimage.generate_binary_structure(3, 1)
    sa = np.argwhere(a ^ ndimage.binary_erosion(a, struct)) * spacing_zyx
    sb = np.argwhere(b ^ ndimage.binary_erosion(b, struct)) * spacing_zyx
    d = cdist(sa, sb)
    pooled = np.hstack([d.min(axis=1), d.min(axis=0)])
    scores = score_case(img(a.astype(np.uint8), spacing_xyz), img(b.astype(np.uint8), spacing_xyz)).metrics["GTVp"]
    assert scores["HD100"] == pytest.approx(pooled.max())
    assert scores["HD99_9"] == pytest.approx(np.percentile(pooled, 99.9))


def cohort() -> list[tuple[str, Image, Image]]:
    """Five cases on different anisotropic grids; GTVp per-case DSC 2/3, 0, (excluded), (excluded), 1."""
    a_ref, a_pred = np.zeros((4, 6, 6), np.uint8), np.zeros((4, 6, 6), np.uint8)
    a_ref[1:3, 1:3, 1:3] = 1; a_pred[1:3, 1:3, 1:2] = 1               # 8 vs 4 inside: 2*4/12
    b_ref, b_pred = a_ref.copy(), np.zeros_like(a_ref)                 # missed: 0
    c_ref = np.zeros_like(a_ref); c_ref[0, 0, 0] = 2; c_pred = c_ref.copy()   # no GTVp anywhere
    d_ref = np.zeros_like(a_ref); d_pred = np.zeros_like(a_ref); d_pred[3, 5, 5] = 1  # false positive only
    e_ref = a_ref.copy(); e_pred = a_ref.copy()                        # perfect
    grids = [(0.5, 0.5, 3.0), (1.0, 1.0, 2.0), (0.8, 0.8, 4.0), (2.0, 2.0, 2.0), (0.6, 0.6, 5.0)]
    arrays = [(a_pred, a_ref), (b_pred, b_ref), (c_pred, c_ref), (d_pred, d_ref), (e_pred, e_ref)]
    return [(cid, img(p, g), img(r, g)) for cid, (p, r), g in zip("abcde", arrays, grids)]


def test_gtvp_dsc_mean_leaves_out_cases_without_a_reference_gtvp():
    result = evaluate_pairs(cohort())
    gtvp = result["aggregate"]["GTVp"]
    assert gtvp["DSC_mean"] == pytest.approx((2 / 3 + 0.0 + 1.0) / 3)
    assert gtvp["DSC_mean_n"] == 3
    assert result["cases"]["d"]["GTVp"]["DSC"] == 0.0      # scored per case, but not in the mean
    # DSCagg weighs by mm³ and counts the false positive, so it differs
    v = [0.5 * 0.5 * 3.0, 1.0 * 2.0, 0.8 * 0.8 * 4.0, 8.0, 0.6 * 0.6 * 5.0]
    agg = 2 * (4 * v[0] + 8 * v[4]) / (12 * v[0] + 8 * v[1] + 1 * v[3] + 16 * v[4])
    assert gtvp["DSCagg"] == pytest.approx(agg)
    assert ranking_values(result, Challenge.HECKTOR2025)["GTVp DSC mean"] == pytest.approx(5 / 9)


def test_dsc_mean_undefined_without_any_reference_gtvp():
    c = cohort()[2]
    result = evaluate_pairs([c])
    assert result["aggregate"]["GTVp"]["DSC_mean"] is None and result["aggregate"]["GTVp"]["DSC_mean_n"] == 0
    assert "n/a" in format_challenge(result, Challenge.HECKTOR2025)


def test_evaluate_challenge_prints_exactly_the_ranking_metrics(tmp_path, capsys):
    for cid, pred, ref in cohort():
        write_image(pred, tmp_path / "pred" / f"{cid}.nii.gz")
        write_image(ref, tmp_path / "ref" / f"{cid}.nii.gz")
    out = tmp_path / "s.json"
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--json", str(out)]
    assert main(args + ["--challenge", "hecktor2025"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("HECKTOR 2025 ranking metrics over 5 cases")
    metrics = [line.split()[:3] for line in lines[1:4]]
    assert [m[:2] for m in metrics] == [["GTVp", "DSC"], ["GTVn", "DSCagg"], ["GTVn", "F1agg"]]
    assert lines[1].split()[3] == f"{5 / 9:.4f}"
    assert not any("HD95" in line or "DSCagg mean" in line for line in lines)
    data = json.loads(out.read_text())          # the JSON keeps everything
    assert data["aggregate"]["GTVp"]["DSC_mean_n"] == 3 and "HD100" in data["cases"]["a"]["GTVp"]

    assert main(args + ["--challenge", "HNTSMRG2024"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("HNTS-MRG 2024") and [line.split()[:2] for line in lines[1:4]] == [
        ["GTVp", "DSCagg"], ["GTVn", "DSCagg"], ["DSCagg", "mean"]]
    assert not any("F1agg" in line or "DSC mean" in line for line in lines)


def test_unknown_challenge_is_one_line_exit_2(tmp_path, capsys):
    _, pred, ref = cohort()[0]
    write_image(pred, tmp_path / "p.nii.gz"); write_image(ref, tmp_path / "r.nii.gz")
    rc = main(["evaluate", "--pred", str(tmp_path / "p.nii.gz"), "--ref", str(tmp_path / "r.nii.gz"),
               "--challenge", "hecktor2052", "--json", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean hecktor2025" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
