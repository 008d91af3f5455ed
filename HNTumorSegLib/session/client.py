"""Client of the warm session for Python callers (Slicer, batch, benchmarks).

:class:`SessionClient` starts ``python -m HNTumorSegLib.session`` as a child
(:func:`HNTumorSegLib.childproc.start`: its own process group, like
:class:`HNTumorSegLib.runner.WorkerRun`; it stops within 1 s if we die), reads its tagged
events in a daemon thread and hands each to its :class:`SessionJob`. A job behaves like a ``WorkerRun`` (``start``,
``poll`` never blocking, ``running``, ``done``, ``state``, ``final``, ``progress``, ``cancel``,
``close``, ``temp_dir``), so code written for one runs the other: the Slicer logic's Apply,
batch's scheduler.

Endings: every job ends with one final event: the session's ``result`` / ``error``, or one
the client makes: ``cancelled`` (the session's ``cancelled`` did not come within
``cancel_wait_s``: the session is stopped, the next job starts a fresh one), ``timeout``,
``crashed`` (the session died: its last stderr lines are in the message). The client's temp
folder (``hntumorseg-session-*``: each job's inputs, the session's own temp files) is removed
by :meth:`SessionClient.close`, by the session itself when it ends, and as a last resort when
the client is garbage collected.

Example:
    >>> from HNTumorSegLib import image, phantoms
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> from HNTumorSegLib.prompts import boxes as lesion_boxes
    >>> case = phantoms.make_midrt_case(seed=0)          # a phantom patient; the user then moves GTVn-2:
    >>> for name, path in (("midRT_T2", "t2.nii.gz"), ("preRT_mask_registered", "prior.nii.gz")):
    ...     _ = image.write_image(case[name], path)
    >>> moved = lesion_boxes.boxes_from_mask(case["preRT_mask_registered"], margin_vox=4)
    >>> _ = lesion_boxes.write_boxes(moved, "boxes.json")
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, prior_path="prior.nii.gz",
    ...                          output_path="v1.nii.gz")
    >>> request2 = SegmentRequest(model="demo-midrt", input_paths={"T2": "t2.nii.gz"}, boxes_path="boxes.json",
    ...                           output_path="v2.nii.gz")
    >>> with SessionClient(device="cpu") as session:
    ...     final = session.run(request)                                 # cold: loads the model
    ...     final = session.run(request2, refine={"base_labels_path": final.files["labels"],
    ...                                                "boxes": ["GTVn-2"]})
    ...     final.info["session"]["model_loads"]
    1
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..childproc import PIPE, Child, default_python, start
from ..errors import Cancelled, WorkerCrashed, WorkerTimedOut
from ..fileio import remove_temp_folder, temp_folder
from ..protocol import ErrorEvent, Event, ProtocolError, ResultEvent, RunHandle, drain_events
from ..runner import request_to_dict
from .messages import command_line, split_tagged

_CRASHED = object()   # queued to a job when the session died under it


def _last_resort(temp_dir: str, child_holder: list) -> None:
    child = child_holder[0] if child_holder else None
    if child is not None and child.alive:
        try:
            child.kill_tree(grace_s=0.5)
        except Exception:  # interpreter shutting down: best effort
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


class SessionJob(RunHandle):
    """One request in a session, shaped like :class:`~HNTumorSegLib.runner.WorkerRun` (module docstring)."""

    poll_interval_s = 0.02   # a warm session answers within milliseconds: poll it more often
    background_cleanup = False   # as WorkerRun's: the Slicer scene sets it for its GUI thread

    def __init__(self, client: "SessionClient", job_id: str, timeout_s: float | None = None):
        self.client = client
        self.id = job_id
        self.timeout_s = timeout_s
        self.temp_dir = client.temp_dir / f"job-{job_id}"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.events: list[Event] = []
        self.final: ResultEvent | ErrorEvent | None = None
        self.state = "created"
        self._q: queue.Queue = queue.Queue()
        self._t_start = 0.0

    def start(self, request: Any, refine: Any = None) -> "SessionJob":
        """Send the request (a :class:`~HNTumorSegLib.pipeline.request.SegmentRequest`; ``refine``:
        a :class:`~HNTumorSegLib.pipeline.refine.RefineSpec` or its dict)."""
        if self.state != "created":
            raise RuntimeError(f"this job was already started (state {self.state})")
        data = request_to_dict(request)
        if refine is not None:
            data["refine"] = refine.to_dict() if hasattr(refine, "to_dict") else dict(refine)
        self.state = "running"
        self._t_start = time.monotonic()
        self.client._register(self)
        if not self.client._send(command_line(id=self.id, request=data)):
            self._q.put(_CRASHED)
        return self

    def poll(self) -> list[Event]:
        """New events since the last call; never blocks."""
        out: list[Event] = []
        if self.state != "running":
            return out
        new, last = drain_events(self._q, _CRASHED)
        out.extend(new)
        if last is _CRASHED:
            self._end("crashed", ErrorEvent(WorkerCrashed.kind, self.client.crash_message()), out)
        elif last is not None:
            state = ("succeeded" if isinstance(last, ResultEvent) else
                     "cancelled" if last.kind == Cancelled.kind else "failed")
            out.append(last)
            self._end(state, last, out, append=False)
        if self.running and self.timeout_s is not None and time.monotonic() - self._t_start > self.timeout_s:
            self._stop("timeout", out)
        self.events.extend(out)
        return out

    def cancel(self) -> None:
        """Cancel: the session answers ``cancelled`` within its deadline; past ``cancel_wait_s`` the
        session is stopped (the next job gets a fresh one). Ends within about 2 s."""
        if self.state == "created":
            self._end("cancelled", ErrorEvent(Cancelled.kind, "request cancelled"), [])
            return
        if self.state != "running":
            return
        out: list[Event] = []
        self._stop("cancelled", out)
        self.events.extend(out)

    def _stop(self, why: str, out: list[Event]) -> None:
        self.client._send(command_line(id=f"cancel-{self.id}", cancel=self.id), start=False)
        t_end = time.monotonic() + self.client.cancel_wait_s
        while time.monotonic() < t_end:
            try:
                item = self._q.get(timeout=0.02)
            except queue.Empty:
                continue
            if item is _CRASHED:
                break
            if isinstance(item, ResultEvent):   # it finished before the cancel arrived
                out.append(item)
                self._end("succeeded", item, out, append=False)
                return
            if isinstance(item, ErrorEvent):
                final = item if item.kind != Cancelled.kind or why == "cancelled" else None
                if final is not None:
                    out.append(final)
                    self._end("cancelled" if final.kind == Cancelled.kind else "failed", final, out, append=False)
                    return
                break
            out.append(item)
        if why == "cancelled":
            final = ErrorEvent(Cancelled.kind, "request cancelled")
        else:
            final = ErrorEvent(WorkerTimedOut.kind, f"the request took longer than {self.timeout_s:g} s and was "
                                                    "stopped - try a GPU, fewer folds or no test-time augmentation")
        if self.client.waiting_for(self.id):   # the session did not answer: stop it, a fresh one serves the next
            self.client.stop_process()
        self._end(why, final, out)

    def _end(self, state: str, final: ResultEvent | ErrorEvent, out: list[Event], append: bool = True) -> None:
        self.state = state
        self.final = final
        if append:
            out.append(final)
        self.client._unregister(self)
        self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        remove_temp_folder(self.temp_dir, background=self.background_cleanup)


class SessionClient:
    """A warm session child process and its temp folder (module docstring).

    ``python``: interpreter (default :func:`~HNTumorSegLib.runner.default_python`); ``device``:
    the session's ``--device``; ``env``: extra environment (``OMP_NUM_THREADS`` for batch);
    ``argv``: replace the whole command (``{temp}`` is replaced by the temp folder).
    The process starts on the first job (or :meth:`start`), and again after it died.
    """

    def __init__(self, python: str | None = None, device: str | None = None, env: Mapping[str, str] | None = None,
                 temp_parent: str | None = None, argv: Sequence[str] | None = None, grace_s: float = 1.0,
                 cancel_wait_s: float = 1.8, stderr_lines: int = 40):
        self.python = python or default_python()
        self.device = device
        self.extra_env = dict(env or {})
        self.argv = list(argv) if argv else None
        self.grace_s = grace_s
        self.cancel_wait_s = cancel_wait_s
        self.temp_dir = temp_folder("hntumorseg-session-", dir=temp_parent)
        self.child: Child | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.info: dict = {}                 # the last ``session`` event
        self.starts = 0                      # processes started (a restart after a crash counts)
        self._jobs: dict[str, SessionJob] = {}
        self._status: dict[str, "queue.Queue[dict]"] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._child_holder: list = []
        self._finalizer = weakref.finalize(self, _last_resort, str(self.temp_dir), self._child_holder)

    # ---- process --------------------------------------------------------------------------
    @property
    def proc(self):
        """The session's ``subprocess.Popen`` (None when no session runs)."""
        return self.child.proc if self.child is not None else None

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def start(self) -> "SessionClient":
        """Start the session process (no-op while one is alive)."""
        if self.alive:
            return self
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        if self.argv:
            argv = [a.replace("{temp}", str(self.temp_dir)) for a in self.argv]
        else:
            argv = [self.python, "-m", "HNTumorSegLib.session", "--temp-dir", str(self.temp_dir)]
            if self.device:
                argv += ["--device", str(self.device)]
        self.child = child = start(argv, env=self.extra_env, stdin=PIPE, name="session", stderr_tail=self.stderr_tail)
        self._child_holder[:] = [child]
        self.starts += 1
        threading.Thread(target=self._dispatch, args=(child,), daemon=True,
                         name=f"hntumorseg-session-dispatch-{child.pid}").start()
        return self

    def _dispatch(self, child: Child) -> None:
        """Hand every stdout line to its job (reader thread); on the session's end, crash its jobs."""
        while not child.eof:
            for line in child.read(timeout=None):
                self._route(line)
        child.wait(timeout=5.0)
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.client is self]
            if self.child is child:
                for j in jobs:
                    j._q.put(_CRASHED)

    def _route(self, line: str) -> None:
        try:
            job_id, ev = split_tagged(line)
        except ProtocolError:
            self.stderr_tail.append(line)  # a stray print: keep it for a crash message
            return
        if isinstance(ev, dict):
            self.info = ev
            waiter = self._status.get(job_id or "")
            if waiter is not None:
                waiter.put(ev)
            return
        with self._lock:
            job = self._jobs.get(job_id or "")
        if job is not None:
            job._q.put(ev)

    def _send(self, line: str, start: bool = True) -> bool:
        if not self.alive:
            if not start:
                return False
            self.start()
        return self.child is not None and self.child.send(line)

    def crash_message(self) -> str:
        rc = self.child.returncode if self.child is not None else None
        last = " | ".join(s.strip() for s in list(self.stderr_tail)[-5:] if s.strip())
        msg = (f"the segmentation session stopped unexpectedly (exit status {rc}) - out of memory or a crash in "
               "a library are the usual causes; try again, or use a smaller model or the CPU")
        return msg + (f"; last messages: {last}" if last else "")

    def stop_process(self) -> None:
        """End the session process tree now (a run that would not stop); jobs still waiting crash."""
        child = self.child
        if child is None:
            return
        self.child = None
        with self._lock:
            jobs = list(self._jobs.values())
        if child.alive:
            child.kill_tree(grace_s=min(self.grace_s, 0.5))
        for j in jobs:
            j._q.put(_CRASHED)
        child.close_streams()

    # ---- jobs -------------------------------------------------------------------------------
    def new_job(self, timeout_s: float | None = None, **_ignored: Any) -> SessionJob:
        """A job in state ``created`` with its temp folder (write its inputs there, then ``start``).

        Shaped like ``WorkerRun(...)`` for the Slicer logic's ``run_factory`` (extra keywords ignored)."""
        return SessionJob(self, f"j{next(self._ids)}", timeout_s=timeout_s)

    def submit(self, request: Any, refine: Any = None, timeout_s: float | None = None) -> SessionJob:
        """Send a request now; returns its running job."""
        return self.new_job(timeout_s=timeout_s).start(request, refine=refine)

    def run(self, request: Any, refine: Any = None, timeout_s: float | None = None) -> ResultEvent | ErrorEvent:
        """Send a request and wait for its final event."""
        job = self.submit(request, refine=refine, timeout_s=timeout_s)
        final = job.wait()   # no time limit here: it returns once the job has its final event
        assert final is not None
        return final

    def _register(self, job: SessionJob) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def _unregister(self, job: SessionJob) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)

    def waiting_for(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def status(self, timeout: float = 10.0) -> dict:
        """The session's ``session`` event (state, model_loads, requests, pid, rss_mb)."""
        sid = f"status-{next(self._ids)}"
        waiter: queue.Queue = queue.Queue()
        self._status[sid] = waiter
        try:
            self._send(command_line(id=sid, status=True))
            return waiter.get(timeout=timeout)
        finally:
            self._status.pop(sid, None)

    # ---- ending -----------------------------------------------------------------------------
    def close(self, timeout: float = 3.0) -> None:
        """Shut the session down (running jobs are cancelled), remove the temp folder. Safe twice."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.running:
                job.cancel()
        child = self.child
        if child is not None and child.alive:
            self._send(command_line(shutdown=True), start=False)
            if child.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    child.proc.stdin.close()
            child.wait(timeout=timeout)
        self.stop_process()
        remove_temp_folder(self.temp_dir)
        self._finalizer.detach()

    def __enter__(self) -> "SessionClient":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
