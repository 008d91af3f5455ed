"""Helpers for the issue-11 fault tests (Testing/test_faults_*.py); not a test module itself.

* :func:`small_tmpfs`: a tmpfs of a few hundred kB mounted by the test (root; CI is root and
  must never skip: with ``CI=true`` a failed mount fails the test);
* :func:`hashes`: sha256 of every file under some folders (nothing touched = equal before/after);
* :func:`hntumorseg`: the real command as a child process;
* :func:`leftovers`: hidden temp files / worker temp folders that must not survive;
* :func:`wait_until`, :func:`process_gone`: wait on a condition with a generous limit (no fixed
  sleeps: a loaded CI machine is slow, never wrong);
* :func:`frozen`: a command *and its workers* held still with SIGSTOP (a worker runs in its own
  session, so stopping the command alone leaves the worker writing).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def small_tmpfs(folder: Path, size: str = "300k", read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``folder`` for the block; skip (locally only) when impossible."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        unavailable(f"cannot mount a tmpfs ({res.stderr.strip() or res.returncode}); needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> None:
    """Fill the file system of ``folder`` until at most ``leave_bytes`` are free."""
    import shutil

    i = 0
    while shutil.disk_usage(folder).free > leave_bytes:
        free = shutil.disk_usage(folder).free
        chunk = max(1, min(free - leave_bytes, 1 << 16))
        try:
            with open(folder / f"filler{i}.bin", "wb") as fh:
                fh.write(os.urandom(chunk))
        except OSError:
            break
        i += 1


def hashes(*folders: Path) -> dict[str, str]:
    """{path: sha256} of every file under ``folders`` (links followed, folders listed too)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p)] = "<dir>"
    return out


def hntumorseg(*args: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m HNTumorSegLib ARGS`` as a real child; returns the completed process (text)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "HNTumorSegLib", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kw)


def leftovers(*folders: Path) -> list[str]:
    """Hidden temp files (``.<name>.<pid>.xxxx``, ``.hntumorseg.*``) and worker temp folders under ``folders``."""
    found = []
    for folder in folders:
        for p in Path(folder).rglob("*"):
            if p.name.startswith(("hntumorseg-run-", "hntumorseg-session-")) or (p.name.startswith(".") and p.is_file()
                                                         and p.parent.name != ".hntumorseg-done"):
                found.append(str(p))
    return found


def one_error_line(stderr: str) -> str:
    """The stderr's one non-empty line (assert there is exactly one, and no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def wait_until(condition, what: str = "condition", limit_s: float = 120.0, poll_s: float = 0.02):
    """``condition()``'s first true value, polled every ``poll_s``; AssertionError naming ``what``
    after ``limit_s`` (generous: the limit only ends a test that would otherwise hang)."""
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"{what}: not within {limit_s} s")


def process_gone(pid: int) -> bool:
    """The process has exited (gone, or a zombie nobody has reaped yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Hold process ``pid`` and all its descendants still (SIGSTOP) for the ``with`` body, then SIGCONT.

    The parent is stopped first, so it cannot start another child meanwhile; each child is stopped
    before its own children are listed, for the same reason. Why a tree: ``childproc.start`` runs a
    worker in its own session, and a stopped ``batch`` whose worker ran on wrote a prediction into the
    folder the test watched (CI, stop 33).
    """
    import psutil

    held: list[psutil.Process] = []
    todo = [psutil.Process(pid)]
    try:
        while todo:
            proc = todo.pop()
            try:
                proc.suspend()
                held.append(proc)
                todo.extend(proc.children())
            except psutil.NoSuchProcess:
                continue
        yield
    finally:
        for proc in held:
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass
