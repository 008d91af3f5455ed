"""The child's side of :mod:`.childproc`: stop when the parent dies, keep stdout for events, exit on SIGTERM.

Why a module of its own: :mod:`.childproc` is the parent's side (start, environment, pipes, kill
of the tree); this is what runs *inside* a child (the worker, the warm session), split out so
each file stays readable (``childproc`` had grown to 518 lines). ``childproc`` re-exports every
name here, so ``from HNTumorSegLib.childproc import watch_parent`` keeps working; code that
patches one of these names should patch it here (this module's functions look up its own names).

A child must stop when its parent dies (killed, crashed), or it
would compute on and write files nobody asked for. :func:`watch_parent` arms the kernel's
parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)`` through ctypes, at the child's start)
and keeps a thread that checks the parent, woken at once by that signal and every
``interval_s`` anyway. The caveat: the signal fires when the parent *thread* that started the
child exits, not only when the parent *process* dies (Slicer may start a run from a thread that
ends long before the run). So the signal never stops the child by itself; it wakes the
watcher, which compares ``os.getppid()`` with the parent recorded at start (pid in
``HNTUMORSEG_PARENT_PID``, set by :func:`HNTumorSegLib.childproc.child_env`): a living parent keeps its pid, a dead one
leaves the child to init or a subreaper. A signal from a thread's exit is counted
(:attr:`ParentWatch.ignored`) and otherwise ignored; the kernel sends it again when the next
parent thread holding the child exits. Without the signal (macOS, Windows, a watch started
outside the main thread) the check every ``interval_s`` is the fallback. The signal is SIGUSR2,
not SIGTERM, so a client's cancel (SIGTERM to the group) is never taken for a thread's exit.


:func:`event_stream` keeps the real stdout for protocol events and points file descriptor 1 at
stderr, so a library that prints cannot corrupt the protocol; :func:`exit_on_sigterm` makes
SIGTERM unwind the main thread (``finally`` blocks run).

Example (a watch on a living parent: nothing happens, the check says so):
    >>> watch = ParentWatch(os.getppid(), on_orphaned=lambda: None, interval_s=0.05)
    >>> watch.parent_gone(), watch.orphaned.is_set()
    (False, False)
    >>> PARENT_ENV
    'HNTUMORSEG_PARENT_PID'
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Callable, TextIO

from .errors import exit_for_signal

IS_WINDOWS = os.name == "nt"
#: The environment variable naming the parent's pid (:func:`HNTumorSegLib.childproc.child_env` sets it,
#: :func:`watch_parent` reads it).
PARENT_ENV = "HNTUMORSEG_PARENT_PID"
#: The kernel's parent-death signal (Linux); it only wakes the watcher (module docstring).
PARENT_DEATH_SIGNAL: int | None = getattr(signal, "SIGUSR2", None)
_PR_SET_PDEATHSIG = 1


def event_stream() -> TextIO:
    """Keep the real stdout for events and point file descriptor 1 at stderr, so a library that
    prints cannot corrupt the protocol. Returns the event stream (line-buffered UTF-8)."""
    import io

    sys.stdout.flush()
    event_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return io.TextIOWrapper(os.fdopen(event_fd, "wb", buffering=0), encoding="utf-8", line_buffering=True,
                            write_through=True)


def exit_on_sigterm() -> bool:
    """Make SIGTERM raise SystemExit (128 + 15) in the main thread, so ``finally`` blocks (atomic
    writes, temp files) run; False where that is impossible (not the main thread: embedded use)."""
    def on_sigterm(signum, frame):  # noqa: ARG001
        raise SystemExit(exit_for_signal(signum))

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
        return True
    except ValueError:
        return False


def _ancestors() -> set[int]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return {p.pid for p in psutil.Process().parents()}
    return set()


def _arm_kernel_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` for this process (Linux only); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ParentWatch:
    """Calls ``on_orphaned`` once (in its own thread) when the parent dies (module docstring).

    ``expected_pid``: the client's pid. Normally our direct parent; when a launcher sits between
    (an ancestor, e.g. a ``PythonSlicer`` wrapper), the client's death (or the launcher's) counts.
    ``kernel_signal``: True when the parent-death signal is armed (else only the ``interval_s`` check);
    ``ignored``: parent-death signals that came from a parent thread's exit, not the parent's death.
    """

    def __init__(self, expected_pid: int, on_orphaned: Callable[[], None], interval_s: float = 0.2):
        self.expected_pid = expected_pid
        self.on_orphaned = on_orphaned
        self.interval_s = interval_s
        self.kernel_signal = False
        self.ignored = 0
        self.orphaned = threading.Event()
        self._ppid = os.getppid()
        self._via_launcher = self._ppid != expected_pid and expected_pid in _ancestors()
        # Windows keeps a dead parent's pid in getppid(): there, as via a launcher, ask whether it lives
        self._ask_pid = self._via_launcher or IS_WINDOWS
        self._wake_r: socket.socket | None = None
        self._fired = threading.Lock()

    def parent_gone(self) -> bool:
        """True when the parent recorded at start is no longer our parent (or, via a launcher or on
        Windows, no longer alive)."""
        if os.getppid() != self._ppid:
            return True
        if not self._ask_pid:
            return False
        import psutil   # not os.kill(pid, 0): on Windows that would end the process

        return not psutil.pid_exists(self.expected_pid)

    def start(self) -> "ParentWatch":
        """Arm the kernel's signal (main thread only), check once, and start the watcher thread."""
        if PARENT_DEATH_SIGNAL is not None and threading.current_thread() is threading.main_thread():
            self._arm()
        if not self._via_launcher and self._ppid != self.expected_pid:
            self._orphan()   # the parent died while we started (before the signal was armed)
            return self
        threading.Thread(target=self._run, daemon=True, name="hntumorseg-parent-watch").start()
        return self

    def _arm(self) -> None:
        """Handler first (SIGUSR2's default action would end us), then a wakeup socket so the signal
        wakes the watcher thread at once even while the main thread is inside native code."""
        sig = PARENT_DEATH_SIGNAL
        assert sig is not None
        signal.signal(sig, lambda signum, frame: self._check(from_signal=self._wake_r is None))
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        previous = None
        with contextlib.suppress(ValueError, OSError):
            previous = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
        if previous is not None and previous != -1:   # someone else's wakeup fd (an event loop): keep it, poll
            signal.set_wakeup_fd(previous)
        elif previous == -1:
            self._wake_r, self._wake_w = r, w
        self.kernel_signal = _arm_kernel_signal(sig)
        # the race of the man page: the parent may have died before prctl; parent_gone() covers it

    def _run(self) -> None:
        while not self.orphaned.is_set():
            woken = False
            if self._wake_r is not None:
                ready, _, _ = select.select([self._wake_r], [], [], self.interval_s)
                if ready:
                    woken = self._drain_wakeups()
            else:
                time.sleep(self.interval_s)
            self._check(from_signal=woken)

    def _drain_wakeups(self) -> bool:
        """Read the signal numbers the wakeup socket holds; True if the parent-death signal is among them."""
        got, wake = b"", self._wake_r
        with contextlib.suppress(OSError):   # BlockingIOError: all read
            while wake is not None and (chunk := wake.recv(64)):
                got += chunk
        return PARENT_DEATH_SIGNAL is not None and int(PARENT_DEATH_SIGNAL) in got

    def _check(self, from_signal: bool) -> None:
        if self.parent_gone():
            self._orphan()
        elif from_signal:
            self.ignored += 1   # a parent thread ended, the parent lives: the kernel re-arms on the next

    def _orphan(self) -> None:
        if not self._fired.acquire(blocking=False):
            return
        self.orphaned.set()
        threading.Thread(target=self.on_orphaned, daemon=True, name="hntumorseg-orphaned").start()


def watch_parent(on_orphaned: Callable[[], None], expected_pid: int | None = None, interval_s: float = 0.2,
                 require_env: bool = False) -> ParentWatch | None:
    """Start a :class:`ParentWatch` for the parent named by :data:`PARENT_ENV` (else our parent at
    start, unless ``require_env``). Call it early in the child's main thread (module docstring)."""
    named = os.environ.get(PARENT_ENV, "")
    if expected_pid is None and require_env and not named.isdigit():
        return None
    if expected_pid is None:
        expected_pid = int(named) if named.isdigit() else os.getppid()
    return ParentWatch(expected_pid, on_orphaned, interval_s).start()
