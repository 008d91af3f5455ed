"""Client of the background worker: start it, read its events without blocking, cancel it.

One :class:`WorkerRun` is one child process (``python -m HNTumorSegLib.worker request.json``)
plus a private temp folder that holds ``request.json`` and any inputs the caller copies or
derives there (Slicer writes its volumes there). The temp folder is removed in every ending:
success, error, cancel, timeout, crash - and, as a last resort, when the object is garbage
collected or the interpreter exits.

Design choices:
- The child runs in its own session / process group (``start_new_session``; on Windows
  ``CREATE_NEW_PROCESS_GROUP``), so :meth:`WorkerRun.cancel` can end the whole tree - the
  worker and anything it started - with SIGTERM to the group, then SIGKILL after a grace
  period (1 s by default: the whole cancel takes < 2 s). psutil finds descendants that
  left the group. No ``preexec_fn`` (not fork-safe in a threaded parent such as Slicer).
- Each pipe is read by a daemon thread into a queue, so :meth:`poll` never blocks: a GUI
  timer calls it every 100-200 ms.
- Every run ends with exactly one final event: the worker's ``result`` / ``error``, or one
  the client makes: ``crashed`` (the worker died without saying why: killed, segfault; the
  message carries its last stderr lines), ``cancelled`` or ``timeout``.

Example:
    >>> run = WorkerRun(python="/path/to/PythonSlicer", timeout_s=3600)   # doctest: +SKIP
    >>> request = SegmentRequest(model="demo-midrt", input_paths={"T2": str(run.temp_dir / "t2.nii.gz")},
    ...                          output_path="labels.nii.gz")                  # doctest: +SKIP
    >>> run.start(request)                                              # doctest: +SKIP
    >>> while run.running:                                              # doctest: +SKIP
    ...     for ev in run.poll(): print(ev)
    ...     time.sleep(0.2)
    >>> run.final                                                       # doctest: +SKIP
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from .pipeline.request import SegmentRequest

from .protocol import ErrorEvent, Event, ProtocolError, ResultEvent, RunHandle, parse_event

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_IS_WINDOWS = os.name == "nt"


def default_python() -> str:
    """The Python to run the worker with: ``PythonSlicer`` beside Slicer's executable when this
    runs inside Slicer (its ``sys.executable`` is the Slicer application), else ``sys.executable``."""
    exe = Path(sys.executable)
    if not exe.name.lower().startswith("python"):
        for cand in (exe.parent / "PythonSlicer", exe.parent / "PythonSlicer.exe",
                     exe.parent.parent / "bin" / "PythonSlicer", exe.parent.parent / "bin" / "PythonSlicer.exe"):
            if cand.exists():
                return str(cand)
    return sys.executable


def request_to_dict(request: "SegmentRequest") -> dict:
    """A :class:`~HNTumorSegLib.pipeline.request.SegmentRequest` as the ``request.json`` dict.

    Strict on purpose: a plain dict (or any other object) is a TypeError, so a request is
    always built, and checked, as a SegmentRequest in the caller's process; a renamed field
    fails there, at construction, never later inside the worker.
    """
    from .pipeline.request import SegmentRequest  # light (no torch); lazy to keep `import runner` small

    if not isinstance(request, SegmentRequest):
        raise TypeError(f"a worker request must be a SegmentRequest, not {type(request).__name__}")
    return json.loads(json.dumps(request.to_dict()))  # proves it is JSON


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
    name = f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "hntumorseg-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return f"signal {-code}"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the worker leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_tree(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the worker's process group (and descendants that left it), wait ``grace_s``,
    then SIGKILL whatever is left. The worker itself is reaped by ``proc.wait`` (not psutil),
    so its exit status stays readable."""
    import psutil  # runtime dependency (requirements.txt); imported here so `import runner` stays light

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if _IS_WINDOWS:
        proc.terminate()
    else:
        _signal_group(proc.pid, signal.SIGTERM)
    for p in descendants:  # also those that started their own session
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    t_end = time.monotonic() + grace_s
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _gone, alive = psutil.wait_procs(descendants, timeout=max(0.0, t_end - time.monotonic()))
    if not _IS_WINDOWS:
        _signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=0.5)


def _pump(stream, tag: str, q: "queue.Queue[tuple[str, str | None]]") -> None:
    try:
        for raw in iter(stream.readline, b""):
            q.put((tag, raw.decode("utf-8", "replace").rstrip("\r\n")))
    except (OSError, ValueError):  # pipe closed under us during cancel
        pass
    finally:
        q.put((tag, None))


def _last_resort(temp_dir: str, proc_holder: list) -> None:
    # weakref.finalize callback: must not reference the WorkerRun object.
    proc = proc_holder[0] if proc_holder else None
    if proc is not None and proc.poll() is None:
        try:
            _kill_tree(proc, grace_s=0.5)
        except Exception:  # interpreter shutting down: best effort only
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def child_env(extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker or session child: unbuffered UTF-8, our pid (the child stops
    when we die, ``worker._watch_parent``) and this very package on its path."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    env["HNTUMORSEG_PARENT_PID"] = str(os.getpid())  # the worker stops if we die (worker._watch_parent)
    env["PYTHONIOENCODING"] = "utf-8"
    # The child must import this very package, wherever the parent found it.
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class WorkerRun(RunHandle):
    """One worker process and its temp folder. See the module docstring.

    ``python``: interpreter for the worker (default :func:`default_python`).
    ``timeout_s``: wall-clock limit; past it the tree is killed and the run ends as ``timeout``.
    ``argv``: replace the whole command (``{request}`` is replaced by the request path) - for a
    worker in a container, or a test of the process-tree handling.
    ``stderr_lines``: how many of the last stderr lines to keep (shown when the worker crashes).
    """

    def __init__(self, python: str | None = None, timeout_s: float | None = None,
                 argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 temp_parent: str | os.PathLike | None = None, grace_s: float = 1.0,
                 stderr_lines: int = 40):
        self.python = python or default_python()
        self.timeout_s = timeout_s
        self.argv = list(argv) if argv else None
        self.extra_env = dict(env or {})
        self.grace_s = grace_s
        self.temp_dir = Path(tempfile.mkdtemp(prefix="hntumorseg-run-", dir=temp_parent))
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.stray_stdout: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.events: list[Event] = []
        self.final: ResultEvent | ErrorEvent | None = None
        self.state = "created"  # running, succeeded, failed, cancelled, timeout, crashed
        self.returncode: int | None = None
        self.log_path: Path | None = None   # the worker's stderr, kept after an internal error or a crash
        self.proc: subprocess.Popen | None = None
        self._proc_holder: list = []
        self._q: queue.Queue = queue.Queue()
        self._eof: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._t_start = 0.0
        self._ending: str | None = None  # why we killed it: cancelled / timeout
        self._finalizer = weakref.finalize(self, _last_resort, str(self.temp_dir), self._proc_holder)

    # -- life cycle ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return child_env(self.extra_env)

    def start(self, request: "SegmentRequest") -> "WorkerRun":
        """Write ``request.json`` into the temp folder and start the worker."""
        if self.state != "created":
            raise RuntimeError(f"this run was already started (state {self.state})")
        req_path = self.temp_dir / "request.json"
        req_path.write_text(json.dumps(request_to_dict(request), indent=1))
        argv = ([a.replace("{request}", str(req_path)) for a in self.argv] if self.argv
                else [self.python, "-m", "HNTumorSegLib.worker", str(req_path)])
        kwargs: dict[str, Any] = {}
        if _IS_WINDOWS:
            # own group (so Ctrl-C in a console does not reach it) and no console window popping up
            kwargs["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                                       | subprocess.CREATE_NO_WINDOW)  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # setsid() in the child, done by subprocess's C code
        # cwd is inherited: relative paths in the request mean what they meant to the caller.
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=None, env=self._env(),
                                         close_fds=True, **kwargs)
        except OSError as exc:
            self._cleanup_temp()
            self.state = "crashed"
            self.final = ErrorEvent("crashed", f"could not start the worker with {argv[0]}: {exc.strerror or exc} - "
                                               "check the Python interpreter path")
            self.events.append(self.final)
            return self
        self._proc_holder.append(self.proc)
        self._t_start = time.monotonic()
        self.state = "running"
        for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            t = threading.Thread(target=_pump, args=(stream, tag, self._q), daemon=True,
                                 name=f"hntumorseg-worker-{tag}-{self.proc.pid}")
            t.start()
            self._threads.append(t)
        return self

    # -- reading ------------------------------------------------------------------------------
    def _handle(self, tag: str, line: str | None, out: list[Event]) -> None:
        if line is None:
            self._eof.add(tag)
            return
        if tag == "err":
            self.stderr_tail.append(line)
            return
        if not line.strip():
            return
        try:
            ev = parse_event(line)
        except ProtocolError:
            self.stray_stdout.append(line)  # a library printed on stdout: keep, do not fail
            return
        if isinstance(ev, (ResultEvent, ErrorEvent)):
            if self.final is not None:
                return
            self.final = ev
        out.append(ev)

    def poll(self) -> list[Event]:
        """New events since the last call; never blocks. Ends the run when the worker has exited."""
        out: list[Event] = []
        if self.state != "running":
            return out
        while True:
            try:
                tag, line = self._q.get_nowait()
            except queue.Empty:
                break
            self._handle(tag, line, out)
        if self.timeout_s is not None and time.monotonic() - self._t_start > self.timeout_s:
            self._kill("timeout")
            out.extend(self._drain_after_kill())
        elif self.proc is not None and self.proc.poll() is not None:
            out.extend(self._drain_after_kill(wait_eof_s=2.0))
        self.events.extend(out)
        return out

    # -- ending -------------------------------------------------------------------------------
    def _kill(self, why: str) -> None:
        if self.proc is None or self._ending:
            return
        self._ending = why
        _kill_tree(self.proc, grace_s=self.grace_s)

    def _drain_after_kill(self, wait_eof_s: float = 1.0) -> list[Event]:
        """The process has exited (or was killed): read what is left, decide the ending, clean up."""
        out: list[Event] = []
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:  # should not happen after SIGKILL; do not hang a GUI
            _kill_tree(self.proc, grace_s=0.2)
            self.returncode = self.proc.wait(timeout=2.0)
        if not self._ending and not _IS_WINDOWS:
            # A grandchild still holding the pipes would keep us from seeing EOF: end the group.
            _signal_group(self.proc.pid, signal.SIGKILL)
        t_end = time.monotonic() + wait_eof_s
        while len(self._eof) < 2 and time.monotonic() < t_end:
            try:
                tag, line = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            self._handle(tag, line, out)
        for t in self._threads:
            t.join(timeout=0.5)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self._finish(out)
        return out

    def _finish(self, out: list[Event]) -> None:
        if self._ending == "cancelled":
            self.state = "cancelled"
            if not isinstance(self.final, ResultEvent):
                self.final = ErrorEvent("cancelled", "segmentation cancelled by the user")
                out.append(self.final)
        elif self._ending == "timeout":
            self.state = "timeout"
            self.final = ErrorEvent("timeout", f"the worker took longer than {self.timeout_s:g} s and was stopped - "
                                               "try a GPU, fewer folds or no test-time augmentation")
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
            how = (f"was killed by {_signal_name(rc)}" if rc < 0 else f"exited with code {rc}")
            last = " | ".join(line.strip() for line in list(self.stderr_tail)[-5:] if line.strip())
            msg = (f"the segmentation worker stopped unexpectedly: it {how} before finishing "
                   f"(out of memory or a crash in a library are the usual causes) - try again, or use "
                   f"a smaller model or the CPU")
            if last:
                msg += f"; last messages: {last}"
            self.final = ErrorEvent("crashed", msg)
            out.append(self.final)
        if isinstance(self.final, ErrorEvent) and self.final.kind in ("internal", "crashed"):
            self.log_path = save_worker_log(self.stderr_tail)
            if self.final.kind == "internal":
                last = " | ".join(line.strip() for line in list(self.stderr_tail)[-3:] if line.strip())
                self.final.message += f"; its last lines: {last}" if last else ""
            if self.log_path:
                self.final.message += f"; worker log: {self.log_path}"
        self._cleanup_temp()

    def _cleanup_temp(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self._finalizer.detach()

    def cancel(self) -> None:
        """End the worker's whole process tree (within ``grace_s`` + ~0.5 s) and remove the temp folder."""
        if self.state == "created":
            self.state = "cancelled"
            self.final = ErrorEvent("cancelled", "segmentation cancelled by the user")
            self._cleanup_temp()
            return
        if self.state != "running":
            return
        self._kill("cancelled")
        self.events.extend(self._drain_after_kill(wait_eof_s=0.5))

