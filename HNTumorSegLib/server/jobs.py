"""The segmentation server's jobs: a queue in front of the project's warm sessions.

Why the warm session (:class:`HNTumorSegLib.session.client.SessionClient`) and not a pipeline
call in the server process: a job then runs exactly the code a local ``segment`` / Slicer run
runs (voxel-identical results), the model stays loaded between jobs, cancel and the job time
limit are the session's own, and a crash in a library kills a child, never the server. A
cancelled running job gets its final ``cancelled`` event at once (nothing it still reports is
published); its session slot stays busy until the session has stopped the run (about 2 s at most). ``max_jobs`` sessions run side by side (one each; on one GPU keep 1);
at most ``max_queue`` more jobs wait (else :class:`QueueFull`, HTTP 429).

Each job has a private folder (0700) under the server's own temp folder: ``in/`` (uploads),
``out/`` (results). It is deleted on DELETE after the job ended, ``ttl_s`` after it ended, and
with the server (SIGTERM, Ctrl-C); a server killed hard leaves its folder, removed by the next
server that starts (:func:`sweep_dead_servers`). A refinement job reads its parent's inputs in
place (the session's decoded-input cache then hits), so the parent's files are kept while a
refinement of it is waiting or running. The log gets job ids, sizes and timings only.

Example:
    >>> jm = JobManager(device="cpu", max_jobs=1, max_queue=0, start=False)
    >>> job = jm.new_job(owner="a")
    >>> len(job.id), oct(job.folder.stat().st_mode & 0o777), jm.get(job.id, "b") is None
    (32, '0o700', True)
    >>> jm.close(); job.folder.exists()
    False
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Cancelled, InputError
from ..fileio import remove_temp_folder, temp_folder
from ..protocol import ErrorEvent, Event, ResultEvent
from ..session.messages import tag_event
from ..vocab import JobState

log = logging.getLogger("hntumorseg.server")

#: Prefix of the server's temp folder (a pid file inside tells a dead server's folder apart).
ROOT_PREFIX = "hntumorseg-server-"
ENDED = (JobState.DONE, JobState.ERROR, JobState.CANCELLED)


class QueueFull(Exception):
    """``max_queue`` jobs are already waiting (HTTP 429)."""


@dataclass(eq=False)
class Job:
    """One job: its owner (a token's hash), folder, request, events (as JSON lines) and state."""

    id: str
    owner: str
    folder: Path
    request: dict = field(default_factory=dict)     # request.json fields, paths inside ``folder``
    refine: dict | None = None
    parent: "Job | None" = None
    state: JobState = JobState.QUEUED
    lines: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    upload_bytes: int = 0
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    active_children: int = 0
    delete_pending: bool = False
    attached: bool = False          # a session still works on it (even after its final event: a cancel)
    final_sent: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ended_yet(self) -> bool:
        return self.state in ENDED

    def add(self, ev: Event) -> bool:
        """Append one event as the session prints it (``"id"`` = this job), paths made relative;
        nothing after the final event (False: not added)."""
        with self._lock:
            if self.final_sent:
                return False
            self.final_sent = isinstance(ev, (ResultEvent, ErrorEvent))
            self._append(ev)
            return True

    def _append(self, ev: Event) -> None:
        if isinstance(ev, ResultEvent):
            files = {}
            for role, path in ev.files.items():
                p = Path(path)
                if p.is_file() and p.resolve().is_relative_to(self.folder.resolve()):
                    self.outputs[p.name] = p
                    files[role] = p.name
            ev = ResultEvent(files=files, timings=ev.timings, info=ev.info)
        line = tag_event(ev, self.id)
        self.lines.append(line.replace(str(self.folder) + os.sep, "").replace(str(self.folder), "."))


def sweep_dead_servers(parent: str | None = None) -> int:
    """Remove temp folders of servers that no longer run (killed hard); returns how many."""
    import psutil

    removed = 0
    base = Path(parent or tempfile.gettempdir())
    for folder in base.glob(ROOT_PREFIX + "*"):
        try:
            pid = int((folder / "pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not psutil.pid_exists(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class JobManager:
    """The job table, the queue, ``max_jobs`` worker threads each owning one warm session."""

    def __init__(self, device: str | None = None, max_jobs: int = 1, max_queue: int = 8,
                 job_timeout_s: float | None = None, ttl_s: float = 3600.0, temp_parent: str | None = None,
                 start: bool = True, session_argv: list[str] | None = None):
        self.device = device
        self.max_jobs = max(1, int(max_jobs))
        self.max_queue = max(0, int(max_queue))
        self.job_timeout_s = job_timeout_s
        self.ttl_s = ttl_s
        sweep_dead_servers(temp_parent)
        self.root = temp_folder(ROOT_PREFIX, dir=temp_parent)
        os.chmod(self.root, 0o700)
        (self.root / "pid").write_text(str(os.getpid()))
        self._session_argv = session_argv
        self.jobs: dict[str, Job] = {}
        self.waiting: collections.deque[Job] = collections.deque()
        self.running = 0
        self._idle = 0
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._sessions: list[Any] = []
        threading.Thread(target=self._reap, daemon=True, name="hntumorseg-server-ttl").start()
        if start:
            self.start()

    # ---- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        from ..session.client import SessionClient

        for n in range(self.max_jobs):
            session = SessionClient(device=self.device, temp_parent=str(self.root), argv=self._session_argv)
            self._sessions.append(session)
            t = threading.Thread(target=self._work, args=(session,), daemon=True, name=f"hntumorseg-server-job-{n}")
            self._threads.append(t)
            with self._cond:
                self._idle += 1
            t.start()

    def warm_up(self) -> None:
        """Start the session processes now (the first job then pays no Python / torch start)."""
        for s in self._sessions:
            s.start()

    def close(self) -> None:
        """Cancel every job, stop the sessions, remove every job's files. Safe twice."""
        with self._cond:
            self._closing = True
            jobs = list(self.jobs.values())
            self._cond.notify_all()
        for job in jobs:
            self.cancel(job)
        for t in self._threads:
            t.join(timeout=5.0)
        for s in self._sessions:
            s.close()
        remove_temp_folder(self.root)

    # ---- jobs ----------------------------------------------------------------------------------
    def new_job(self, owner: str) -> Job:
        """A job with its private folder, not yet queued (its uploads go into ``folder/in``)."""
        job_id = secrets.token_hex(16)
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        (folder / "in").mkdir(mode=0o700)
        (folder / "out").mkdir(mode=0o700)
        return Job(job_id, owner, folder)

    def has_room(self) -> bool:
        """Whether :meth:`submit` would take one more job now (checked before an upload is read)."""
        with self._cond:
            return not self._closing and len(self.waiting) < self.max_queue + self._idle

    def submit(self, job: Job) -> None:
        """Queue a job (QueueFull when ``max_queue`` wait already and no session is free)."""
        with self._cond:
            if self._closing or len(self.waiting) >= self.max_queue + self._idle:
                raise QueueFull(len(self.waiting))
            self.jobs[job.id] = job
            if job.parent is not None:
                job.parent.active_children += 1
            self.waiting.append(job)
            self._cond.notify_all()
        log.info("job %s queued (%d upload bytes, %d waiting)", job.id, job.upload_bytes, len(self.waiting))

    def discard(self, job: Job) -> None:
        """A job refused before it was queued: remove its folder."""
        shutil.rmtree(job.folder, ignore_errors=True)

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job, or None when unknown or another owner's (the caller answers 404 either way)."""
        with self._cond:
            job = self.jobs.get(job_id)
        return job if job is not None and secrets.compare_digest(job.owner, owner) else None

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {"running": self.running, "queued": len(self.waiting), "max_jobs": self.max_jobs,
                    "max_queue": self.max_queue}

    def cancel(self, job: Job) -> bool:
        """Ask a queued or running job to end (it ends with a ``cancelled`` error event); False when it
        had already ended."""
        with self._cond:
            if job.ended_yet:
                return False
            job.cancel.set()
            queued = job in self.waiting
        if queued:
            self._end_queued(job)
        elif job.add(ErrorEvent(Cancelled.kind, "request cancelled")):
            # ended for its client now; its session slot stays busy until the session has stopped
            # the run (the worker thread cancels it and drops whatever the run still reports)
            self._finish(job, JobState.CANCELLED)
        return True

    def delete(self, job: Job) -> None:
        """Forget an ended job and remove its files (later, when a refinement of it still runs)."""
        with self._cond:
            self.jobs.pop(job.id, None)
            job.delete_pending = True
            remove_now = job.active_children == 0 and not job.attached
        if remove_now:
            shutil.rmtree(job.folder, ignore_errors=True)
        log.info("job %s deleted", job.id)

    # ---- workers ---------------------------------------------------------------------------------
    def _end_queued(self, job: Job) -> None:
        with self._cond:
            if job not in self.waiting:
                return
            self.waiting.remove(job)
        job.add(ErrorEvent(Cancelled.kind, "request cancelled"))
        self._finish(job, JobState.CANCELLED)
        self._release(job)

    def _finish(self, job: Job, state: JobState) -> None:
        """The job's state after its final event (once: a cancel may have ended it first)."""
        with self._cond:
            if job.ended is not None:
                return
            job.ended = time.monotonic()
            job.state = state
            self._cond.notify_all()
        took = job.ended - (job.started or job.created)
        log.info("job %s %s after %.2f s", job.id, state, took)

    def _release(self, job: Job) -> None:
        """No session works on the job any more: its parent's inputs and (if deleted) its own files may go."""
        with self._cond:
            job.attached = False
            parent = job.parent
            drop = [job] if job.delete_pending and job.active_children == 0 else []
            if parent is not None:
                parent.active_children -= 1
                if parent.delete_pending and parent.active_children == 0 and not parent.attached:
                    drop.append(parent)
        for j in drop:
            shutil.rmtree(j.folder, ignore_errors=True)

    def _work(self, session: Any) -> None:
        while True:
            with self._cond:
                while not self.waiting and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                job = self.waiting.popleft()
                self._idle -= 1
                self.running += 1
                job.state = JobState.RUNNING
                job.attached = True
                job.started = time.monotonic()
            log.info("job %s running", job.id)
            try:
                state = self._run(session, job)
            except Exception as exc:   # never lose a job's final event
                job.add(ErrorEvent("internal", f"the server failed to run the job ({type(exc).__name__})"))
                state = JobState.ERROR
            with self._cond:
                self.running -= 1
                self._idle += 1
            self._finish(job, state)
            self._release(job)

    def _run(self, session: Any, job: Job) -> JobState:
        from ..pipeline.request import SegmentRequest

        if job.cancel.is_set():
            job.add(ErrorEvent(Cancelled.kind, "request cancelled"))
            return JobState.CANCELLED
        try:
            request = SegmentRequest.from_dict(job.request)
        except InputError as exc:
            job.add(ErrorEvent(exc.kind, exc.one_line()))
            return JobState.ERROR
        sjob = session.submit(request, refine=job.refine, timeout_s=self.job_timeout_s)
        seen = 0
        while True:
            sjob.poll()
            if job.cancel.is_set() and sjob.running:
                sjob.cancel()
            for ev in sjob.events[seen:]:
                job.add(ev)
            seen = len(sjob.events)
            if not sjob.running:
                break
            job.cancel.wait(sjob.poll_interval_s)
        return {"succeeded": JobState.DONE, "cancelled": JobState.CANCELLED}.get(sjob.state, JobState.ERROR)

    def _reap(self) -> None:
        """Delete ended jobs ``ttl_s`` after they ended."""
        pause = max(0.05, min(self.ttl_s / 4.0, 5.0))
        while True:
            with self._cond:
                if self._closing:
                    return
                self._cond.wait(timeout=pause)
                now = time.monotonic()
                old = [j for j in self.jobs.values() if j.ended is not None and now - j.ended > self.ttl_s]
            for job in old:
                log.info("job %s expired (ttl %.0f s)", job.id, self.ttl_s)
                self.delete(job)
