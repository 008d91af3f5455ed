"""A worker that dies by a signal (issue 25): "the worker crashed (SIGSEGV) during <stage>", exit 1,
and the request saved for a bug report (paths and options only), told apart from an exit code.

A real worker on the bundled demo model is killed with SIGSEGV by the test while it is in a
known stage (the client has seen that stage's progress event and the stage lasts seconds).
"""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest

from HNTumorSegLib.fileio import read_json
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.protocol import ErrorEvent, ProgressEvent
from HNTumorSegLib.runner import WorkerRun, save_crash_report
from HNTumorSegLib.worker_cli import raise_for_failure
from HNTumorSegLib.errors import WorkerFailed, exit_code_for


@pytest.fixture()
def request_dict(tmp_path):
    # big enough, with TTA, that inference lasts seconds: the signal lands inside it
    case = make_midrt_case(seed=4, shape=(40, 160, 160), n_nodes=2)
    t2, prior = tmp_path / "mid_T2.nii.gz", tmp_path / "prior.nii.gz"
    write_image(case["midRT_T2"], t2)
    write_image(case["preRT_mask_registered"], prior)
    return {"task": "midrt", "model": "demo-midrt", "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
            "output_path": str(tmp_path / "out" / "labels.nii.gz"), "device": "cpu", "tta": True}


def _until_stage(run: WorkerRun, stage: str, timeout: float = 300) -> None:
    seen, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end and run.running:
        seen += run.poll()
        if any(isinstance(e, ProgressEvent) and e.stage == stage and 0 < (e.stage_fraction or 0) < 1 for e in seen):
            return
        time.sleep(0.01)
    raise AssertionError(f"no {stage} progress within {timeout} s; saw {[getattr(e, 'stage', e) for e in seen]}")


def test_sigsegv_is_reported_with_its_stage_and_the_request_saved(request_dict, tmp_path, monkeypatch):
    monkeypatch.setenv("HNTUMORSEG_LOG_DIR", str(tmp_path / "logs"))
    run = WorkerRun(temp_parent=tmp_path, env={"OMP_NUM_THREADS": "1"})
    run.start(SegmentRequest.from_dict(request_dict))
    _until_stage(run, "inference")
    os.kill(run.proc.pid, signal.SIGSEGV)
    final = run.wait(timeout=120)
    assert run.state == "crashed" and isinstance(final, ErrorEvent) and final.kind == "crashed"
    assert run.returncode == -signal.SIGSEGV
    assert final.message.startswith("the worker crashed (SIGSEGV) during inference"), final.message
    assert "\n" not in final.message
    # the request, saved where the message says, owner-only, with nothing but the request's words
    assert run.report_path is not None and f"request saved for a bug report: {run.report_path}" in final.message
    assert run.report_path.parent == tmp_path / "logs"
    assert stat.S_IMODE(run.report_path.stat().st_mode) == 0o600
    report = read_json(run.report_path, "crash report")
    assert report["signal"] == "SIGSEGV" and report["stage"] == "inference"
    assert report["request"]["input_paths"] == request_dict["input_paths"]
    assert report["worker_log"] == str(run.log_path) and run.log_path.exists()
    assert not run.temp_dir.exists()
    # the command line: one line, exit 1 (an internal fault, not the user's input)
    with pytest.raises(WorkerFailed) as err:
        raise_for_failure(final)
    assert str(err.value).startswith("the worker crashed (SIGSEGV) during inference")
    assert exit_code_for(final.kind) == 1


def test_an_exit_code_is_not_called_a_signal(tmp_path, monkeypatch):
    """A worker that exits with a code (no event) says so, and no crash report is written."""
    monkeypatch.setenv("HNTUMORSEG_LOG_DIR", str(tmp_path / "logs"))
    import sys

    run = WorkerRun(temp_parent=tmp_path, argv=[sys.executable, "-c", "import sys; sys.exit(3)"])
    run.start(SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, output_path="labels.nii.gz"))
    final = run.wait(timeout=120)
    assert final.kind == "crashed" and final.message.startswith("the worker exited with code 3 during start-up")
    assert run.report_path is None and not list((tmp_path / "logs").glob("crash-*.json"))


def test_crash_report_holds_no_image_data(tmp_path, monkeypatch):
    monkeypatch.setenv("HNTUMORSEG_LOG_DIR", str(tmp_path / "logs"))
    request = SegmentRequest(model="demo-midrt", input_paths={"T2": "/data/p1/t2.nii.gz"}, output_path="o.nii.gz")
    from HNTumorSegLib.runner import request_to_dict

    path = save_crash_report(request_to_dict(request), -signal.SIGSEGV, "prompts")
    report = read_json(path, "crash report")
    assert set(report) == {"what", "hntumorseg", "signal", "returncode", "stage", "python", "platform",
                           "worker_log", "request"}
    assert report["request"] == request_to_dict(request)
