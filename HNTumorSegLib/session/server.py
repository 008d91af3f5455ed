"""The warm session: ``hntumorseg session [--device D]`` (also ``python -m HNTumorSegLib.session``).

A long-lived worker that keeps the model loaded (:class:`.model_cache.ModelCache`) and serves
requests read as JSON lines on stdin, writing the worker protocol's events tagged with each
request's id on stdout (:mod:`.messages`). It pays the worker's fixed cost (Python start,
``import torch``, model load: about 1.9 s on the 2-core machine, ``bench/results/worker.md``)
once instead of per request, and refines one edited box in about a second
(:mod:`HNTumorSegLib.pipeline.refine`).

How it works:

* the main thread reads stdin; requests run one at a time in one worker thread, in arrival
  order (one model, one device: running two at once would only make both slower);
* **cancel** sets the request's flag; the pipeline's progress callback is the cancellation
  point (every tile, every stage), where :class:`RequestCancelled` (a ``BaseException``, so
  no ``except Exception`` in a library swallows it) unwinds the run and the atomic writers
  leave nothing. If the run does not reach a cancellation point within
  :data:`CANCEL_DEADLINE_S` (a long model load), the ``cancelled`` event is sent anyway and
  whatever the run still produces is dropped; the next request starts when it has unwound;
* **parent death**: with ``HNTUMORSEG_PARENT_PID`` set (the client sets it) the worker's
  watch (:func:`HNTumorSegLib.worker.watch_parent`) ends the session within 1 s;
* **SIGTERM**: the running request gets its final ``cancelled`` event (at its next
  cancellation point, else after 1 s), queued ones too, then the session exits 143;
* **temp files**: everything temporary goes under the session's folder (``--temp-dir``, the
  client's; else a new ``hntumorseg-session-*``; :data:`tempfile.tempdir` points there), which
  is removed in every ending: shutdown, end of input, SIGTERM, parent death;
* ``--device D``: requests asking for ``auto`` run on D;
* **what it remembers** (issue 27): besides the model, decoded inputs and their model-grid
  copies, keyed by file identity (path, inode, size, mtime_ns), in an LRU of
  :data:`HNTumorSegLib.warm_cache.DEFAULT_BUDGET_MB` MB (``HNTUMORSEG_SESSION_CACHE_MB``), so a
  refinement reads and resamples nothing that did not change (:mod:`HNTumorSegLib.warm_cache`);
  each result's ``info.session.cache`` gives its counts.

Example:
    $ printf '%s\\n' '{"id": "r1", "request": {"model": "demo-midrt", ...}}' '{"shutdown": true}' \\
        | hntumorseg session --device cpu
    {"event": "session", "id": null, "state": "ready", "model_loads": 0, ...}
    {"event": "progress", "id": "r1", "stage": "load", "fraction": 0.0, ...}
    {"event": "result", "id": "r1", "files": {"labels": ...}, "info": {"session": {"model_loads": 1, ...}}}
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import EXIT_BAD_INPUT, EXIT_OK, Cancelled, InputError, OutOfMemory, WorkerFailed
from ..fileio import loads_json, remove_temp_folder, temp_folder
from ..protocol import ErrorEvent, Event, ProgressEvent, ResultEvent
from .messages import session_event, tag_event
from ..warm_cache import WarmCache
from .model_cache import ModelCache

#: seconds after a cancel by which the ``cancelled`` event is sent even if the run has not unwound
CANCEL_DEADLINE_S = 1.5


class RequestCancelled(BaseException):
    """Raised at the pipeline's next progress call after a cancel (see the module docstring)."""


@dataclass
class Job:
    """One request in the session: its id, what to run, its cancel flag."""

    id: str
    request: Any                      # SegmentRequest
    refine: Any = None                # RefineSpec or None
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    reported: bool = False            # its one final event was written


def rss_mb() -> float:
    """Resident memory of this process (MB), for the ``session`` event and the soak test."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


class SessionServer:
    """Reads command lines (:meth:`handle`), runs requests in one worker thread, writes events.

    ``write(line)`` puts one line on the protocol stream; it is called from several threads
    and serialised here. ``device``: the device of requests that ask for ``auto`` (None: keep).
    """

    def __init__(self, write: Callable[[str], None], device: str | None = None, model_cache: ModelCache | None = None):
        self._write_raw = write
        self._write_lock = threading.Lock()
        self.device = device
        self.models = model_cache or ModelCache()
        self.inputs = WarmCache()   # decoded inputs and their model-grid copies, by content (issue 27)
        self.served = 0
        self._pending: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="hntumorseg-session-run", daemon=True)
        self._thread.start()

    # ---- output ----------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        with self._write_lock:
            self._write_raw(line)

    def _final(self, job: Job, ev: ResultEvent | ErrorEvent) -> None:
        """Write a job's one final event (never twice: the cancel deadline may have come first)."""
        with self._cond:
            if job.reported:
                return
            job.reported = True
            self._jobs.pop(job.id, None)
        self._write(tag_event(ev, job.id))

    def status(self, job_id: str | None = None, state: str | None = None) -> None:
        with self._cond:
            busy = self._current is not None or bool(self._pending)
        self._write(session_event(job_id, state=state or ("busy" if busy else "idle"), model_loads=self.models.loads,
                                  requests=self.served, pid=os.getpid(), rss_mb=rss_mb()))

    # ---- input -----------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """One command line; False once the session should end (shutdown)."""
        if not line.strip():
            return True
        try:   # depth-limited and strict (issue 22): 1,100 nested brackets are this line's error only
            msg = loads_json(line, "a session line", fix="write one JSON object per line (docs/design.md "
                                                         "'Worker protocol')")
        except InputError as exc:
            self._write(tag_event(ErrorEvent(InputError.kind, exc.one_line()), None))
            return True
        if not isinstance(msg, dict):
            self._write(tag_event(ErrorEvent(InputError.kind, "a session line is not a JSON object"), None))
            return True
        if msg.get("shutdown"):
            return False
        job_id = msg.get("id")
        if not isinstance(job_id, str) or not job_id:
            self._write(tag_event(ErrorEvent(InputError.kind, "a session command needs an \"id\" (a non-empty string)"),
                                  None))
            return True
        if "cancel" in msg:
            self.cancel(str(msg["cancel"]))
        elif msg.get("status"):
            self.status(job_id)
        elif "request" in msg:
            self.submit(job_id, msg["request"])
        else:
            self._write(tag_event(ErrorEvent(InputError.kind, "unknown session command - use request, cancel, status "
                                                          "or shutdown"), job_id))
        return True

    def submit(self, job_id: str, data: Any) -> None:
        """Check a request and queue it; a bad one gets its error event at once."""
        from ..pipeline.refine import RefineSpec
        from ..pipeline.request import SegmentRequest

        try:
            with self._cond:
                if job_id in self._jobs:
                    raise InputError(f"request id {job_id!r} is already in use", None, "give each request its own id")
            if not isinstance(data, dict):
                raise InputError("'request' must be a JSON object", None, "write the fields of request.json")
            data = dict(data)
            refine = data.pop("refine", None)
            request = SegmentRequest.from_dict(data)
            if self.device and request.device == "auto":
                request = dataclasses.replace(request, device=self.device)
            spec = None if refine is None else RefineSpec.from_dict(refine)
        except InputError as exc:
            self._write(tag_event(ErrorEvent(getattr(exc, "kind", InputError.kind), exc.one_line()), job_id))
            return
        job = Job(job_id, request, spec)
        with self._cond:
            self._jobs[job_id] = job
            self._pending.append(job)
            self._cond.notify_all()

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running request (unknown or finished ids are ignored: it ended already)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return
            queued = job in self._pending
            if queued:
                self._pending.remove(job)
            job.cancel.set()
        if queued:
            self._final(job, _cancelled())
            return
        timer = threading.Timer(CANCEL_DEADLINE_S, self._cancel_deadline, args=(job,))
        timer.daemon = True
        timer.start()

    def _cancel_deadline(self, job: Job) -> None:
        if not job.finished.is_set():
            print("session: the cancelled run has not stopped yet; reporting it cancelled", file=sys.stderr, flush=True)
            self._final(job, _cancelled())

    # ---- the worker thread -----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                self._current = job
            try:
                self._run(job)
            finally:
                job.finished.set()
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        from ..worker import error_event, run_request

        def emit(ev: Event) -> None:
            if job.cancel.is_set():
                raise RequestCancelled()
            if isinstance(ev, ProgressEvent) and not job.reported:
                self._write(tag_event(ev, job.id))

        try:
            with self.inputs.active():
                result = run_request(job.request, emit, run=self._runner(job))
        except RequestCancelled:
            release_freed_memory()
            self._final(job, _cancelled())
        except Exception as exc:  # every request ends with one event; the session lives on
            ev = error_event(exc)
            if ev.kind in (WorkerFailed.kind, OutOfMemory.kind):
                traceback.print_exc(file=sys.stderr)
            release_freed_memory()
            self._final(job, ev)
        else:
            self.served += 1
            result.info["session"] = {"model_loads": self.models.loads, "requests": self.served, "pid": os.getpid(),
                                      "cache": self.inputs.stats()}
            if job.refine is not None:
                result.info["refined_boxes"] = list(job.refine.boxes)
            release_freed_memory()
            self._final(job, result)

    def _runner(self, job: Job) -> Callable[..., Any]:
        """What runs the job: the pipeline with the model cache, or a refinement."""
        loader = self.models.loader_for(job.request.device)
        if job.refine is None:
            from ..pipeline.run import run_segmentation

            def run(request, progress=None, **kw):
                return run_segmentation(request, progress=progress, model_loader=loader, **kw)
        else:
            from ..pipeline.refine import refine_segmentation

            def run(request, progress=None, **kw):
                return refine_segmentation(request, job.refine, progress=progress, model_loader=loader, **kw)
        return run

    # ---- ending ----------------------------------------------------------------------------
    def drain(self) -> None:
        """Wait until every queued and running request has ended (shutdown, end of input)."""
        with self._cond:
            while (self._pending or self._current is not None) and self._thread.is_alive():
                self._cond.wait(timeout=0.5)

    def stop(self, wait_s: float = 2.0) -> None:
        """Cancel what runs, drop what waits, end the worker thread (waits up to ``wait_s``)."""
        with self._cond:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
            for job in pending + ([self._current] if self._current else []):
                job.cancel.set()
            self._cond.notify_all()
        for job in pending:
            self._final(job, _cancelled())
        self._thread.join(timeout=wait_s)
        with self._cond:
            running = self._current
        if running is not None:   # still unwinding (SIGTERM during a model load): its one final event now
            self._final(running, ErrorEvent(Cancelled.kind, "the session was stopped before this request finished"))


#: every this many requests :func:`release_freed_memory` collects the frozen objects too
FULL_COLLECT_EVERY = 32
_collections = 0


def release_freed_memory() -> None:
    """Give the memory a finished request freed back to the system before its result is reported.

    Why: a session lives for hours; each request allocates and frees volumes of tens to hundreds
    of MB in several threads, and glibc keeps freed blocks in per-thread arenas, so the resident
    size creeps up (seen here: +10 % over 50 requests on a loaded machine) although nothing
    leaks. ``gc.collect`` drops cycles (torch tensors held by tracebacks), ``malloc_trim(0)``
    returns free arena pages (a no-op where glibc is absent: macOS, Windows, musl).

    What survives the collection is long-lived (imported modules, cached models), so it is then
    frozen (``gc.freeze``): the next collection walks only what later requests made. Why: with
    torch, nnU-Net and MONAI imported a session holds about 550,000 tracked objects and a full
    collection took 0.65-0.8 s on this project's 2-core machine - most of a warm refinement's
    budget (issue 27) - against 0.1 ms once frozen. Every :data:`FULL_COLLECT_EVERY`-th call
    unfreezes and collects everything, so a frozen object that later becomes cyclic garbage is
    still freed.
    """
    import ctypes
    import ctypes.util
    import gc

    global _collections
    _collections += 1
    if _collections % FULL_COLLECT_EVERY == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _cancelled() -> ErrorEvent:
    return ErrorEvent(Cancelled.kind, "request cancelled")


def _read_lines(stream) -> Any:
    """Lines of a binary stream (``sys.stdin.buffer``), decoded; stops at end of input."""
    for raw in iter(stream.readline, b""):
        yield raw.decode("utf-8", "replace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..vocab import Device

    parser.add_argument("--device", default=None,
                        help=f"device for requests asking for auto: one of {', '.join(Device.values())} (or cuda:N)")
    parser.add_argument("--temp-dir", default=None, help=argparse.SUPPRESS)  # the client's folder, removed at the end


def serve(args: argparse.Namespace) -> int:
    """Run the session on this process's stdin/stdout until shutdown, end of input or a signal."""
    from ..vocab import parse_device
    from ..childproc import event_stream, exit_on_sigterm
    from ..worker import EventWriter, exit_orphaned, orphaned, watch_parent

    device = parse_device(args.device) if args.device else None
    temp_dir = Path(args.temp_dir) if args.temp_dir else temp_folder("hntumorseg-session-")
    temp_dir.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(temp_dir)   # every temp file of this process lands in the folder removed below
    stream = event_stream()
    exit_on_sigterm()   # not the main thread (embedded use): no handler
    watch_parent(temp_dir=temp_dir, require_env=True)   # our client's death ends us within 1 s
    server = None
    code = EXIT_OK
    try:
        server = SessionServer(EventWriter(stream).write_line, device=device)   # silent once orphaned
        server.status(state="ready")
        for line in _read_lines(sys.stdin.buffer):
            if not server.handle(line):
                break
        server.drain()   # shutdown and end of input finish what was asked; signals do not wait
    except SystemExit as exc:  # SIGTERM (a client's kill, or our parent watch)
        code = int(exc.code or 0)
    finally:
        if orphaned():
            exit_orphaned()   # nobody to answer: remove the temp folder and go, now
        if server is not None:
            server.stop(wait_s=1.0)
        remove_temp_folder(temp_dir)
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
        if orphaned():   # the client died during this clean-up: the orphan's exit (worker.exit_orphaned) ends it
            exit_orphaned()
        if server is not None and server._thread.is_alive():
            os._exit(code)  # a run still unwinding in native code: do not wait for it at shutdown
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m HNTumorSegLib.session",
                                     description="Warm segmentation session (JSON lines on stdin/stdout).")
    add_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except InputError as exc:
        print(f"session: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
