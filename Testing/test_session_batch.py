"""Batch with sessions: one warm session per worker serves all its cases (one model load), with
real session child processes; a crashed session fails its case only and the next case gets a new one."""

from __future__ import annotations

import os
import signal
import time

from HNTumorSegLib.batch.local import Job, run_local
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.protocol import ProgressEvent
from test_session_server import write_case


def _jobs(tmp_path, n: int) -> list[Job]:
    fields = write_case(tmp_path / "case")
    jobs = []
    for i in range(n):
        out = tmp_path / "out" / f"case_{i}.nii.gz"
        jobs.append(Job(f"case_{i}", SegmentRequest.from_dict(dict(fields, output_path=str(out))), str(out), f"fp{i}"))
    return jobs


def test_one_session_per_worker_serves_every_case(tmp_path):
    outcomes = run_local(_jobs(tmp_path, 3), tmp_path / "out", workers=1, on_event=lambda *a: None)
    assert all(o.ok for o in outcomes.values()), {k: o.final for k, o in outcomes.items()}
    infos = [outcomes[f"case_{i}"].final.info["session"] for i in range(3)]
    assert len({i["pid"] for i in infos}) == 1 and [i["model_loads"] for i in infos] == [1, 1, 1]
    assert [i["requests"] for i in infos] == [1, 2, 3]
    assert all((tmp_path / "out" / f"case_{i}.nii.gz").exists() for i in range(3))
    assert not list(tmp_path.glob("**/hntumorseg-session-*"))


def test_a_crashed_session_fails_its_case_only(tmp_path):
    killed = []

    def kill_first(case_id, ev):
        if case_id == "case_0" and isinstance(ev, ProgressEvent) and not killed:
            import psutil

            me = psutil.Process()
            sessions = [p for p in me.children() if "HNTumorSegLib.session" in " ".join(p.cmdline())]
            os.kill(sessions[0].pid, signal.SIGKILL)
            killed.append(sessions[0].pid)
            time.sleep(0.2)

    outcomes = run_local(_jobs(tmp_path, 2), tmp_path / "out", workers=1, on_event=kill_first)
    assert killed and outcomes["case_0"].final.kind == "crashed"
    assert outcomes["case_1"].ok and outcomes["case_1"].final.info["session"]["pid"] != killed[0]
