"""The warm session as a real child process (``python -m HNTumorSegLib.session``) running the real
pipeline and the bundled demo model: one model load for many requests, error then success, cancel
within 2 s, the session's end when its parent is SIGKILLed (no process, no temp folder left),
and the ``hntumorseg session`` command on stdin/stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms import make_midrt_case
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.protocol import ErrorEvent, ProgressEvent, ResultEvent
from HNTumorSegLib.session import SessionClient

ROOT = Path(__file__).resolve().parent.parent
MODEL = "demo-midrt"
ENV = {"OMP_NUM_THREADS": "1"}


def write_case(root: Path, shape=(16, 48, 48), seed=2) -> dict:
    """A mid-RT phantom (T2 + registered prior) and the request.json fields for it."""
    case = make_midrt_case(seed=seed, shape=shape, n_nodes=2)
    root.mkdir(parents=True, exist_ok=True)
    t2, prior = root / "mid_T2.nii.gz", root / "prior.nii.gz"
    write_image(case["midRT_T2"], t2)
    write_image(case["preRT_mask_registered"], prior)
    return {"task": "midrt", "model": MODEL, "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
            "output_path": str(root / "labels.nii.gz"), "device": "cpu", "folds": "first"}


def request(fields: dict, out: Path, **changes) -> SegmentRequest:
    return SegmentRequest.from_dict(dict(fields, output_path=str(out), **changes))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    return write_case(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    client = SessionClient(env=ENV, temp_parent=str(tmp_path_factory.mktemp("sessions")))
    yield client.start()
    client.close()


def test_three_requests_one_model_load(session, small, tmp_path):
    finals = [session.run(request(small, tmp_path / f"labels_{i}.nii.gz"), timeout_s=300) for i in range(3)]
    assert all(isinstance(f, ResultEvent) for f in finals), (finals, list(session.stderr_tail))
    assert [f.info["session"]["model_loads"] for f in finals] == [1, 1, 1]
    assert [f.info["session"]["requests"] for f in finals] == [1, 2, 3]
    assert len({f.info["session"]["pid"] for f in finals}) == 1 and session.starts == 1
    for i, f in enumerate(finals):
        assert Path(f.files["labels"]) == tmp_path / f"labels_{i}.nii.gz"
        assert set(map(int, set(read_image(f.files["labels"], label=True).array.ravel()))) <= {0, 1, 2}
    assert session.status()["model_loads"] == 1
    # other folds are another model: loaded once more, then kept again
    again = session.run(request(small, tmp_path / "all.nii.gz", folds="all"), timeout_s=300)
    assert isinstance(again, ResultEvent) and again.info["session"]["model_loads"] == 2


def test_bad_request_gets_its_error_and_the_next_succeeds(session, small, tmp_path):
    bad = session.run(request(small, tmp_path / "bad.nii.gz", input_paths={"T2": str(tmp_path / "missing.nii.gz")}))
    assert isinstance(bad, ErrorEvent) and bad.kind == "bad_input" and "missing.nii.gz" in bad.message
    assert not (tmp_path / "bad.nii.gz").exists()
    good = session.run(request(small, tmp_path / "good.nii.gz"), timeout_s=300)
    assert isinstance(good, ResultEvent), good
    # a refinement naming no box of the case: its error, the session lives on
    refine = session.run(request(small, tmp_path / "r.nii.gz"),
                         refine={"base_labels": good.files["labels"], "boxes": ["GTVn-9"]})
    assert isinstance(refine, ErrorEvent) and refine.kind == "bad_input" and "GTVn-9" in refine.message
    assert session.starts == 1


def test_cancel_ends_the_running_request_promptly_and_the_session_answers_the_next(session, small, tmp_path_factory,
                                                                                     tmp_path):
    long = write_case(tmp_path_factory.mktemp("long"), shape=(40, 160, 160), seed=4)
    job = session.submit(request(long, tmp_path / "long.nii.gz", tta=True), timeout_s=600)
    t_end = time.monotonic() + 300
    while job.running and time.monotonic() < t_end:
        if any(isinstance(e, ProgressEvent) and e.stage == "inference" and 0 < (e.stage_fraction or 0) < 1
               for e in job.poll() + job.events):
            break
        time.sleep(0.02)
    assert job.running, job.final
    pid = session.pid
    t0 = time.monotonic()
    job.cancel()
    assert time.monotonic() - t0 < 30.0  # about a second when idle; room for a loaded machine
    assert job.state == "cancelled" and job.final.kind == "cancelled"
    assert not (tmp_path / "long.nii.gz").exists()
    nxt = session.run(request(small, tmp_path / "next.nii.gz"), timeout_s=300)
    assert isinstance(nxt, ResultEvent), (nxt, list(session.stderr_tail))
    assert session.pid == pid and session.starts == 1      # the same session answered (no restart)


PARENT = textwrap.dedent("""
    import json, sys, time
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from HNTumorSegLib.session import SessionClient
    client = SessionClient(env={"OMP_NUM_THREADS": "1"}, temp_parent=sys.argv[2]).start()
    job = client.submit(SegmentRequest.from_dict(json.loads(sys.argv[1])))
    (job.temp_dir / "input.nii.gz").write_bytes(b"x")          # inputs a caller wrote for the job
    t_end = time.monotonic() + 120                             # a loaded machine is slow, not wrong
    while job.progress is None and job.running and time.monotonic() < t_end:
        job.poll()                                             # until the session works on the request
        time.sleep(0.02)
    print(json.dumps({"pid": client.pid, "temp": str(client.temp_dir), "progress": job.progress is not None}),
          flush=True)
    time.sleep(600)
""")


def test_session_exits_and_leaves_no_temp_folder_when_its_parent_is_killed(small, tmp_path):
    temps = tmp_path / "temps"
    temps.mkdir()
    fields = dict(small, output_path=str(tmp_path / "orphan.nii.gz"))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(fields), str(temps)], stdout=subprocess.PIPE,
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True)
    try:
        info = json.loads(parent.stdout.readline())
        session = psutil.Process(info["pid"])
        assert info["progress"], "the session never reported progress on the request"   # it is working on it
        assert Path(info["temp"]).is_dir() and session.is_running()
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        gone, alive = psutil.wait_procs([session], timeout=120)  # returns as soon as it is gone
        assert not alive, "the session outlived its parent"
        assert not Path(info["temp"]).exists() and list(temps.iterdir()) == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_session_command_on_stdin_and_stdout(small, tmp_path):
    lines = [json.dumps({"id": "bad", "request": {"model": MODEL, "inputz": {}}}),
             json.dumps({"id": "r1", "request": dict(small, output_path=str(tmp_path / "a.nii.gz"))}),
             "not json",
             json.dumps({"id": "s", "status": True}),
             json.dumps({"shutdown": True})]
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "session", "--device", "cpu"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "session" and events[0]["state"] == "ready"
    assert {e["id"] for e in events if e["event"] == "progress"} == {"r1"}
    finals = sorted((str(e["id"]), e["event"]) for e in events if e["event"] in ("result", "error"))
    assert finals == [("None", "error"), ("bad", "error"), ("r1", "result")]
    bad = next(e for e in events if e["id"] == "bad")
    assert bad["kind"] == "bad_input" and "inputz" in bad["message"]
    assert any(e["event"] == "session" and e["id"] == "s" for e in events)
    assert (tmp_path / "a.nii.gz").exists()
