"""Issue 11: batch resumes by content - an input replaced in place (same path, new content) is redone.

A real one-case cohort is segmented by the real ``hntumorseg batch``; then its mid-RT T2 is replaced by another phantom's under the same name and the rerun segments it
again (new prediction, new marker). The fingerprint's parts are checked directly too: input
content, model identity.
"""

from __future__ import annotations

import json
import shutil

import pytest

from HNTumorSegLib.batch.resume import MARKER_DIR, content_fingerprint, fingerprint, model_identity
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case, write_hntsmrg_cohort
from HNTumorSegLib.pipeline.request import SegmentRequest
from faults_testlib import hntumorseg


def _batch(data, out, tmp_path):
    res = hntumorseg("batch", "--layout", "hntsmrg", "--data", data, "--model", "demo-midrt", "--task", "midrt",
                     "--out", out, "--device", "cpu", "--no-report", env={"TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "batch.json").read_text())["cases"]["1"]["status"]


@pytest.mark.slow  # two batch runs, ~45 s at load ~10 on 2 shared cores: CI runs it, the default run skips it
def test_replaced_input_is_redone_on_resume(tmp_path):
    data, out = tmp_path / "cohort", tmp_path / "out"
    write_hntsmrg_cohort(data, n=1, seed=4, shape=(16, 64, 64))
    assert _batch(data, out, tmp_path) == "ok"
    marker_first = (out / MARKER_DIR / "1.json").read_text()   # (an unchanged rerun skips: test_batch_resume.py)
    t2 = data / "1" / "midRT" / "1_midRT_T2.nii.gz"
    other = make_midrt_case(seed=77, shape=(16, 64, 64), spacing=(0.9, 0.9, 3.0))
    write_image(other["midRT_T2"], t2)                      # same path, new content
    assert _batch(data, out, tmp_path) == "ok"               # redone, not skipped
    assert json.loads((out / MARKER_DIR / "1.json").read_text())["fingerprint"] != \
        json.loads(marker_first)["fingerprint"]


def test_fingerprint_follows_content_and_model(tmp_path):
    a = tmp_path / "a.nii.gz"
    a.write_bytes(b"one" * 1000)
    req = SegmentRequest(model=str(tmp_path / "model"), input_paths={"T2": str(a)}, output_path="o.nii.gz")
    shutil.copytree(__import__("pipeline_testlib").DEMO_MIDRT, tmp_path / "model")
    fp = fingerprint(req)
    assert fingerprint(req) == fp
    before = content_fingerprint(a)
    a.write_bytes(b"two" * 1000)                             # same size, same name
    assert content_fingerprint(a) != before and fingerprint(req) != fp
    fp2 = fingerprint(req)
    model_identity.cache_clear()
    (tmp_path / "model" / "model.json").write_text((tmp_path / "model" / "model.json").read_text() + " ")
    model_identity.cache_clear()
    assert fingerprint(req) != fp2
