"""Client of the background worker: start it, read its events without blocking, cancel it.

One :class:`WorkerRun` is one child process (``python -m HNTumorSegLib.worker request.json``)
plus a private temp folder that holds ``request.json`` and any inputs the caller copies or
derives there (Slicer writes its volumes there). The temp folder is removed in every ending:
success, error, cancel, timeout, crash - and, as a last resort, when the object is garbage
collected or the interpreter exits.

Design choices (the process handling itself is :mod:`HNTumorSegLib.childproc`'s, shared by
every child this package starts):
- The child runs in its own process group, so :meth:`WorkerRun.cancel` ends the whole tree -
  the worker and anything it started - with SIGTERM, then SIGKILL after a grace period (1 s by
  default: the whole cancel takes < 2 s).
- The pipes are read by threads (:class:`~HNTumorSegLib.childproc.Child`), so :meth:`poll`
  never blocks: a GUI timer calls it every 100-200 ms.
- Every run ends with exactly one final event: the worker's ``result`` / ``error``, or one
  the client makes: ``crashed`` (the worker died without saying why: killed, segfault; the
  message carries its last stderr lines), ``cancelled`` or ``timeout``.
- A worker that dies by a signal is told as "the worker crashed (SIGSEGV) during <stage>" (the
  stage of its last progress event), and its request is saved for a bug report beside the
  worker log (:func:`save_crash_report`: the request's paths and options, the signal, the stage,
  the versions; no image, no name from a header) - issue 25.
- The worker stops within 1 s when this process dies (:func:`HNTumorSegLib.childproc.watch_parent`).

Example:
    >>> import sys
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> phantom = make_midrt_case(seed=0)
    >>> run = WorkerRun(python=sys.executable, timeout_s=3600)         # in Slicer: its PythonSlicer
    >>> _ = write_image(phantom["midRT_T2"], run.temp_dir / "t2.nii.gz")  # e.g. a scene volume, saved
    >>> _ = write_image(phantom["preRT_mask_registered"], "prior.nii.gz")
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": str(run.temp_dir / "t2.nii.gz")},
    ...                          prior_path="prior.nii.gz", output_path="labels.nii.gz")
    >>> _ = run.start(request)
    >>> stages = []
    >>> while run.running:
    ...     for ev in run.poll(): stages.append(getattr(ev, "stage", ev.event))
    ...     time.sleep(0.2)
    >>> list(dict.fromkeys(stages))
    ['load', 'resample', 'prompts', 'inference', 'clean-up', 'write', 'result']
    >>> run.final.event, run.final.files
    ('result', {'labels': 'labels.nii.gz'})
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from .pipeline.request import SegmentRequest

from .childproc import PACKAGE_ROOT, Child, child_env, default_python, signal_group, signal_name, start
from .errors import Cancelled, WorkerCrashed, WorkerFailed, WorkerTimedOut
from .fileio import remove_temp_folder, temp_folder, write_json_atomic
from .protocol import ErrorEvent, Event, ResultEvent, RunHandle

# PACKAGE_ROOT, child_env and default_python live in childproc; named here for callers that know them from here.
__all__ = ["WorkerRun", "request_to_dict", "log_dir", "save_worker_log", "save_crash_report", "PACKAGE_ROOT",
           "child_env", "default_python"]


def request_to_dict(request: "SegmentRequest") -> dict:
    """A :class:`~HNTumorSegLib.pipeline.request.SegmentRequest` as the ``request.json`` dict.

    Strict on purpose: a plain dict (or any other object) is a TypeError, so a request is
    always built, and checked, as a SegmentRequest in the caller's process; a renamed field
    fails there, at construction, never later inside the worker.
    """
    from .pipeline.request import SegmentRequest  # light (no torch); lazy to keep `import runner` small
    from .prompts.registration_job import RegisterRequest   # the Slicer module's registration job

    if isinstance(request, RegisterRequest):
        return json.loads(json.dumps(request.to_dict(), allow_nan=False))
    if not isinstance(request, SegmentRequest):
        raise TypeError(f"a worker request must be a SegmentRequest, not {type(request).__name__}")
    return json.loads(json.dumps(request.to_dict(), allow_nan=False))  # proves it is strict JSON (no NaN)


def log_dir() -> Path:
    """Where worker logs of failed runs are kept: ``$HNTUMORSEG_LOG_DIR``, else
    ``$XDG_CACHE_HOME/hntumorseg/logs`` (``~/.cache/hntumorseg/logs``)."""
    env = os.environ.get("HNTUMORSEG_LOG_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hntumorseg" / "logs"


def save_worker_log(lines) -> Path | None:
    """Keep a failed worker's last stderr lines in a private file (0600: a traceback may name
    paths) so the user can send it with a bug report; None when no folder can take it."""
    text = "\n".join(lines) + "\n"
    return _private_file(f"worker-{_stamp()}.log", lambda path: path.write_text(text, encoding="utf-8"))


def _private_file(name: str, write) -> Path | None:
    """``write(path)`` into :func:`log_dir` (else the temp folder), the file readable by its owner
    only (0600: paths may name patients' folders); the path, or None when no folder takes it."""
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "hntumorseg-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            write(path)
            os.chmod(path, 0o600)
            return path
        except (OSError, ValueError):
            continue
    return None


def _stamp() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"


def save_crash_report(request: dict, returncode: int, stage: str, worker_log: Path | None = None) -> Path | None:
    """Save what a bug report needs about a worker that died by a signal (issue 25): the request as
    the worker got it (paths, model, options; no image and nothing read from one), the signal, the
    last stage, the versions. Strict JSON through the atomic writer; None when no folder takes it.

    Example:
        >>> os.environ["HNTUMORSEG_LOG_DIR"] = "logs"     # (this example's own folder; default: log_dir())
        >>> path = save_crash_report({"model": "demo-midrt", "input_paths": {"T2": "t2.nii.gz"}}, -11, "prompts")
        >>> del os.environ["HNTUMORSEG_LOG_DIR"]
        >>> from HNTumorSegLib.fileio import read_json
        >>> report = read_json(path, "crash report")
        >>> path.parent.name, report["signal"], report["stage"], report["request"]["model"]
        ('logs', 'SIGSEGV', 'prompts', 'demo-midrt')
    """
    import platform
    import sys

    from . import __version__

    report = {"what": "hntumorseg worker crash", "hntumorseg": __version__, "signal": signal_name(returncode),
              "returncode": returncode, "stage": stage, "python": sys.version.split()[0],
              "platform": platform.platform(), "worker_log": None if worker_log is None else str(worker_log),
              "request": request}
    return _private_file(f"crash-{_stamp()}.json", lambda path: write_json_atomic(path, report))


def _last_resort(temp_dir: str, child_holder: list) -> None:
    # weakref.finalize callback: must not reference the WorkerRun object.
    child = child_holder[0] if child_holder else None
    if child is not None and child.alive:
        try:
            child.kill_tree(grace_s=0.5)
        except Exception:  # interpreter shutting down: best effort only
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


class WorkerRun(RunHandle):
    """One worker process and its temp folder. See the module docstring.

    ``python``: interpreter for the worker (default :func:`default_python`).
    ``timeout_s``: wall-clock limit; past it the tree is killed and the run ends as ``timeout``.
    ``argv``: replace the whole command (``{request}`` is replaced by the request path) - for a
    worker in a container, or a test of the process-tree handling.
    ``stderr_lines``: how many of the last stderr lines to keep (shown when the worker crashes).
    ``background_cleanup`` (attribute): remove the temp folder off the calling thread at the end
    (:func:`~HNTumorSegLib.fileio.remove_temp_folder`); the Slicer scene sets it for its GUI thread.
    """

    background_cleanup = False

    def __init__(self, python: str | None = None, timeout_s: float | None = None,
                 argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 temp_parent: str | os.PathLike | None = None, grace_s: float = 1.0,
                 stderr_lines: int = 40):
        self.python = python or default_python()
        self.timeout_s = timeout_s
        self.argv = list(argv) if argv else None
        self.extra_env = dict(env or {})
        self.grace_s = grace_s
        self.temp_dir = temp_folder("hntumorseg-run-", dir=temp_parent)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.stray_stdout: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.events: list[Event] = []
        self.final: ResultEvent | ErrorEvent | None = None
        self.state = "created"  # running, succeeded, failed, cancelled, timeout, crashed
        self.returncode: int | None = None
        self.log_path: Path | None = None   # the worker's stderr, kept after an internal error or a crash
        self.report_path: Path | None = None   # the request, kept after a death by a signal (save_crash_report)
        self._request: dict | None = None
        self.child: Child | None = None
        self._child_holder: list = []
        self._ending: str | None = None  # why we killed it: cancelled / timeout
        self._finalizer = weakref.finalize(self, _last_resort, str(self.temp_dir), self._child_holder)

    @property
    def proc(self):
        """The worker's ``subprocess.Popen`` (None before :meth:`start`)."""
        return self.child.proc if self.child is not None else None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, request: "SegmentRequest") -> "WorkerRun":
        """Write ``request.json`` into the temp folder and start the worker."""
        if self.state != "created":
            raise RuntimeError(f"this run was already started (state {self.state})")
        req_path = self.temp_dir / "request.json"
        self._request = request_to_dict(request)
        write_json_atomic(req_path, self._request, indent=1)   # strict JSON, like every file we write
        argv = ([a.replace("{request}", str(req_path)) for a in self.argv] if self.argv
                else [self.python, "-m", "HNTumorSegLib.worker", str(req_path)])
        try:
            self.child = start(argv, env=self.extra_env, name="worker", stderr_tail=self.stderr_tail)
        except OSError as exc:
            self._cleanup_temp()
            self.state = "crashed"
            self.final = ErrorEvent(WorkerCrashed.kind, f"could not start the worker with {argv[0]}: "
                                                        f"{exc.strerror or exc} - check the Python interpreter path")
            self.events.append(self.final)
            return self
        self.stray_stdout = self.child.stray_stdout
        self._child_holder.append(self.child)
        self.state = "running"
        return self

    # -- reading ------------------------------------------------------------------------------
    def _take(self, lines: list[str], out: list[Event]) -> None:
        assert self.child is not None
        for line in lines:
            ev = self.child.parse(line)   # a library that printed on stdout: kept apart, not a failure
            if ev is None:
                continue
            if isinstance(ev, (ResultEvent, ErrorEvent)):
                if self.final is not None:
                    continue
                self.final = ev
            out.append(ev)

    def poll(self) -> list[Event]:
        """New events since the last call; never blocks. Ends the run when the worker has exited."""
        out: list[Event] = []
        if self.state != "running" or self.child is None:
            return out
        self._take(self.child.read(), out)
        if self.child.overdue(self.timeout_s):
            self._kill("timeout")
            out.extend(self._drain_after_kill())
        elif not self.child.alive:
            out.extend(self._drain_after_kill(wait_eof_s=2.0))
        self.events.extend(out)
        return out

    # -- ending -------------------------------------------------------------------------------
    def _kill(self, why: str) -> None:
        if self.child is None or self._ending:
            return
        self._ending = why
        self.child.kill_tree(grace_s=self.grace_s)

    def _drain_after_kill(self, wait_eof_s: float = 1.0) -> list[Event]:
        """The process has exited (or was killed): read what is left, decide the ending, clean up."""
        out: list[Event] = []
        child = self.child
        assert child is not None
        self.returncode = child.wait(timeout=2.0)
        if self.returncode is None:  # should not happen after SIGKILL; do not hang a GUI
            child.kill_tree(grace_s=0.2)
            self.returncode = child.wait(timeout=2.0)
        if not self._ending:
            # A grandchild still holding the pipes would keep us from seeing EOF: end the group.
            signal_group(child.pid, signal.SIGKILL)
        self._take(child.read_to_eof(wait_eof_s), out)
        child.close_streams()
        self._finish(out)
        return out

    def _finish(self, out: list[Event]) -> None:
        if self._ending == "cancelled":
            self.state = "cancelled"
            if not isinstance(self.final, ResultEvent):
                self.final = ErrorEvent(Cancelled.kind, "segmentation cancelled by the user")
                out.append(self.final)
        elif self._ending == "timeout":
            self.state = "timeout"
            self.final = ErrorEvent(WorkerTimedOut.kind, f"the worker took longer than {self.timeout_s:g} s and was "
                                                         "stopped - try a GPU, fewer folds or no test-time "
                                                         "augmentation")
            out.append(self.final)
        elif isinstance(self.final, ResultEvent):
            # The result is sent after every output was committed: a kill (or a crash at exit)
            # after it changes nothing, and must not add a second final event (issue 11).
            self.state = "succeeded"
        elif isinstance(self.final, ErrorEvent):
            self.state = "failed"
        else:
            self.state = "crashed"
            rc = self.returncode if self.returncode is not None else 0
            stage = self.progress.stage if self.progress is not None else "start-up"
            how = (f"crashed ({signal_name(rc)})" if rc < 0 else f"exited with code {rc}")
            last = " | ".join(line.strip() for line in list(self.stderr_tail)[-5:] if line.strip())
            msg = (f"the worker {how} during {stage}: it stopped unexpectedly before finishing "
                   f"(out of memory or a crash in a library are the usual causes) - try again, or use "
                   f"a smaller model or the CPU")
            if last:
                msg += f"; last messages: {last}"
            self.final = ErrorEvent(WorkerCrashed.kind, msg)
            out.append(self.final)
            if rc < 0 and self._request is not None:   # a signal: keep the request for a bug report (issue 25)
                self.log_path = save_worker_log(self.stderr_tail)
                self.report_path = save_crash_report(self._request, rc, stage, self.log_path)
                if self.report_path:
                    self.final.message += f"; request saved for a bug report: {self.report_path}"
        if isinstance(self.final, ErrorEvent) and self.final.kind in (WorkerFailed.kind, WorkerCrashed.kind):
            self.log_path = self.log_path or save_worker_log(self.stderr_tail)
            if self.final.kind == WorkerFailed.kind:
                last = " | ".join(line.strip() for line in list(self.stderr_tail)[-3:] if line.strip())
                self.final.message += f"; its last lines: {last}" if last else ""
            if self.log_path:
                self.final.message += f"; worker log: {self.log_path}"
        self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        remove_temp_folder(self.temp_dir, background=self.background_cleanup)
        self._finalizer.detach()

    def cancel(self) -> None:
        """End the worker's whole process tree (within ``grace_s`` + ~0.5 s) and remove the temp folder."""
        if self.state == "created":
            self.state = "cancelled"
            self.final = ErrorEvent(Cancelled.kind, "segmentation cancelled by the user")
            self._cleanup_temp()
            return
        if self.state != "running":
            return
        self._kill("cancelled")
        self.events.extend(self._drain_after_kill(wait_eof_s=0.5))
