"""Issue 22 (item 11): a session stopped by SIGTERM still ends its running request with one final event.

The real ``hntumorseg session`` runs the demo model with test-time augmentation (8 passes per
tile, about a second or more per tile here), so the signal lands between two cancellation points; the
client must still read a final ``error`` event (kind ``cancelled``) for that request's id, the
queued request gets one too, and the session exits 143 with no output written and its temp
folder gone. Nothing waits a fixed time: each step waits for a line, with a generous limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_session_server import write_case

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 300.0


class _Events(list):
    """Every stdout line of the session as JSON, read on a thread (the test never blocks on a read)."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__()
        self._thread = threading.Thread(target=lambda: self.extend(json.loads(line) for line in proc.stdout),
                                        daemon=True)
        self._thread.start()

    def wait_for(self, predicate) -> None:
        t_end = time.monotonic() + LIMIT_S
        while time.monotonic() < t_end:
            if predicate(self):
                return
            if not self._thread.is_alive():   # end of output: it will not come any more
                break
            time.sleep(0.02)
        assert predicate(self), self[-5:]


def test_sigterm_sends_the_running_requests_final_event(tmp_path):
    fields = write_case(tmp_path / "case", shape=(24, 96, 96), seed=4)
    temp = tmp_path / "session-temp"
    proc = subprocess.Popen([sys.executable, "-m", "HNTumorSegLib", "session", "--device", "cpu",
                             "--temp-dir", str(temp)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    try:
        seen = _Events(proc)
        for job_id in ("r1", "r2"):
            request = dict(fields, output_path=str(tmp_path / f"{job_id}.nii.gz"), tta=True)
            proc.stdin.write(json.dumps({"id": job_id, "request": request}) + "\n")
        proc.stdin.flush()
        seen.wait_for(lambda s: any(e.get("id") == "r1" and e.get("stage") == "inference" for e in s))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=LIMIT_S) == 128 + signal.SIGTERM
        seen.wait_for(lambda s: sum(e["event"] in ("result", "error") for e in s) >= 2)
    finally:
        if proc.poll() is None:
            proc.kill()
    finals = {e["id"]: e for e in seen if e["event"] in ("result", "error")}
    assert set(finals) == {"r1", "r2"}, seen[-5:]
    assert finals["r1"]["event"] == "error" and finals["r1"]["kind"] == "cancelled"
    assert finals["r2"]["event"] == "error" and finals["r2"]["kind"] == "cancelled"
    assert not (tmp_path / "r1.nii.gz").exists() and not (tmp_path / "r2.nii.gz").exists()
    assert not temp.exists()
