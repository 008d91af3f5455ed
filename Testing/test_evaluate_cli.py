"""`hntumorseg evaluate` end to end: challenge layouts, resampling warning, and bad input (exit 2, one line, no JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import Image, write_image

REPO = Path(__file__).resolve().parents[1]


def write_label(path: Path, array: np.ndarray, spacing=(0.5, 0.5, 3.0), origin=(0.0, 0.0, 0.0)) -> Path:
    return write_image(Image(np.asarray(array, dtype=np.uint8), spacing, origin), path)


def masks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) for one small case: GTVp block, one node; prediction misses one GTVp slice."""
    ref = np.zeros((6, 12, 12), np.uint8)
    ref[1:4, 2:6, 2:6] = 1
    ref[3, 8:10, 8 - seed % 2:10] = 2
    pred = ref.copy()
    pred[3, 2:6, 2:6] = 0
    return ref, pred


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a child process (what a user types)."""
    return subprocess.run([sys.executable, "-m", "HNTumorSegLib", "evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_hntsmrg_layout_end_to_end(tmp_path, capsys):
    refs, preds = tmp_path / "HNTSMRG24_train", tmp_path / "preds"
    for cid in (3, 12):
        ref, pred = masks(cid)
        for tp in ("preRT", "midRT"):
            write_label(refs / str(cid) / tp / f"{cid}_{tp}_mask.nii.gz", ref if tp == "midRT" else 0 * ref)
            write_label(refs / str(cid) / tp / f"{cid}_{tp}_T2.nii.gz", 100 * np.ones_like(ref))
        write_label(preds / f"{cid}.nii.gz", pred)
    out = tmp_path / "scores.json"
    rc = main(["evaluate", "--pred", str(preds), "--ref", str(refs), "--timepoint", "midRT", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(out.read_text())
    assert list(data["cases"]) == ["3", "12"]
    # GTVp: each case ref 48 voxels, pred 32 inside -> DSCagg = 2*64 / 160
    assert data["aggregate"]["GTVp"]["DSCagg"] == pytest.approx(0.8)
    assert data["aggregate"]["GTVn"] == {"DSCagg": 1.0, "F1agg": 1.0}
    assert data["aggregate"]["DSCagg_mean"] == pytest.approx(0.9)
    gtvp = data["cases"]["3"]["GTVp"]
    assert gtvp["volume_ref_ml"] == pytest.approx(48 * 0.75 / 1000)
    assert gtvp["HD95"] == pytest.approx(3.0)  # the missing slice is one 3 mm step away
    assert "DSCagg mean" in captured.out and "0.9000" in captured.out
    assert captured.err == ""


def test_hecktor_layout_and_grid_warning(tmp_path, capsys):
    refs, preds = tmp_path / "hecktor", tmp_path / "preds"
    ref, pred = masks(1)
    write_label(refs / "CHUM-001.nii.gz", ref, spacing=(1.0, 1.0, 2.0))
    write_image(Image(np.full(ref.shape, -1000, np.int16), (1.0, 1.0, 2.0)), refs / "CHUM-001__CT.nii.gz")
    write_image(Image(np.full(ref.shape, 7, np.int16), (1.0, 1.0, 2.0)), refs / "CHUM-001__PT.nii.gz")
    # the prediction on a grid twice as fine (same origin): nearest neighbour gives `pred` back
    fine = pred.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    write_label(preds / "CHUM-001.nii.gz", fine, spacing=(0.5, 0.5, 1.0))
    out = tmp_path / "s.json"
    rc = main(["evaluate", "--pred", str(preds), "--ref", str(refs), "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    assert "resampled" in captured.err and "CHUM-001" in captured.err
    case = json.loads(out.read_text())["cases"]["CHUM-001"]
    assert case["GTVp"]["DSC"] == pytest.approx(2 * 32 / 80)
    assert (case["GTVn"]["TP"], case["GTVn"]["FP"], case["GTVn"]["FN"]) == (1, 0, 0)


def test_single_files_and_no_json(tmp_path, capsys):
    ref, pred = masks(0)
    r = write_label(tmp_path / "7_midRT_mask.nii.gz", ref)
    p = write_label(tmp_path / "out" / "prediction.nii.gz", pred)
    assert main(["evaluate", "--pred", str(p), "--ref", str(r)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("7 ")
    assert list(tmp_path.rglob("*.json")) == []


# ---- bad input through the real entry point: exit 2, one stderr line, no JSON -------------------

def assert_bad_input(result: subprocess.CompletedProcess, json_path: Path, words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hntumorseg evaluate: error:") and words in lines[0]
    assert "Traceback" not in result.stderr
    assert not json_path.exists()
    assert not list(json_path.parent.glob(".tmp-*"))


@pytest.fixture
def cohort(tmp_path):
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    for cid in ("1", "2"):
        ref, pred = masks(int(cid))
        write_label(refs / f"{cid}.nii.gz", ref)
        write_label(preds / f"{cid}.nii.gz", pred)
    return refs, preds, tmp_path / "scores.json"


def test_missing_folder(cohort, tmp_path):
    refs, _, out = cohort
    assert_bad_input(run_cli("--pred", str(tmp_path / "nope"), "--ref", str(refs), "--json", str(out)), out,
                     "does not exist")


def test_no_matching_cases(cohort, tmp_path):
    refs, _, out = cohort
    other = tmp_path / "other"
    write_label(other / "99.nii.gz", masks(0)[1])
    assert_bad_input(run_cli("--pred", str(other), "--ref", str(refs), "--json", str(out)), out, "no prediction matches")


def test_labels_outside_0_1_2_in_the_last_case(cohort):
    # the first case is fine: the error in the second must still leave no JSON behind
    refs, preds, out = cohort
    _, pred = masks(2)
    pred[0, 0, 0] = 5
    write_label(preds / "2.nii.gz", pred)
    assert_bad_input(run_cli("--pred", str(preds), "--ref", str(refs), "--json", str(out)), out, "labels [5]")


def test_unreadable_file(cohort):
    refs, preds, out = cohort
    (refs / "2.nii.gz").write_bytes(b"this is not a NIfTI file")
    assert_bad_input(run_cli("--pred", str(preds), "--ref", str(refs), "--json", str(out)), out, "2.nii.gz")


def test_ambiguous_timepoint_in_process(tmp_path, capsys):
    ref, pred = masks(0)
    for tp in ("preRT", "midRT"):
        write_label(tmp_path / "refs" / "4" / tp / f"4_{tp}_mask.nii.gz", ref)
    write_label(tmp_path / "preds" / "4.nii.gz", pred)
    out = tmp_path / "s.json"
    rc = main(["evaluate", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "refs"), "--json", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--timepoint" in err[0]
    assert not out.exists()
