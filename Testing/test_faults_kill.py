"""Issues 11 and 22: a killed client takes its worker tree with it; nothing is written, nothing is left behind.

The client is the real ``hntumorseg segment`` (and ``batch --workers 2``) child process; the
worker its real child. The run uses the demo model with test-time augmentation (8 passes per
tile, several seconds per tile here), so it is certainly mid-inference when the signal comes.
After the signal: no process of the tree alive, no output, no temp file, no worker temp
folder, no done-marker.

Timing without depending on an idle machine: "gone" is a condition polled with a generous
limit (:data:`GONE_LIMIT_S`), and how long each process lived after the signal is taken from
the kernel (a pidfd becomes readable the moment the process exits, :class:`_ExitClock`), not
from a sleep. Those numbers are printed (``-s``), kept as test properties, and checked against
the contracts with a margin for a loaded machine: a worker whose client is SIGKILLed is gone
within 1 s (the kernel's parent-death signal, :mod:`HNTumorSegLib.childproc`); a client that is
asked to stop (SIGTERM, SIGHUP) cancels its workers within 2 s (docs/design.md).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from HNTumorSegLib.image import write_image
from HNTumorSegLib.outlock import LOCK_NAME
from HNTumorSegLib.phantoms import make_midrt_case, write_hntsmrg_cohort
from faults_testlib import ROOT, leftovers

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
#: how long a test waits for a condition before it fails (a loaded machine is slow, not wrong)
GONE_LIMIT_S = 60.0
#: the contracts: a SIGKILLed client's workers (parent death) and a stopped client's cancel
WORKER_AFTER_PARENT_DEATH_S = 1.0
CANCEL_S = 2.0


def _load_margin_s() -> float:
    """What a machine busier than its cores adds to an exit. The exits measured here are bounded
    by wall-clock waits (the worker's grace, the client's SIGKILL after 1 s) plus a few wake-ups
    of sleeping processes and little CPU, so the margin grows slowly with the load: 0.5 s, and a
    quarter second per run queue beyond the cores (load 8 on 2 cores: 1.25 s). An exit that
    costs CPU (an interpreter shut down with torch loaded) grows with the load far faster and
    does not fit: at load 10 the old worker lived 3.2 s after its client's SIGKILL."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return 0.5 + 0.25 * max(0.0, load / cores - 1.0)


def _midrt_inputs(folder: Path) -> tuple[Path, Path]:
    case = make_midrt_case(seed=0)
    return (write_image(case["midRT_T2"], folder / "t2.nii.gz"),
            write_image(case["preRT_mask_registered"], folder / "prior.nii.gz"))


class _Lines:
    """Collect a pipe's lines on a thread, so the test never blocks on a read."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._t.start()

    def _pump(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace"))

    def wait_for(self, predicate, proc, timeout: float = 120.0) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if predicate(self.lines):
                return
            assert proc.poll() is None, "".join(self.lines)[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"not seen in {timeout} s: {''.join(self.lines)[-3000:]}")


def _is_worker(p: psutil.Process) -> bool:
    """A worker child: one process per case (HNTumorSegLib.worker) or a warm session (HNTumorSegLib.session)."""
    cmd = " ".join(p.cmdline())
    return "HNTumorSegLib.worker" in cmd or "HNTumorSegLib.session" in cmd


def _tree(pid: int) -> list[psutil.Process]:
    me = psutil.Process(pid)
    return [me] + me.children(recursive=True)


class _ExitClock:
    """When each process of a tree exits, as the kernel tells it: a pidfd (Linux >= 5.3) turns
    readable at the exit, so a busy test process that looks late still reads the right order of
    events; where pidfds are missing, psutil is polled every 20 ms instead."""

    def __init__(self, procs: list[psutil.Process]):
        self.procs = procs
        self.fds: dict[int, int] = {}
        for p in procs:
            try:
                self.fds[p.pid] = os.pidfd_open(p.pid)
            except (AttributeError, OSError):
                pass

    def seconds_after(self, t0: float, client: subprocess.Popen, limit_s: float = GONE_LIMIT_S) -> dict[int, float]:
        """{pid: seconds from ``t0`` (time.monotonic) to its exit}; fails past ``limit_s``."""
        left = {p.pid for p in self.procs}
        exits: dict[int, float] = {}
        poller = select.poll()
        for fd in self.fds.values():
            poller.register(fd, select.POLLIN)
        t_end = t0 + limit_s
        while left and time.monotonic() < t_end:
            ready = {fd for fd, _ in poller.poll(20)}
            now = time.monotonic()
            for pid in list(left):
                fd = self.fds.get(pid)
                if (fd in ready) if fd is not None else _exited(pid):
                    exits[pid] = now - t0
                    left.discard(pid)
                    if fd is not None:
                        poller.unregister(fd)
            client.poll()   # reap our own child, else it stays a zombie
        for fd in self.fds.values():
            os.close(fd)
        alive = [(pid, _cmd(pid)) for pid in left]
        assert not alive, f"alive {limit_s} s after the signal: {alive} (client rc {client.poll()})"
        return exits


def _exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cmd(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:80]
    except psutil.Error:
        return "?"


def _check_exit_times(signame: str, workers: list[psutil.Process], exits: dict[int, float], record_property) -> None:
    """Report how long the workers lived after the signal and hold them to the contract (module docstring)."""
    worst = max(exits[w.pid] for w in workers)
    contract = WORKER_AFTER_PARENT_DEATH_S if signame == "SIGKILL" else CANCEL_S
    margin = _load_margin_s()
    print(f"\n{signame}: workers gone {worst * 1000:.0f} ms after the signal "
          f"(contract {contract:g} s + margin {margin:.1f} s at load {os.getloadavg()[0]:.1f})")
    record_property("workers_gone_s", round(worst, 3))
    assert worst < contract + margin, f"the workers lived {worst:.2f} s after {signame}"


def _env(tmp_root: Path) -> dict:
    return dict(os.environ, TMPDIR=str(tmp_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.parametrize("signame", list(SIGNALS))
def test_killed_segment_client_ends_its_worker_and_leaves_nothing(tmp_path, signame, record_property):
    t2, prior = _midrt_inputs(tmp_path)
    out_dir, tmp_root = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp_root.mkdir()
    out = out_dir / "labels.nii.gz"
    client = subprocess.Popen(
        [sys.executable, "-m", "HNTumorSegLib", "segment", "--model", "demo-midrt", "--input", f"T2={t2}",
         "--prior", str(prior), "--output", str(out), "--save-boxes", str(out_dir / "boxes.json"),
         "--tta", "--device", "cpu", "--progress", "json"],
        cwd=ROOT, env=_env(tmp_root), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    events = _Lines(client.stdout)
    events.wait_for(lambda lines: any("tile 1/" in line for line in lines), client)   # mid-inference
    procs = _tree(client.pid)
    workers = [p for p in procs if _is_worker(p)]
    assert workers, "no worker child"
    clock = _ExitClock(procs)
    t0 = time.monotonic()
    client.send_signal(SIGNALS[signame])
    _check_exit_times(signame, workers, clock.seconds_after(t0, client), record_property)
    client.wait(timeout=GONE_LIMIT_S)
    if signame != "SIGKILL":
        assert client.returncode == 128 + SIGNALS[signame]
    assert list(out_dir.iterdir()) == []            # no output, no hidden temp file
    assert leftovers(out_dir, tmp_root) == []       # no worker temp folder either (removed before the exit)
    assert not any('"event": "result"' in line for line in events.lines)


@pytest.mark.parametrize("signame", list(SIGNALS))
def test_killed_batch_ends_both_workers_and_writes_no_case(tmp_path, signame, record_property):
    data, out, tmp_root = tmp_path / "cohort", tmp_path / "out", tmp_path / "tmp"
    tmp_root.mkdir()
    write_hntsmrg_cohort(data, n=2, seed=5, shape=(16, 64, 64))
    client = subprocess.Popen(
        [sys.executable, "-m", "HNTumorSegLib", "batch", "--layout", "hntsmrg", "--data", str(data), "--model",
         "demo-midrt", "--task", "midrt", "--out", str(out), "--workers", "2", "--device", "cpu", "--tta"],
        cwd=ROOT, env=_env(tmp_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = _Lines(client.stderr)
    # both cases inside inference (the batch log names each stage change)
    log.wait_for(lambda lines: sum("inference" in line for line in lines) >= 2, client)
    procs = _tree(client.pid)
    workers = [p for p in procs if _is_worker(p)]
    assert len(workers) == 2, [" ".join(p.cmdline())[:80] for p in procs]
    clock = _ExitClock(procs)
    t0 = time.monotonic()
    client.send_signal(SIGNALS[signame])
    _check_exit_times(signame, workers, clock.seconds_after(t0, client), record_property)
    client.wait(timeout=GONE_LIMIT_S)
    assert sorted(out.glob("*_pred.nii.gz")) == []
    assert not (out / ".hntumorseg-done").exists() or list((out / ".hntumorseg-done").iterdir()) == []
    lock = out / LOCK_NAME   # a SIGKILLed batch cannot remove its output lock; the next run finds it stale
    if signame == "SIGKILL" and lock.exists():
        assert json.loads(lock.read_text())["pid"] == client.pid
        lock.unlink()
    assert leftovers(out, tmp_root) == []


# A client that starts its worker from a thread which ends once the worker runs (as a GUI may):
# the kernel's parent-death signal fires at that thread's end, and the worker must run on.
THREAD_CLIENT = """
import json, sys, threading, time
from HNTumorSegLib.pipeline.request import SegmentRequest
from HNTumorSegLib.protocol import ProgressEvent
from HNTumorSegLib.runner import WorkerRun
box = {}

def launch():
    run = box["run"] = WorkerRun().start(SegmentRequest.from_dict(json.loads(sys.argv[1])))
    while not any(isinstance(e, ProgressEvent) for e in run.poll()):   # the worker is up (and armed)
        time.sleep(0.02)

t = threading.Thread(target=launch)
t.start()
t.join()
run = box["run"]
while run.running and not any("tile 1/" in getattr(e, "message", "") for e in run.events):
    run.poll()
    time.sleep(0.02)
print(json.dumps({"worker": run.proc.pid, "state": run.state}), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_worker_started_from_an_ended_thread_runs_on_and_still_stops_with_its_client(tmp_path, record_property):
    t2, prior = _midrt_inputs(tmp_path)
    out_dir, tmp_root = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp_root.mkdir()
    request = {"task": "midrt", "model": "demo-midrt", "input_paths": {"T2": str(t2)}, "prior_path": str(prior),
               "output_path": str(out_dir / "labels.nii.gz"), "device": "cpu", "tta": True}
    client = subprocess.Popen([sys.executable, "-c", THREAD_CLIENT, json.dumps(request)], cwd=ROOT,
                              env=dict(_env(tmp_root), PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        seen = json.loads(client.stdout.readline() or "{}")
        # the worker got past the thread's end into inference: the signal of that end was not its end
        assert seen.get("state") == "running", seen
        worker = psutil.Process(seen["worker"])
        clock = _ExitClock([worker])
        t0 = time.monotonic()
        client.send_signal(signal.SIGKILL)
        _check_exit_times("SIGKILL", [worker], clock.seconds_after(t0, client), record_property)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(timeout=GONE_LIMIT_S)
    assert list(out_dir.iterdir()) == [] and leftovers(out_dir, tmp_root) == []


# A client of ours (Slicer, a GUI) that starts an ``hntumorseg`` command as its child, the way the
# outcome panel (outcome/child_run.py) and the model buttons (scene/model_install.py) do, through
# childproc (which names the client in HNTUMORSEG_PARENT_PID), and relays the command's events.
COMMAND_CLIENT = """
import sys
from HNTumorSegLib.childproc import start
child = start([sys.executable, "-m", "HNTumorSegLib"] + sys.argv[1:], name="command")
print(child.pid, flush=True)
while not child.eof:
    for line in child.read(timeout=1.0):
        print(line, flush=True)
"""


def test_a_command_started_by_our_client_stops_with_that_client(tmp_path, record_property):
    """Issue 21: an ``hntumorseg`` command started by one of our processes watches its client as
    a worker does. Before, the command lived on after its client's SIGKILL (in its own session,
    nothing stopped it) and its worker with it, writing files nobody would read."""
    t2, prior = _midrt_inputs(tmp_path)
    out_dir, tmp_root = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp_root.mkdir()
    argv = ["segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", str(prior),
            "--output", str(out_dir / "labels.nii.gz"), "--tta", "--device", "cpu", "--progress", "json"]
    client = subprocess.Popen([sys.executable, "-c", COMMAND_CLIENT, *argv], cwd=ROOT,
                              env=dict(_env(tmp_root), PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        events = _Lines(client.stdout)
        events.wait_for(lambda lines: any("tile 1/" in line for line in lines), client)   # mid-inference
        command = psutil.Process(int(events.lines[0]))
        procs = _tree(command.pid)
        assert any(_is_worker(p) for p in procs), [" ".join(p.cmdline())[:80] for p in procs]
        clock = _ExitClock(procs)
        t0 = time.monotonic()
        client.send_signal(signal.SIGKILL)
        _check_exit_times("SIGKILL", procs, clock.seconds_after(t0, client), record_property)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(timeout=GONE_LIMIT_S)
    assert list(out_dir.iterdir()) == [] and leftovers(out_dir, tmp_root) == []
