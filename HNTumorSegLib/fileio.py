"""Write-then-verify file output: the one way this package puts a file where a user will look for it.

Every output (label maps, JSON, CSV, DICOM, HTML, PNG, done-markers) is written to a hidden
temporary file *beside* its final name, flushed and ``fsync``-ed, checked (size > 0, plus a
caller's read-back check: header and voxel count for images), and only then renamed over the
final name. Why each step:

* beside (same folder): the rename is atomic only within one file system;
* fsync + check: ``sitk.WriteImage`` does not raise on "no space left" - it leaves a short file.
  Without the check a full disk would report success with an empty or truncated label map and
  replace a good earlier one (issue 11);
* any failure removes the temporary file and keeps the earlier output byte-identical; an
  ``OSError`` becomes one line naming the path (and the free space for a full disk):
  :class:`~HNTumorSegLib.errors.EnvironmentFault` (exit 1) for the machine's faults (ENOSPC,
  EDQUOT, EIO), :class:`~HNTumorSegLib.errors.InputError` (exit 2) for what the user can fix
  (read-only folder, permission, a name too long, a folder in the way).

The temporary file gets the permissions a plain ``open()`` would give (``0o666`` less the
umask) rather than ``mkstemp``'s private ``0o600``, so a colleague or a PACS import can read it.
Its name is ``.<name>.<pid>.<random><suffix>``, or ``.hntumorseg.<pid>.<random><suffix>`` when
that would pass the 255-byte name limit (a 250-byte output name still works); the pid lets a
later run remove what a SIGKILLed one left (:func:`sweep_stale_temps`).

:data:`STOP` is set by the worker when its client has gone away: from then on nothing is
published (:func:`publish` raises :class:`PublishingStopped`), so an orphaned worker never
writes an output its (dead) client did not see finished.

Example:
    >>> import SimpleITK as sitk
    >>> img = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    >>> with atomic_path("out/labels.nii.gz") as tmp:
    ...     sitk.WriteImage(img, str(tmp))           # written to out/.labels.nii.gz.<random>.nii.gz
    >>> write_json_atomic("out/metrics.json", {"DSC": 0.8})
    PosixPath('out/metrics.json')
    >>> sorted(p.name for p in Path("out").iterdir())    # the temporary files are gone
    ['labels.nii.gz', 'metrics.json']
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import Cancelled, EnvironmentFault, HNTumorSegError, InputError

#: Set when nothing may be published any more (the worker's client died). See the module docstring.
STOP = threading.Event()
#: Longest file name (bytes) most file systems accept.
NAME_MAX = 255
#: Whole extensions kept on temporary files (so writers that pick a format by suffix still work).
DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")
#: errno values that are the machine's fault (exit 1); others are the user's to fix (exit 2).
_EDQUOT = getattr(errno, "EDQUOT", errno.ENOSPC)
FULL_DISK_ERRNOS = {errno.ENOSPC, _EDQUOT, errno.EFBIG}
ENVIRONMENT_ERRNOS = FULL_DISK_ERRNOS | {errno.EIO, errno.ENOMEM, getattr(errno, "ESTALE", errno.EIO), errno.ETIMEDOUT}

Verify = Callable[[Path], None]


class PublishingStopped(Cancelled):
    """Raised by :func:`publish` after :data:`STOP` was set: the client is gone, nothing is published
    (kind ``cancelled``, from :class:`~HNTumorSegLib.errors.Cancelled`)."""


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _suffix(name: str) -> str:
    """The whole extension in lower case (``LABELS.NII.GZ`` -> ``.nii.gz``): ITK picks its writer
    by a lower-case suffix; the final name keeps the user's spelling (only the temp file differs)."""
    lower = name.lower()
    for double in DOUBLE_SUFFIXES:
        if lower.endswith(double):
            return double
    return Path(lower).suffix


def free_space_text(path: str | os.PathLike) -> str:
    """``"12.0 kB free"`` for the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return "free space unknown"  # pragma: no cover


def os_error(exc: OSError, path: str | os.PathLike | None = None, doing: str = "write") -> HNTumorSegError:
    """One-line error for an ``OSError`` while ``doing`` something to ``path``.

    A full disk or quota (ENOSPC, EDQUOT), an I/O error: :class:`EnvironmentFault` (exit 1) with
    the free space. Anything the user can change (permissions, read-only file system, a name
    too long, a folder in the way, a missing folder): :class:`InputError` (exit 2).
    """
    where = path if path is not None else (exc.filename or None)
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in FULL_DISK_ERRNOS:
        return EnvironmentFault(f"cannot {doing}: {text} ({free_space_text(where or '.')})", where,
                                "free disk space or write to another disk; earlier outputs were kept")
    if exc.errno in ENVIRONMENT_ERRNOS:
        return EnvironmentFault(f"cannot {doing}: {text}", where, "check the disk or network share and try again")
    fixes = {errno.EROFS: "the file system is read-only: choose a writable folder",
             errno.EACCES: "choose a folder you can write to, or fix its permissions",
             errno.EPERM: "choose a folder you can write to, or fix its permissions",
             errno.ENAMETOOLONG: "use a shorter file name (at most 255 bytes) and path",
             errno.EISDIR: "give a file name, not a folder",
             errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
             errno.ENOENT: "check the path"}
    return InputError(f"cannot {doing}: {text}", where, fixes.get(exc.errno, "check the path and the disk"))


def check_name_length(path: str | os.PathLike, what: str = "output") -> None:
    """InputError when a path's name or whole length passes what the file system takes."""
    p = Path(path)
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise InputError(f"the {what} file name is {len(os.fsencode(p.name))} bytes long (at most {NAME_MAX})",
                         str(p)[:80] + "...", "use a shorter file name")
    limit = 4096
    try:
        folder = p.parent if p.parent.exists() else Path(".")
        limit = os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        pass
    if len(os.fsencode(str(p.absolute()))) >= limit:
        raise InputError(f"the {what} path is longer than the system's limit of {limit} bytes",
                         str(p)[:80] + "...", "use a shorter path")


_LIVE_TEMPS: set[Path] = set()
_LIVE_DIRS: set[Path] = set()   # folders of temp_folder() not yet removed by their owner
_LIVE_LOCK = threading.Lock()


def _temp_prefix(final: Path, suffix: str) -> str:
    prefix = f".{final.name}.{os.getpid()}."
    if len(os.fsencode(prefix + suffix)) + 8 > NAME_MAX:  # mkstemp adds 8 random characters
        prefix = f".hntumorseg.{os.getpid()}."
    return prefix


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (psutil: ``os.kill(pid, 0)`` would terminate it on Windows)."""
    try:
        import psutil

        return psutil.pid_exists(pid)
    except Exception:  # no psutil: assume alive, never remove another process's file
        return True


def sweep_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files beside ``path`` left by a process that no longer exists (SIGKILL).

    Only names this module makes are touched: ``.<name>.<pid>.<8 random><suffix>`` and
    ``.hntumorseg.<pid>.<8 random><suffix>``, and only when no process ``<pid>`` is alive.
    """
    final = Path(path)
    removed = []
    for pattern in (f".{final.name}.*", ".hntumorseg.*"):
        try:
            candidates = list(final.parent.glob(glob_escape(pattern)))
        except OSError:
            return removed
        for cand in candidates:
            head = ".hntumorseg." if pattern.startswith(".hntumorseg") else f".{final.name}."
            pid_text = cand.name[len(head):].split(".", 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
                try:
                    cand.unlink()
                    removed.append(cand)
                except OSError:
                    pass
    return removed


def glob_escape(pattern: str) -> str:
    """Escape glob's special characters in a file name, keeping a trailing ``*``."""
    import glob

    star = pattern.endswith("*")
    return glob.escape(pattern[:-1] if star else pattern) + ("*" if star else "")


def temp_beside(path: str | os.PathLike) -> Path:
    """An empty temporary file in ``path``'s folder (created), with ``path``'s whole extension.

    For writers that stage several files and publish them together (:func:`publish`). Its name
    carries this process's id, so a later run can remove what a killed one left
    (:func:`sweep_stale_temps`), and the worker's parent watcher removes this process's own
    (:func:`remove_live_temps`) before it exits hard.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temps(final)
        suffix = _suffix(final.name)
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(final, suffix), suffix=suffix, dir=final.parent)
    except OSError as exc:
        raise os_error(exc, final) from None
    os.close(fd)
    with _LIVE_LOCK:
        _LIVE_TEMPS.add(Path(name))
    return Path(name)


def temp_folder(prefix: str, dir: str | os.PathLike | None = None) -> Path:
    """A new private temporary folder (``tempfile.mkdtemp``), remembered until its owner removes it
    (:func:`forget_temp_folder`). Why: a client's folder (a worker run's, a session's, an outcome
    run's) holds copies of patient images, and a process stopped hard - a command whose own client
    died (:func:`HNTumorSegLib.worker.exit_orphaned`) - gets no chance to run its owners' clean-up;
    :func:`remove_live_temps` removes what is still remembered then."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    with _LIVE_LOCK:
        _LIVE_DIRS.add(folder)
    return folder


def forget_temp_folder(folder: str | os.PathLike) -> None:
    """Its owner removed ``folder`` (or handed it on): :func:`remove_live_temps` leaves it alone."""
    with _LIVE_LOCK:
        _LIVE_DIRS.discard(Path(folder))


def remove_temp_folder(folder: str | os.PathLike, background: bool = False) -> None:
    """Its owner's clean-up of a :func:`temp_folder`: remove it and forget it in one call, so no
    owner removes one and forgets to forget the other.

    ``background=True`` is for a GUI thread (Slicer's poll tick that sees a job end): deleting a
    clinical case's hand-off files (about 225 MB at 300x512x512) held that tick 0.13-0.23 s. The
    folder is renamed at once to a hidden sibling (``.<name>.removing``; the name the caller knew is
    gone before this returns) and deleted by a non-daemon thread, which the interpreter waits for at
    exit; a hard exit before then still removes it (it stays on the :func:`remove_live_temps` list)."""
    folder = Path(folder)
    if background and folder.is_dir():
        doomed = folder.with_name(f".{folder.name}.removing")
        try:
            os.rename(folder, doomed)
        except OSError:
            doomed = folder               # cannot rename: remove it here, as without background
        else:
            with _LIVE_LOCK:
                _LIVE_DIRS.discard(folder)
                _LIVE_DIRS.add(doomed)

            def remove() -> None:
                shutil.rmtree(doomed, ignore_errors=True)
                forget_temp_folder(doomed)

            threading.Thread(target=remove, name="hntumorseg-remove-temp", daemon=False).start()
            return
    shutil.rmtree(folder, ignore_errors=True)
    forget_temp_folder(folder)


@contextmanager
def removed_on_hard_exit(path: str | os.PathLike) -> Iterator[Path]:
    """Remember ``path`` - a file this process is writing in place that is not an output yet, such
    as a download's ``.part`` - for the block, so that a hard exit inside it (the orphan's,
    :func:`remove_live_temps`) removes it. Why: ``os._exit`` skips the owner's clean-up, and a
    ``.part`` of gigabytes would stay. At a normal end the owner decides (rename it, delete it,
    keep it to resume) and the path is forgotten; once :data:`STOP` is set (the client died) it
    stays remembered even when the block unwinds, so the orphan's exit still removes it."""
    p = Path(path)
    with _LIVE_LOCK:
        _LIVE_TEMPS.add(p)
    try:
        yield p
    finally:
        if not STOP.is_set():
            with _LIVE_LOCK:
                _LIVE_TEMPS.discard(p)


def remove_live_temps() -> None:
    """Remove every temporary file this process made and has not published (and every path of
    :func:`removed_on_hard_exit`), and every folder of :func:`temp_folder` still remembered: the one
    clean-up registry of a hard exit (:func:`HNTumorSegLib.worker.exit_orphaned`)."""
    with _LIVE_LOCK:
        temps, folders = list(_LIVE_TEMPS), list(_LIVE_DIRS)
        _LIVE_TEMPS.clear()
        _LIVE_DIRS.clear()
    for tmp in temps:
        try:
            tmp.unlink()
        except OSError:
            pass
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to the disk; errors surface now, not after 'success'."""
    is_dir = Path(path).is_dir()
    if is_dir and os.name == "nt":   # Windows cannot open a folder for fsync; NTFS journals the rename
        return
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if is_dir else (os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except OSError:
        if is_dir:   # some file systems refuse to open folders: the rename itself still happened
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.EBADF):  # folders that cannot be synced
            raise
    finally:
        os.close(fd)


def verify_nonempty(tmp: Path, final: str | os.PathLike) -> None:
    """EnvironmentFault when the written temporary file is empty (a full disk's usual trace)."""
    size = tmp.stat().st_size
    if size <= 0:
        raise EnvironmentFault(f"the file came out empty ({free_space_text(tmp.parent)})", final,
                               "free disk space or write to another disk; earlier outputs were kept")


def publish(tmp: str | os.PathLike, path: str | os.PathLike, verify: Verify | None = None) -> Path:
    """fsync and check a finished temporary file, give it the usual permissions, rename it over ``path``.

    ``verify(tmp)`` is the caller's read-back check (raise to refuse). Raises
    :class:`PublishingStopped` after :data:`STOP` is set, and the one-line errors of
    :func:`os_error` for an ``OSError``. The temporary file is left for the caller to remove.
    """
    tmp, final = Path(tmp), Path(path)
    if STOP.is_set():
        raise PublishingStopped("the client went away: nothing is published")
    try:
        fsync_path(tmp)
        verify_nonempty(tmp, final)
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, _default_mode())
        if STOP.is_set():
            raise PublishingStopped("the client went away: nothing is published")
        os.replace(tmp, final)
        with _LIVE_LOCK:
            _LIVE_TEMPS.discard(tmp)
        fsync_path(final.parent)
    except OSError as exc:
        raise os_error(exc, final) from None
    return final


@contextmanager
def atomic_path(path: str | os.PathLike, verify: Verify | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; publish it over ``path`` when the block succeeds.

    The parent folder is created. On any exception (KeyboardInterrupt included) the temporary
    file is removed and ``path`` is left as it was; an ``OSError`` inside the block becomes
    the one-line error of :func:`os_error`.
    """
    tmp = temp_beside(path)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise os_error(exc, path) from None
        publish(tmp, path, verify)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path; read back to verify."""
    expected = text.encode("utf-8") if newline in (None, "", "\n") and os.linesep == "\n" else None

    def same_text(tmp: Path) -> None:
        if expected is not None and tmp.read_bytes() != expected:
            raise EnvironmentFault(f"the file reads back different from what was written "
                                   f"({free_space_text(tmp.parent)})", path, "check the disk and try again")

    with atomic_path(path, verify=same_text) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 2, **kwargs: Any) -> Path:
    """Write ``data`` as strict JSON (one trailing newline) to ``path`` atomically.

    Strict: ``allow_nan=False`` always, so a NaN or infinity that slipped through raises
    ``ValueError`` before anything is written, instead of a file with bare ``NaN`` that other
    JSON readers refuse (issue 22). Callers turn undefined scores into ``None`` first.
    """
    kwargs.pop("allow_nan", None)
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False, **kwargs) + "\n")


#: Deepest nesting of brackets accepted in any JSON a user gives (no file of ours nests past ~10).
#: Python's decoder recurses per level and would raise RecursionError (a traceback, or a session
#: that ends) near 1,000 levels; a limit far below that keeps every reader one clear line.
JSON_MAX_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub('""', text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large (not finite)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 308:   # would overflow every float it is later turned into
        raise ValueError(f"the number {text[:40]}... is too large")
    return int(text)


def loads_json(text: str | bytes, what: str = "JSON", path: str | os.PathLike | None = None,
               fix: str | None = None, max_depth: int = JSON_MAX_DEPTH,
               error: type[InputError] = InputError, finite: bool = True) -> Any:
    """Parse JSON a user gave (a file or a session line): the one reader for every such text.

    Strict where Python's ``json`` is lax: ``NaN``/``Infinity`` tokens and numbers that overflow
    to infinity (``1e400``) are refused, and nesting deeper than ``max_depth`` is refused before
    the decoder recurses. Any problem is an :class:`InputError` (a ``ValueError``) naming
    ``what`` and ``path``, so a caller shows one line or one error event and carries on
    (``error``: the subclass to raise, e.g. ``ModelError`` for model files). ``finite=False``
    keeps ``NaN``/``Infinity``/``1e400`` as floats for a caller that checks each field itself and
    names it (clinical values: "patient P: Age is not a finite number").
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise error(f"{what} is not UTF-8 text", path, fix or "save it as UTF-8 JSON") from None
    fix = fix or "write valid JSON"
    deepest = json_depth(text) if text.count("[") + text.count("{") > max_depth else 0
    if deepest > max_depth:
        raise error(f"{what} is nested {deepest} levels deep (at most {max_depth})", path, fix)
    try:
        if not finite:
            return json.loads(text)
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:   # the scan above should have caught it; a deep caller stack might not
        raise error(f"{what} is nested too deeply", path, fix) from None
    except ValueError as exc:
        detail = " ".join(str(exc).split())[:120]
        raise error(f"{what} is not valid JSON ({detail})", path, fix) from None


def read_json(path: str | os.PathLike, what: str = "JSON file", fix: str | None = None,
              max_depth: int = JSON_MAX_DEPTH, error: type[InputError] = InputError) -> Any:
    """:func:`loads_json` of a file (UTF-8, a BOM allowed); an unreadable file is one line too."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise os_error(exc, path, doing=f"read the {what}") from None
    return loads_json(raw, what, path, fix, max_depth, error)
