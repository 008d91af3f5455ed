"""`hntumorseg batch --cluster auto` on a private local Ray instance (Ray is an optional extra for
users; requirements-test.txt installs it, so CI runs this test and fails it when Ray is missing)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import unavailable

from HNTumorSegLib.batch.resume import MARKER_DIR
from HNTumorSegLib.phantoms import write_hntsmrg_cohort

ROOT = Path(__file__).resolve().parent.parent
MODEL = os.environ.get("HNTUMORSEG_TEST_MODEL", "demo-midrt")  # the bundled demo model


@pytest.mark.slow
def test_cluster_auto_runs_cases_as_ray_tasks_and_resumes(tmp_path):
    if importlib.util.find_spec("ray") is None:  # not imported here: the batch's child processes use it
        unavailable('ray is not installed (pip install -r requirements-test.txt, or "ray[default]>=2.9,<3")')
    data, out = tmp_path / "cohort", tmp_path / "out"
    write_hntsmrg_cohort(data, n=2, seed=5, shape=(16, 64, 64))
    argv = [sys.executable, "-m", "HNTumorSegLib", "batch", "--layout", "hntsmrg", "--data", str(data),
            "--model", MODEL, "--task", "midrt", "--out", str(out), "--cluster", "auto", "--device", "cpu"]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # no cluster around: --cluster auto starts a private one; its own temp folder (sockets, spill,
    # logs that name the cases) is removed after the run - Ray's default $TMPDIR/ray/session_* stayed
    env = dict(os.environ, RAY_ADDRESS="", TMPDIR=str(tmp))
    before = set(Path("/tmp").glob("hnts-ray-*"))   # this TMPDIR is too deep for Ray's sockets: /tmp is used
    first = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in tmp.iterdir()) == [], "left in the temp folder"
    assert set(Path("/tmp").glob("hnts-ray-*")) <= before, "the Ray instance's folder was left"
    assert "cases on Ray" in first.stderr and "'num_cpus': 1" in first.stderr
    assert sorted(p.stem for p in (out / MARKER_DIR).glob("*.json")) == ["1", "2"]
    assert (out / "1_midRT_pred.nii.gz").is_file() and (out / "metrics.json").is_file()
    again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stderr
    assert {v["status"] for v in json.loads((out / "batch.json").read_text())["cases"].values()} == {"skipped"}
