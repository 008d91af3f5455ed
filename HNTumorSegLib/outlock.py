"""One run at a time per output folder: a lock file holding the owner's pid, host and start time.

Why (issue 22): two ``batch`` runs into one ``--out`` both exited 0; the second overwrote the
first's predictions, ``metrics.json`` and ``batch.json``, and the first then scored the second's
predictions against its own references. Now the first run to take the folder owns it until it
ends; a second run is refused at once (:class:`~HNTumorSegLib.errors.InputError`, exit 2, one
line: who holds it since when, and what to do).

How:

* the lock is ``<folder>/.hntumorseg-lock.json``, created with ``O_CREAT | O_EXCL`` (atomic on
  local disks and NFSv3+), holding ``pid``, ``host``, ``started`` (ISO time), the process's own
  start time (to tell a reused pid apart) and the command;
* it is removed in every ending the process lives through: success, error, Ctrl-C, SIGTERM and
  SIGHUP (the command line turns those into an exception, so ``with`` blocks run,
  :mod:`HNTumorSegLib.cli`);
* a SIGKILLed or crashed owner leaves its lock behind: a lock whose pid is not alive on this
  host (or is alive but started after the lock was taken: the pid was reused) is **stale** and
  is taken over with a one-line notice on stderr. A lock left by another host cannot be judged
  from here (its pid means nothing here): it is refused, and the message says which file to
  delete once that run is known to be gone. An empty or unreadable lock older than
  :data:`HALF_WRITTEN_S` (the owner was killed between creating and writing it) is stale too.

Example:
    >>> os.mkdir("preds")
    >>> with OutputLock("preds/", "--out", "batch"):        # around the whole run of the cohort
    ...     with OutputLock("preds/", "--out", "batch"):    # a second `batch --out preds/` meanwhile
    ...         pass
    Traceback (most recent call last):
    HNTumorSegLib.errors.InputError: preds: --out is in use by batch (pid ... since ...) - wait for that run ...
    >>> os.listdir("preds")                                 # the lock went with its run
    []
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import InputError
from .fileio import _pid_alive, loads_json, os_error

LOCK_NAME = ".hntumorseg-lock.json"
#: Seconds after which an empty or unreadable lock counts as left by a killed owner.
HALF_WRITTEN_S = 10.0


def _host() -> str:
    return socket.gethostname() or "unknown-host"


def _process_start(pid: int) -> float | None:
    """The start time (epoch s) of process ``pid``; None when unknown (no psutil, no access)."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _read(path: Path) -> dict | None:
    try:
        data = loads_json(path.read_bytes(), "output lock", path)   # depth-limited: any file may sit there
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_stale(holder: dict | None, lock_age_s: float) -> bool:
    """Whether a lock's owner is known to be gone (module docstring)."""
    if holder is None:
        return lock_age_s > HALF_WRITTEN_S
    pid = holder.get("pid")
    if holder.get("host") != _host() or not isinstance(pid, int):
        return False   # another machine's process: cannot be judged from here
    if not _pid_alive(pid):
        return True
    started, own = _process_start(pid), holder.get("process_start")
    return started is not None and isinstance(own, (int, float)) and started > own + 1.0   # a reused pid


class OutputLock:
    """Owns ``folder`` (which must exist) for one run; a context manager. ``what``: how messages
    name the folder (``--out``); ``command``: the holder's command, shown to a second run."""

    def __init__(self, folder: str | os.PathLike, what: str = "the output folder", command: str = "hntumorseg"):
        self.folder, self.what, self.command = Path(folder), what, command
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise InputError naming its holder; a stale lock is taken over."""
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            except OSError as exc:
                raise os_error(exc, self.path, "create the lock file") from None
            record = {"pid": os.getpid(), "host": _host(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                      "process_start": _process_start(os.getpid()), "command": self.command}
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(record, fh, allow_nan=False)   # strict, like every JSON we write
            except OSError as exc:
                self.path.unlink(missing_ok=True)
                raise os_error(exc, self.path, "write the lock file") from None
            self.held = True
            return self
        raise InputError(f"{self.what} is being taken by another run at this moment", self.folder,
                         "wait for it to finish or give another output folder")

    def _take_over_or_refuse(self) -> None:
        holder = _read(self.path)
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return   # released meanwhile: try again
        if not is_stale(holder, age):
            who = (f"{holder.get('command', 'a run')} (pid {holder.get('pid')} on {holder.get('host')}, "
                   f"since {holder.get('started')})") if holder else "a run that is starting"
            raise InputError(f"{self.what} is in use by {who}", self.folder,
                             "wait for that run to finish, or give another output folder; if that run is gone "
                             f"(another machine, a reboot), delete {self.path}")
        # stale: move it aside under a name of our own (atomic; a racing run's rename fails), then drop it
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read(aside)
        if moved != holder and moved is not None and not is_stale(moved, 0.0):
            try:   # another run took the lock between our look and our move: give it back
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        left = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}" if holder else "unreadable"
        print(f"hntumorseg: {self.what} {self.folder}: took over the lock of a run that is gone ({left})",
              file=sys.stderr, flush=True)

    def release(self) -> None:
        """Remove the lock if this process holds it (never another run's)."""
        if not self.held:
            return
        self.held = False
        holder = _read(self.path)
        if holder is None or (holder.get("pid") == os.getpid() and holder.get("host") == _host()):
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
