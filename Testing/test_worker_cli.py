"""`run_in_worker`: the segment command's path through the background worker (real child process)."""

from __future__ import annotations

import json
import os

import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.worker_cli import run_in_worker

MODEL = os.environ.get("HNTUMORSEG_TEST_MODEL", "demo-midrt")  # the bundled demo model


@pytest.fixture(scope="module")
def request_dict(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    case = make_midrt_case(seed=1, shape=(16, 64, 64))
    write_image(case["midRT_T2"], root / "t2.nii.gz")
    write_image(case["preRT_mask_registered"], root / "prior.nii.gz")
    return {"task": "midrt", "model": MODEL, "input_paths": {"T2": str(root / "t2.nii.gz")},
            "prior_path": str(root / "prior.nii.gz"), "output_path": str(root / "labels.nii.gz"), "device": "cpu"}


def test_bar_mode_draws_progress_and_prints_summary(request_dict, capsys, monkeypatch):
    # Relative paths, as typed on a command line, must mean the same inside the worker.
    root = os.path.dirname(request_dict["output_path"])
    monkeypatch.chdir(root)
    rel = dict(request_dict, input_paths={"T2": "t2.nii.gz"}, prior_path="prior.nii.gz", output_path="labels.nii.gz")
    assert run_in_worker(SegmentRequest.from_dict(rel), "bar") == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote ") and "labels.nii.gz" in out and "GTVp" in out
    assert "%" in err and "left" in err and "inference" in err
    assert os.path.isfile(request_dict["output_path"])


def test_json_mode_prints_events_and_user_error_is_input_error(request_dict, tmp_path, capsys):
    bad = dict(request_dict, input_paths={"T2": str(tmp_path / "absent_T2.nii.gz")}, output_path=str(tmp_path / "l.nii.gz"))
    with pytest.raises(InputError, match="absent_T2.nii.gz"):
        run_in_worker(SegmentRequest.from_dict(bad), "json")
    lines = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(line) for line in lines]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    assert all(e["event"] == "progress" for e in events[:-1])
    assert not os.path.exists(tmp_path / "l.nii.gz")
