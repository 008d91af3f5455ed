"""Issue 22 item 1: an output folder belongs to one run at a time, and ``batch --out`` to one cohort.

Before: two ``batch`` runs into one ``--out`` both exited 0, the second overwriting the first's
predictions, ``metrics.json`` and ``batch.json``. Now (:mod:`HNTumorSegLib.outlock`):

* a second run into a held folder exits 2 at once with one line naming the holder (pid, host,
  since when) and what to do, writing nothing;
* a lock left by a SIGKILLed run (dead pid, same host) is taken over with a notice;
* the lock is gone after every ending: success, error, SIGTERM;
* ``--out`` holding another cohort's finished run is refused (exit 2); the same cohort resumes.

Real ``hntumorseg batch`` child processes on a real one-case cohort; the first run is held
still with SIGSTOP (with its worker) while the second tries, so nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.outlock import LOCK_NAME, OutputLock
from HNTumorSegLib.phantoms import write_hntsmrg_cohort
from faults_testlib import ROOT, frozen, hashes, hntumorseg, one_error_line


def _args(data: Path, out: Path) -> list[str]:
    return ["batch", "--layout", "hntsmrg", "--data", str(data), "--model", "demo-midrt", "--task", "midrt",
            "--out", str(out), "--device", "cpu", "--no-report"]


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "HNTumorSegLib", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path)))


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):   # not there yet, or created and not yet written
        return None


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until the lock names its holder: the file exists a moment before its record is written, and a
    SIGSTOP in that moment would freeze a lock that honestly says 'a run that is starting'."""
    deadline = time.monotonic() + timeout
    while not _holder(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohorts")
    write_hntsmrg_cohort(root / "a", n=1, seed=4, shape=(16, 64, 64))
    write_hntsmrg_cohort(root / "b", n=1, seed=9, shape=(16, 64, 64))
    return root / "a", root / "b"


def test_second_batch_into_a_held_out_is_refused_and_the_first_finishes(cohorts, tmp_path):
    data_a, data_b = cohorts
    out = tmp_path / "out"
    first = _start(_args(data_a, out), tmp_path)
    try:
        _wait_for(out / LOCK_NAME, first)
        with frozen(first.pid):                  # the first run (and its worker) holds --out, frozen
            before = hashes(out)
            second = hntumorseg(*_args(data_b, out), env={"TMPDIR": str(tmp_path)})
            after = hashes(out)
        assert second.returncode == 2, second.stderr[-3000:]
        line = one_error_line(second.stderr)
        assert "in use by batch" in line and f"pid {first.pid}" in line and socket.gethostname() in line, line
        assert "since" in line and "another output folder" in line, line
        assert after == before                  # the second wrote nothing
        _stdout, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    assert not (out / LOCK_NAME).exists()
    record = json.loads((out / "batch.json").read_text())
    assert record["data"] == str(data_a) and record["cases"]["1"]["status"] == "ok"


def test_other_cohort_refused_same_cohort_resumes_lock_gone_after_errors(cohorts, tmp_path):
    data_a, data_b = cohorts
    out = tmp_path / "out"
    assert hntumorseg(*_args(data_a, out), env={"TMPDIR": str(tmp_path)}).returncode == 0
    before = hashes(out)
    other = hntumorseg(*_args(data_b, out), env={"TMPDIR": str(tmp_path)})
    assert other.returncode == 2, other.stderr[-3000:]
    line = one_error_line(other.stderr)
    assert "another cohort" in line and str(data_a) in line and "batch.json" in line, line
    assert hashes(out) == before and not (out / LOCK_NAME).exists()   # lock gone after the refusal too
    again = hntumorseg(*_args(data_a, out), env={"TMPDIR": str(tmp_path)})
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "batch.json").read_text())["cases"]["1"]["status"] == "skipped"
    # a batch.json of an older version (no data folder recorded): compared by its case names
    legacy = json.loads((out / "batch.json").read_text())
    del legacy["data"]
    legacy["cases"] = {"other-case": legacy["cases"]["1"]}
    (out / "batch.json").write_text(json.dumps(legacy))
    assert hntumorseg(*_args(data_a, out), env={"TMPDIR": str(tmp_path)}).returncode == 2


def test_stale_lock_of_a_killed_run_is_taken_over_and_sigterm_removes_the_lock(cohorts, tmp_path):
    data_a, _ = cohorts
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap_holder(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()                                   # SIGKILL: the lock stays behind, its pid dead
    holder.wait()
    assert (out / LOCK_NAME).exists()
    run = _start(_args(data_a, out), tmp_path)
    try:
        deadline = time.monotonic() + 240
        while _holder_pid(out) != run.pid:           # the lock is the new run's now
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)              # mid-run: the lock must still go
        _stdout, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert "took over the lock of a run that is gone" in err and f"pid {holder.pid}" in err, err[-3000:]
    assert run.returncode == 143, err[-3000:]
    assert not (out / LOCK_NAME).exists()


def _holder_pid(out: Path) -> int | None:
    try:
        return json.loads((out / LOCK_NAME).read_text()).get("pid")
    except (OSError, ValueError):
        return None


def textwrap_holder(out: Path) -> str:
    """A real process that takes the lock, says so, and waits to be killed."""
    return (f"import time; from HNTumorSegLib.outlock import OutputLock; "
            f"OutputLock({str(out)!r}, '--out', 'batch').acquire(); print('held', flush=True); time.sleep(600)")


def test_lock_in_process_other_host_and_release_only_own(tmp_path):
    """The library form: a held lock refuses, release removes only our own, another host's lock is never stale."""
    lock = OutputLock(tmp_path, "--out", "test").acquire()
    with pytest.raises(InputError, match="in use by test"):
        OutputLock(tmp_path, "--out", "other").acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "another-machine", "started": "yesterday"}))
    with pytest.raises(InputError) as info:
        OutputLock(tmp_path, "--out").acquire()
    assert "another-machine" in str(info.value) and f"delete {tmp_path / LOCK_NAME}" in str(info.value)
