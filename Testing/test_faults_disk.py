"""Issue 11: a full disk is one line and a non-zero exit, never a success with an empty or truncated
file; no partial or temporary file is left and an earlier good output stays byte-identical.

Each test mounts its own small tmpfs (root; CI is root and never skips: faults_testlib.small_tmpfs)
and fills it with ballast, leaving either nothing or a few pages: the second case lets a writer
get half-way (``sitk.WriteImage`` then leaves a short file without raising - the case that used
to report success).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import require_module

from HNTumorSegLib.image import Image, read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case, write_hntsmrg_cohort
from faults_testlib import fill_disk, hntumorseg, leftovers, one_error_line, small_tmpfs


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _earlier_labels(path, shape=(8, 16, 16)) -> str:
    arr = np.zeros(shape, np.uint8)
    arr[2:4, 4:8, 4:8] = 1
    write_image(Image(arr), path)
    return _sha(path)


def _non_ballast(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("filler"))


@pytest.mark.parametrize("leave_bytes", [0, 16384])
def test_segment_on_a_full_disk_fails_in_one_line_and_keeps_the_earlier_output(tmp_path, leave_bytes):
    case = make_midrt_case(seed=0)
    t2 = write_image(case["midRT_T2"], tmp_path / "t2.nii.gz")
    prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    with small_tmpfs(tmp_path / "disk") as disk:
        labels = disk / "labels.nii.gz"
        before = _earlier_labels(labels)
        fill_disk(disk, leave_bytes)
        res = hntumorseg("segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", prior,
                         "--output", labels, "--probabilities", disk / "prob.nii.gz", "--device", "cpu",
                         "--progress", "none", env={"TMPDIR": str(tmp_path)})
        assert res.returncode == 1, res.stderr[-2000:]
        line = one_error_line(res.stderr)
        assert "free" in line and str(disk) in line and "internal" not in line, line
        assert _sha(labels) == before                      # the earlier output, byte-identical
        assert _non_ballast(disk) == ["labels.nii.gz"]     # no partial prob.nii.gz, no hidden temp file


def test_evaluate_json_on_a_full_disk_keeps_the_earlier_scores(tmp_path):
    ref = tmp_path / "ref.nii.gz"
    _earlier_labels(ref)
    with small_tmpfs(tmp_path / "disk") as disk:
        scores = disk / "scores.json"
        scores.write_text(json.dumps({"earlier": True}) + "\n")
        before = _sha(scores)
        fill_disk(disk, 0)
        res = hntumorseg("evaluate", "--pred", ref, "--ref", ref, "--json", scores)
        assert res.returncode == 1, res.stderr[-2000:]
        line = one_error_line(res.stderr)
        assert "scores.json" in line and "free" in line, line
        assert _sha(scores) == before
        assert _non_ballast(disk) == ["scores.json"]


def test_batch_on_a_full_disk_fails_in_one_line_and_keeps_the_earlier_prediction(tmp_path):
    data = tmp_path / "cohort"
    write_hntsmrg_cohort(data, n=1, seed=3, shape=(16, 64, 64))
    with small_tmpfs(tmp_path / "disk") as disk:
        out = disk / "out"
        out.mkdir()
        pred = out / "1_midRT_pred.nii.gz"
        before = _earlier_labels(pred)
        fill_disk(disk, 0)
        res = hntumorseg("batch", "--layout", "hntsmrg", "--data", data, "--model", "demo-midrt", "--task", "midrt",
                         "--out", out, "--device", "cpu", "--no-report", env={"TMPDIR": str(tmp_path)})
        assert res.returncode == 1, res.stderr[-3000:]
        assert "Traceback" not in res.stderr, res.stderr[-3000:]
        last = res.stderr.strip().splitlines()[-1]
        assert "error" in last and "free" in last, res.stderr[-3000:]
        assert _sha(pred) == before
        assert _non_ballast(out) == ["1_midRT_pred.nii.gz"]      # no marker, no batch.json, no temp file
        assert leftovers(out, tmp_path) == []


def test_export_on_a_full_disk_fails_in_one_line(tmp_path):
    require_module("highdicom")
    from HNTumorSegLib.dicom.read import read_volume
    from HNTumorSegLib.phantoms import make_prert_case
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series

    case = make_prert_case(seed=3, shape=(12, 40, 40), spacing=(1.5, 1.5, 3.0), n_nodes=2)
    write_dicom_series(case["T2"], tmp_path / "study" / "series", "MR")
    grid = read_volume(tmp_path / "study", name="source")
    labels = write_image(grid.with_array(case["mask"].array.astype(np.uint8)), tmp_path / "labels.nii.gz")
    with small_tmpfs(tmp_path / "disk") as disk:
        rt = disk / "rtstruct.dcm"
        rt.write_bytes(b"earlier RTSTRUCT")
        before = _sha(rt)
        fill_disk(disk, 0)
        res = hntumorseg("export", "--labels", labels, "--source", tmp_path / "study", "--rtstruct", rt,
                         "--seg", disk / "seg.dcm")
        assert res.returncode == 1, res.stderr[-2000:]
        line = one_error_line(res.stderr)
        assert "free" in line, line
        assert _sha(rt) == before
        assert _non_ballast(disk) == ["rtstruct.dcm"]


def test_write_image_on_a_full_disk_raises_and_keeps_the_earlier_file(tmp_path):
    """The library path: write_image verifies what it wrote (sitk does not raise on ENOSPC)."""
    from HNTumorSegLib.errors import EnvironmentFault

    big = Image(np.random.default_rng(0).random((40, 64, 64)).astype(np.float32))
    with small_tmpfs(tmp_path / "disk") as disk:
        target = disk / "image.nii.gz"
        before = _earlier_labels(target)
        fill_disk(disk, 16384)
        with pytest.raises(EnvironmentFault, match="free"):
            write_image(big, target)
        assert _sha(target) == before
        assert read_image(target, label=True).array.sum() > 0
        assert _non_ballast(disk) == ["image.nii.gz"]


def test_done_marker_on_a_full_disk_is_one_environment_error(tmp_path):
    from HNTumorSegLib.batch.resume import MARKER_DIR, mark_done
    from HNTumorSegLib.errors import EnvironmentFault

    with small_tmpfs(tmp_path / "disk") as disk:
        pred = disk / "1.nii.gz"
        _earlier_labels(pred)
        (disk / MARKER_DIR).mkdir()
        fill_disk(disk, 0)
        with pytest.raises(EnvironmentFault, match="free"):
            mark_done(disk, "1", pred, "abc", {"total": 1.0})
        assert list((disk / MARKER_DIR).iterdir()) == []
