"""The worker client's process handling, with real child processes (no pipeline needed).

A small child script stands in for the worker's *process shape* (events on stdout, a
grandchild, a hang) so that the process-tree kill, crash reporting, timeout and pipe handling
are tested exactly; the real worker end-to-end lives in test_worker_pipeline.py.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from HNTumorSegLib.protocol import ErrorEvent, ProgressEvent, ResultEvent
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.runner import WorkerRun, request_to_dict

# The fake workers below never read it; WorkerRun.start takes only a SegmentRequest.
REQUEST = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, output_path="labels.nii.gz")

# Child: prints two progress events, starts a grandchild that sleeps, says so, then hangs.
TREE_SCRIPT = textwrap.dedent("""
    import json, subprocess, sys, time
    for f in (0.1, 0.2):
        print(json.dumps({"event": "progress", "stage": "inference", "fraction": f, "message": "tile"}), flush=True)
    g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(json.dumps({"event": "progress", "stage": "inference", "fraction": 0.3, "message": str(g.pid)}), flush=True)
    print("loading weights for fold 0", file=sys.stderr, flush=True)
    time.sleep(600)
""")

QUICK_SCRIPT = textwrap.dedent("""
    import json, sys
    print("a library printed this", flush=True)
    print(json.dumps({"event": "progress", "stage": "load", "fraction": 0.05}), flush=True)
    print(json.dumps({"event": "result", "files": {"labels": "x.nii.gz"}, "timings": {"total": 0.1}}), flush=True)
""")


def _script_run(tmp_path: Path, script: str, **kw) -> WorkerRun:
    path = tmp_path / "child.py"
    path.write_text(script)
    return WorkerRun(argv=[sys.executable, str(path), "{request}"], temp_parent=tmp_path, **kw)


def _wait_for(run: WorkerRun, pred, timeout: float = 120.0) -> list:
    """Poll until ``pred(events)``; the limit is generous (a loaded machine), a met condition returns at once."""
    seen = []
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        seen += run.poll()
        if pred(seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"condition not met in {timeout} s; events {seen}, stderr {list(run.stderr_tail)}")


def _alive(procs: list) -> list:
    """Processes still running; a zombie is dead (its parent - init in a container - has not reaped it yet)."""
    _gone, alive = psutil.wait_procs(procs, timeout=10.0)  # returns as soon as all are gone
    out = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _temp_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob("hntumorseg-run-*"))


def test_cancel_ends_whole_tree_promptly_and_removes_temp(tmp_path):
    run = _script_run(tmp_path, TREE_SCRIPT)
    (run.temp_dir / "t2.nii.gz").write_bytes(b"input copied by the caller")
    run.start(REQUEST)
    seen = _wait_for(run, lambda ev: any(e.fraction >= 0.3 for e in ev if isinstance(e, ProgressEvent)))
    grandchild = int(seen[-1].message)
    tree = [psutil.Process(run.proc.pid)] + psutil.Process(run.proc.pid).children(recursive=True)
    assert grandchild in [p.pid for p in tree]
    t0 = time.monotonic()
    run.cancel()
    # bounded by grace_s + ~0.5 s; 30 s leaves room for a loaded machine and is far below the
    # 600 s the child would run if cancel waited for it
    assert time.monotonic() - t0 < 30.0
    assert run.state == "cancelled" and isinstance(run.final, ErrorEvent) and run.final.kind == "cancelled"
    assert run.returncode == -signal.SIGTERM  # SIGTERM sufficed: the exit status was kept, not reaped elsewhere
    assert _alive(tree) == [], "processes left behind"
    assert not run.temp_dir.exists() and _temp_dirs(tmp_path) == []


def test_sigkill_is_reported_as_crash_with_last_stderr(tmp_path):
    run = _script_run(tmp_path, TREE_SCRIPT)
    run.start(REQUEST)
    seen = _wait_for(run, lambda ev: any(e.fraction >= 0.3 for e in ev if isinstance(e, ProgressEvent)))
    grandchild = psutil.Process(int(seen[-1].message))
    _wait_for(run, lambda ev: run.stderr_tail)
    os.kill(run.proc.pid, signal.SIGKILL)
    final = run.wait(timeout=120)
    assert run.state == "crashed"
    assert isinstance(final, ErrorEvent) and final.kind == "crashed"
    assert "SIGKILL" in final.message and "loading weights for fold 0" in final.message
    assert final is run.events[-1]
    assert not run.temp_dir.exists()
    # The grandchild shared the group: ending the run ends it too (no orphan left behind).
    assert _alive([grandchild]) == []


def test_poll_never_blocks(tmp_path):
    run = _script_run(tmp_path, TREE_SCRIPT)
    run.start(REQUEST)
    try:
        worst = 0.0
        for _ in range(50):
            t0 = time.perf_counter()
            run.poll()
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        assert worst < 10.0  # a blocking read would wait for the child (600 s); 10 s allows for a loaded machine
        assert run.running
    finally:
        run.close()
    assert not run.temp_dir.exists()


def test_timeout_kills_and_reports(tmp_path):
    run = _script_run(tmp_path, TREE_SCRIPT, timeout_s=1.0)
    run.start(REQUEST)
    final = run.wait(timeout=120)
    assert run.state == "timeout" and final.kind == "timeout" and "longer than 1 s" in final.message
    assert not run.temp_dir.exists()


def test_stray_stdout_is_kept_apart_and_result_ends_run(tmp_path):
    run = _script_run(tmp_path, QUICK_SCRIPT)
    run.start(REQUEST)
    final = run.wait(timeout=120)
    assert run.state == "succeeded" and isinstance(final, ResultEvent)
    assert final.files == {"labels": "x.nii.gz"}
    assert list(run.stray_stdout) == ["a library printed this"]
    assert [type(e) for e in run.events] == [ProgressEvent, ResultEvent]
    assert not run.temp_dir.exists()


def test_missing_python_is_reported_not_raised(tmp_path):
    run = WorkerRun(python=str(tmp_path / "no-such-python"), temp_parent=tmp_path)
    run.start(REQUEST)
    assert run.state == "crashed" and "could not start the worker" in run.final.message
    assert _temp_dirs(tmp_path) == []


def test_close_before_start_removes_temp(tmp_path):
    run = WorkerRun(temp_parent=tmp_path)
    assert run.temp_dir.exists()
    run.close()
    assert _temp_dirs(tmp_path) == []


def test_real_worker_bad_request_is_bad_input(tmp_path):
    # The real worker module, given a request file that does not exist: exit 2, one error event.
    run = WorkerRun(argv=[sys.executable, "-m", "HNTumorSegLib.worker", str(tmp_path / "missing.json")],
                    temp_parent=tmp_path)
    run.start(REQUEST)
    final = run.wait(timeout=300)
    assert run.state == "failed" and run.returncode == 2
    assert final.kind == "bad_input" and "request file not found" in final.message
    assert "Traceback" not in final.message


def test_request_to_dict_accepts_paths():
    req = SegmentRequest(model="m", input_paths={"T2": Path("/a/b.nii.gz")}, output_path=Path("/o.nii.gz"))
    assert request_to_dict(req)["input_paths"] == {"T2": "/a/b.nii.gz"}
    with pytest.raises(TypeError):
        request_to_dict(42)


def test_a_request_must_be_a_segment_request():
    # a plain dict (e.g. with an old field name) is refused in the caller, before any process starts
    with pytest.raises(TypeError, match="SegmentRequest"):
        request_to_dict({"inputs": {"T2": "a.nii.gz"}, "output": "o.nii.gz"})
    with pytest.raises(TypeError):
        SegmentRequest(model="m", inputs={"T2": "a"}, output_path="o")  # type: ignore[call-arg]
