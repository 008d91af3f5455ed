"""Issue 11: a killed client takes its worker tree with it; nothing is written, nothing is left behind.

The client is the real ``hntumorseg segment`` (and ``batch --workers 2``) child process; the
worker its real child. The run uses the demo model with test-time augmentation (8 passes per
tile, several seconds per tile here), so it is certainly mid-inference when the signal comes.
After the signal: no process of the tree alive within 3 s (psutil), no output, no temp file,
no worker temp folder, no done-marker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms import make_midrt_case, write_hntsmrg_cohort
from faults_testlib import ROOT, leftovers

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


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


def _assert_tree_gone(procs: list[psutil.Process], client: subprocess.Popen, within_s: float = 3.0) -> None:
    t_end = time.monotonic() + within_s
    client_rc = None
    while time.monotonic() < t_end:
        client_rc = client.poll()  # reap our own child, else it stays a zombie
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        time.sleep(0.05)
    alive = [(p.pid, " ".join(p.cmdline())[:80]) for p in procs if p.is_running()
             and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"alive {within_s} s after the signal: {alive} (client rc {client_rc})"


def _env(tmp_root: Path) -> dict:
    return dict(os.environ, TMPDIR=str(tmp_root), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.parametrize("signame", list(SIGNALS))
def test_killed_segment_client_ends_its_worker_and_leaves_nothing(tmp_path, signame):
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
    assert any(_is_worker(p) for p in procs), "no worker child"
    client.send_signal(SIGNALS[signame])
    _assert_tree_gone(procs, client)
    client.wait(timeout=5)
    if signame != "SIGKILL":
        assert client.returncode == 128 + SIGNALS[signame]
    assert list(out_dir.iterdir()) == []            # no output, no hidden temp file
    time.sleep(0.3)
    assert leftovers(out_dir, tmp_root) == []       # no worker temp folder either
    assert not any('"event": "result"' in line for line in events.lines)


@pytest.mark.parametrize("signame", list(SIGNALS))
def test_killed_batch_ends_both_workers_and_writes_no_case(tmp_path, signame):
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
    time.sleep(1.0)
    procs = _tree(client.pid)
    workers = [p for p in procs if _is_worker(p)]
    assert len(workers) == 2, [" ".join(p.cmdline())[:80] for p in procs]
    client.send_signal(SIGNALS[signame])
    _assert_tree_gone(procs, client)
    client.wait(timeout=5)
    time.sleep(0.3)
    assert sorted(out.glob("*_pred.nii.gz")) == []
    assert not (out / ".hntumorseg-done").exists() or list((out / ".hntumorseg-done").iterdir()) == []
    assert leftovers(out, tmp_root) == []
