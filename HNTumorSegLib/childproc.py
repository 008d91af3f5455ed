"""Every child process this package starts, in one place: start, environment, lines, kill (parent death: :mod:`.parent_watch`).

Five launchers use it - the one-shot worker (:mod:`.runner`), the warm session
(:mod:`.session.client`), outcome prediction (:mod:`.outcome.child_run`), model download /
import (:mod:`.scene.model_install`) and the device probe (:mod:`.scene.run_estimate`) - so a
fix to how children start, talk or end is made once. It sits in the ground layer beside
:mod:`.protocol`, whose parser it uses for events, and imports nothing heavy.

Parent side: :func:`start` runs ``argv`` in its own process group (``start_new_session``; on
Windows ``CREATE_NEW_PROCESS_GROUP``) with :func:`child_env`'s environment, so
:meth:`Child.kill_tree` ends the child and everything it started (SIGTERM to the group and to
descendants that left it, SIGKILL after a grace). No ``preexec_fn``: it is not fork-safe in a
threaded parent such as Slicer. Daemon threads read the pipes, so :meth:`Child.read` never
blocks longer than asked (a GUI timer polls it); :meth:`Child.events` parses stdout with
:func:`~HNTumorSegLib.protocol.parse_event`. :func:`run_to_end` runs a short child to its end.

Child side: :mod:`.parent_watch` (a child stops when its parent dies; its event stream and
SIGTERM exit). Its names are re-exported here (``from HNTumorSegLib.childproc import
watch_parent`` keeps working); the watch is set up in the child, this module starts the parent's side.

Example:
    >>> child = start([sys.executable, "-c", "print('{\\"event\\": \\"result\\", \\"files\\": {}}')"])
    >>> child.wait(10)
    0
    >>> [type(e).__name__ for e in child.events(timeout=2)]
    ['ResultEvent']
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

# the child side, re-exported: ``from HNTumorSegLib.childproc import watch_parent`` (and the rest) keeps working
from .parent_watch import (IS_WINDOWS, PARENT_DEATH_SIGNAL, PARENT_ENV, ParentWatch,  # noqa: F401
                           event_stream, exit_on_sigterm, watch_parent)
from .protocol import ErrorEvent, Event, ProtocolError, ResultEvent, parse_event

#: The folder holding ``HNTumorSegLib``: put first on every child's ``PYTHONPATH``.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL


def default_python() -> str:
    """The Python to run children with: ``PythonSlicer`` beside Slicer's executable when this
    runs inside Slicer (its ``sys.executable`` is the Slicer application), else ``sys.executable``."""
    exe = Path(sys.executable)
    if not exe.name.lower().startswith("python"):
        for cand in (exe.parent / "PythonSlicer", exe.parent / "PythonSlicer.exe",
                     exe.parent.parent / "bin" / "PythonSlicer", exe.parent.parent / "bin" / "PythonSlicer.exe"):
            if cand.exists():
                return str(cand)
    return sys.executable


def python_path(existing: str | None = None) -> str:
    """``PYTHONPATH`` with this very package's folder first: a child imports the HNTumorSegLib its
    parent runs, wherever the parent found it (a source tree, Slicer's extension folder, a Ray node)."""
    existing = os.environ.get("PYTHONPATH", "") if existing is None else existing
    return os.pathsep.join([str(PACKAGE_ROOT)] + [p for p in existing.split(os.pathsep) if p])


def child_env(extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: ours plus ``extra_env``, unbuffered UTF-8 output, our pid
    (:data:`PARENT_ENV`: the child stops when we die, :func:`watch_parent`) and this package on its path."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env[PARENT_ENV] = str(os.getpid())
    env["PYTHONPATH"] = python_path(env.get("PYTHONPATH", ""))
    return env


def _pump(stream: IO[bytes], tag: str, q: "queue.Queue[tuple[str, str | None]]") -> None:
    """Reader thread: every line of one pipe into the queue, then ``(tag, None)`` at its end."""
    try:
        for raw in iter(stream.readline, b""):
            q.put((tag, raw.decode("utf-8", "replace").rstrip("\r\n")))
    except (OSError, ValueError):  # pipe closed under us during a kill
        pass
    finally:
        q.put((tag, None))


class Child:
    """One started child process (:func:`start`): its ``proc`` (a ``subprocess.Popen``), the lines
    of its piped stdout/stderr, and the kill of its whole tree.

    ``stderr_tail``: the last stderr lines (a shared deque may be passed to :func:`start`);
    ``stray_stdout``: stdout lines :meth:`events` could not parse (a library that printed).
    """

    def __init__(self, proc: subprocess.Popen, name: str, stderr_tail: collections.deque, stdin_piped: bool):
        self.proc = proc
        self.pid = proc.pid
        self.stderr_tail = stderr_tail
        self.stray_stdout: collections.deque[str] = collections.deque(maxlen=stderr_tail.maxlen)
        self.started_at = time.monotonic()
        self._q: queue.Queue = queue.Queue()
        self._open: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stdin_lock = threading.Lock() if stdin_piped else None
        for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
            if stream is not None:
                self._open.add(tag)
                self._threads.append(threading.Thread(target=_pump, args=(stream, tag, self._q), daemon=True,
                                                      name=f"hntumorseg-{name}-{tag}-{proc.pid}"))
                self._threads[-1].start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def eof(self) -> bool:
        """Every piped stream has ended and every line was read."""
        return not self._open and self._q.empty()

    def overdue(self, timeout_s: float | None) -> bool:
        """True once the child has run longer than ``timeout_s`` seconds (None: never)."""
        return timeout_s is not None and time.monotonic() - self.started_at > timeout_s

    def read(self, timeout: float | None = 0.0) -> list[str]:
        """stdout lines that arrived, waiting up to ``timeout`` s for the first (None: until one
        arrives or the streams end); stderr lines go to :attr:`stderr_tail`. Never blocks longer."""
        out: list[str] = []
        block, wait = timeout is None or timeout > 0, timeout
        while self._open or not self._q.empty():
            try:
                tag, line = self._q.get(block=block, timeout=wait) if block else self._q.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._open.discard(tag)
            elif tag == "err":
                self.stderr_tail.append(line)
            else:
                out.append(line)
            block = False   # something came: take the rest without waiting
        return out

    def events(self, timeout: float | None = 0.0) -> list[Event]:
        """:meth:`read`, parsed as protocol events; blank lines are skipped, others kept in :attr:`stray_stdout`."""
        return [ev for ev in (self.parse(line) for line in self.read(timeout)) if ev is not None]

    def parse(self, line: str) -> Event | None:
        """One stdout line as an event, or None (kept in :attr:`stray_stdout` unless blank)."""
        if not line.strip():
            return None
        try:
            return parse_event(line)
        except ProtocolError:
            self.stray_stdout.append(line)
            return None

    def read_to_eof(self, limit_s: float) -> list[str]:
        """After the child exited: the stdout lines still to come, waiting at most ``limit_s`` for
        the streams to end (a grandchild still holding a pipe must not hang the caller)."""
        out: list[str] = []
        t_end = time.monotonic() + limit_s
        while self._open and time.monotonic() < t_end:
            out += self.read(timeout=0.05)
        out += self.read()
        for t in self._threads:
            t.join(timeout=0.5)
        return out

    def send(self, line: str) -> bool:
        """Write one line to the child's stdin (started with ``stdin=PIPE``); False if it is gone."""
        if self._stdin_lock is None or self.proc.stdin is None:
            return False
        with self._stdin_lock, contextlib.suppress(OSError, ValueError):   # BrokenPipeError: it is gone
            self.proc.stdin.write(line.encode("utf-8"))
            self.proc.stdin.flush()
            return True
        return False

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, waiting up to ``timeout`` s; None if it is still running then."""
        return _wait(self.proc, timeout)

    def kill_tree(self, grace_s: float = 1.0) -> None:
        """End the child and everything it started (:func:`kill_tree`)."""
        kill_tree(self.proc, grace_s)

    def close_streams(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def start(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
          stdin: Any = DEVNULL, stdout: Any = PIPE, stderr: Any = PIPE, name: str = "child",
          stderr_tail: collections.deque | None = None) -> Child:
    """Start ``argv`` as a child in its own process group with :func:`child_env` (plus ``env``).

    ``stdin``/``stdout``/``stderr``: :data:`PIPE`, :data:`DEVNULL` or an open file; piped output
    is read by threads (:meth:`Child.read`). ``cwd``: None keeps ours, so relative paths in a
    request mean what they meant to the caller. Raises OSError when the program cannot be run.
    """
    kwargs: dict[str, Any] = {}
    if IS_WINDOWS:
        # own group (Ctrl-C in a console does not reach it) and no console window popping up
        kwargs["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
                                   | subprocess.CREATE_NO_WINDOW)  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True  # setsid() in the child, done by subprocess's C code
    proc = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd,
                            env=child_env(env), close_fds=True, **kwargs)
    return Child(proc, name, stderr_tail if stderr_tail is not None else collections.deque(maxlen=40),
                 stdin_piped=stdin is PIPE)


def signal_name(returncode: int) -> str:
    """``SIGKILL`` for a return code of -9."""
    try:
        return signal.Signals(-returncode).name
    except (ValueError, AttributeError):
        return f"signal {-returncode}"


def signal_group(pid: int, sig: int) -> None:
    """``killpg`` that ignores a group already gone; nothing on Windows (no process groups to signal)."""
    if not IS_WINDOWS:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid: int | None = None) -> list:
    """psutil processes below ``pid`` (None: this process), recursively; [] once it is gone."""
    import psutil  # runtime dependency (requirements.txt); imported here so importing this module stays light

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _each(procs: list, action: str, *args: Any) -> None:
    """Call ``action`` (terminate, kill, send_signal) on every process that still exists."""
    import psutil

    for p in procs:
        try:
            getattr(p, action)(*args)
        except psutil.Error:
            pass


def kill_tree(proc: subprocess.Popen, grace_s: float = 1.0) -> None:
    """SIGTERM the child's process group (and descendants that left it), wait ``grace_s``, then
    SIGKILL whatever is left. The child itself is reaped by ``proc.wait`` (not psutil), so its
    exit status stays readable. Ends within ``grace_s`` + about 1 s."""
    import psutil

    descendants = _descendants(proc.pid)
    signal_group(proc.pid, signal.SIGTERM)
    _each([proc] if IS_WINDOWS else [], "terminate")
    _each(descendants, "terminate")  # also those that started their own session
    t_end = time.monotonic() + grace_s
    _wait(proc, grace_s)
    _gone, alive = psutil.wait_procs(descendants, timeout=max(0.0, t_end - time.monotonic()))
    signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    _each(alive, "kill")
    psutil.wait_procs(alive, timeout=0.5)
    _wait(proc, 0.5)   # reaped after SIGKILL: the caller reads a final status


def signal_descendants(sig: int) -> None:
    """Send ``sig`` to every descendant of this process (the orphan's first step: its children
    unwind through their own ``finally`` blocks while it unwinds through its)."""
    with contextlib.suppress(Exception):   # the process table changing under us
        _each(_descendants(), "send_signal", sig)


def kill_descendants(wait_s: float = 2.0) -> None:
    """SIGKILL every descendant of this process and wait up to ``wait_s`` until they are gone, so
    none is still writing into a folder that is about to be removed (the orphan's last step)."""
    import psutil

    with contextlib.suppress(Exception):   # the process table changing under us
        procs = _descendants()
        _each(procs, "kill")
        psutil.wait_procs(procs, timeout=wait_s)


def _wait(proc: subprocess.Popen, timeout: float | None) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@dataclass
class Finished:
    """A child run to its end by :func:`run_to_end`."""

    returncode: int | None
    events: list[Event] = field(default_factory=list)
    stray_stdout: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def final(self) -> ResultEvent | ErrorEvent | None:
        """The first result or error event (a child reports one)."""
        return next((e for e in self.events if isinstance(e, (ResultEvent, ErrorEvent))), None)


def run_to_end(argv: Sequence[str], timeout_s: float, *, env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike | None = None, grace_s: float = 1.0) -> Finished:
    """Run a short child (a probe) to its end and collect its events; past ``timeout_s`` its tree
    is killed (``timed_out``). Raises OSError when the program cannot be run."""
    child = start(argv, env=env, cwd=cwd, name="probe")
    events: list[Event] = []
    timed_out = False
    while not child.eof and child.returncode is None:
        events += child.events(timeout=0.1)
        if child.overdue(timeout_s):
            timed_out = True
            child.kill_tree(grace_s)
            break
    code = child.wait(timeout=5.0)
    events += [e for e in map(child.parse, child.read_to_eof(1.0)) if e is not None]
    child.close_streams()
    return Finished(code, events, list(child.stray_stdout), list(child.stderr_tail), timed_out)
