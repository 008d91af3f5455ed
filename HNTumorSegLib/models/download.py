"""Downloading catalogue models: resume, progress, checksum, safe unpacking.

Only ``hntumorseg models fetch`` calls this; nothing else in HNTumorSeg opens a network
connection. A download goes to ``<name>.part`` and resumes with an HTTP ``Range`` request
after a dropped connection (or an interrupted run); a server that ignores ranges gets a
fresh download. The finished file's sha256 must equal the catalogue's (or the one the
user passes): a mismatch deletes the file and raises :class:`ModelError` (exit 2).
Archives are unpacked into a staging folder, refusing absolute paths, ``..``, links, and
archives that unpack too big, too many files or at a zip-bomb ratio (:func:`unpack_limits`),
then moved into place, so an install is either complete or absent. A ``--sha256`` that is not
64 hex characters is refused before any download; a read-only or unwritable cache is one line
(exit 2), never a traceback.

Size cap and full disk (issue 22): a download stops, and its ``.part`` is deleted, once it passes
:func:`size_cap` - the catalogue's ``size_bytes`` or the server's ``Content-Length`` (whichever is
smaller) plus a margin, else ``HNTUMORSEG_MAX_DOWNLOAD_BYTES`` (default 64 GiB): a server that
sends more than it announced must not fill the disk (ModelError, exit 2). A full disk or quota
while writing is the machine's fault, not the connection's: no retry, the ``.part`` is deleted (a
kept one would keep the disk full), and one line names the path and the free space
(:class:`~HNTumorSegLib.errors.EnvironmentFault`, exit 1). Zip members the unpacker cannot read
(bad CRC, a size that lies, encryption, deflate64 and other methods) are one ModelError line.

Choice: a catalogue entry without a published sha256 is not installed unless the user
gives one (``--sha256``) after checking the file some other way: a model is code-like
input to a clinical tool and must be the file its authors published.

Example:
    >>> import functools, hashlib, http.server, threading     # a local web server stands in for the host
    >>> _ = Path("site").mkdir(), Path("site/w.zip").write_bytes(b"weights")
    >>> class Quiet(http.server.SimpleHTTPRequestHandler):
    ...     def log_message(self, *args): pass
    >>> server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory="site"))
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> url = f"http://127.0.0.1:{server.server_port}/w.zip"
    >>> path = download(url, Path("cache/w.zip"), sha256=hashlib.sha256(b"weights").hexdigest(),
    ...                 progress=lambda stage, fraction, message: print(message))
    7 B / 7 B, 100%, 0 s left
    ...
    checking sha256
    >>> path, path.read_bytes()
    (PosixPath('cache/w.zip'), b'weights')
    >>> download(url, Path("cache/other.zip"), sha256="0" * 64)     # not the published file: deleted, exit 2
    Traceback (most recent call last):
    HNTumorSegLib.errors.ModelError: http://127.0.0.1:...: checksum mismatch: got sha256 9a129038d9a00aed..., ...
    >>> server.shutdown()
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import shutil
import stat
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import ModelError
from ..fileio import FULL_DISK_ERRNOS, os_error, read_json, removed_on_hard_exit
from .catalogue import COMPLETE_MARKER, CatalogueEntry, cache_dir, install_dir
from .weights import sha256_file

Progress = Callable[[str, float, str], None]
CHUNK = 1 << 16
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def check_cache_writable(folder: Path) -> None:
    """Create ``folder`` (in the model cache) or say in one line why not: read-only, no permission."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ModelError(f"cannot write the model cache ({exc.strerror or exc})", folder,
                         "give a writable folder with --cache DIR (or set HNTUMORSEG_CACHE)") from None


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def progress_message(done: int, total: int | None, started: float, done_at_start: int) -> tuple[float, str]:
    """(fraction, "12.0 MB / 40.0 MB, 30%, 8 s left") for a download in progress."""
    if not total:
        return 0.0, f"{fmt_bytes(done)} received"
    fraction = min(done / total, 1.0)
    rate = (done - done_at_start) / max(time.monotonic() - started, 1e-6)
    left = (total - done) / rate if rate > 0 else float("inf")
    left_text = f"{left:.0f} s left" if left != float("inf") else "time left unknown"
    return fraction, f"{fmt_bytes(done)} / {fmt_bytes(total)}, {fraction:.0%}, {left_text}"


#: Extra bytes allowed past an announced size (catalogue ``size_bytes`` or ``Content-Length``).
SIZE_MARGIN_BYTES = 1 << 20
SIZE_MARGIN_FRACTION = 0.01


def size_cap(*announced: int | None) -> int:
    """The most bytes a download may reach: the smallest announced size plus a margin (1 MiB or
    1 %, the larger), else ``HNTUMORSEG_MAX_DOWNLOAD_BYTES`` (default 64 GiB)."""
    known = [int(n) for n in announced if n is not None and int(n) >= 0]
    if known:
        size = min(known)
        return size + max(SIZE_MARGIN_BYTES, int(size * SIZE_MARGIN_FRACTION))
    raw = os.environ.get("HNTUMORSEG_MAX_DOWNLOAD_BYTES", str(64 * 2 ** 30))
    try:
        cap = int(float(raw))
    except ValueError:
        cap = 0
    if cap <= 0:
        raise ModelError(f"HNTUMORSEG_MAX_DOWNLOAD_BYTES={raw[:40]!r} is not a positive number", None,
                         "unset it or give a byte count")
    return cap


class _LocalWriteFailed(Exception):
    """Writing the ``.part`` failed (not the connection): carries the one-line error to raise."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def download(url: str, dest: Path, sha256: str | None, progress: Progress | None = None,
             retries: int = 5, timeout: float = 30.0, expected_size: int | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify sha256, return ``dest``.

    ``expected_size``: the catalogue's size; with the server's ``Content-Length`` it sets the
    size cap (module docstring). A full disk deletes the ``.part`` and raises EnvironmentFault.
    A download stopped because its client died (the parent watch of ``hntumorseg models fetch``
    started by Slicer) leaves no ``.part``: it is on the hard exit's clean-up list meanwhile.
    """
    dest = Path(dest)
    with removed_on_hard_exit(dest.with_name(dest.name + ".part")):
        return _download(url, dest, sha256, progress, retries, timeout, expected_size)


def _download(url: str, dest: Path, sha256: str | None, progress: Progress | None, retries: int, timeout: float,
              expected_size: int | None) -> Path:
    if not url.lower().startswith(("https://", "http://")):
        raise ModelError(f"refusing to download from {url!r} (only http and https)", None, "fix the catalogue entry")
    dest = Path(dest)
    check_cache_writable(dest.parent)
    part = dest.with_name(dest.name + ".part")
    progress = progress or (lambda stage, fraction, message: None)
    attempt = 0
    while True:
        try:
            if _fetch_once(url, part, progress, timeout, expected_size):
                break
        except _LocalWriteFailed as exc:   # the disk, not the connection: no retry
            part.unlink(missing_ok=True)
            raise exc.error from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (408, 429, 500, 502, 503, 504):
                raise ModelError(f"download failed: HTTP {exc.code} {exc.reason}", url,
                                 "check the URL or try again later") from None
            attempt += 1
            if attempt > retries:
                raise ModelError(f"download failed after {retries} retries ({exc})", url,
                                 "check the connection and run fetch again: it resumes where it stopped") from None
            progress("download", 0.0, f"connection lost ({type(exc).__name__}), resuming (retry {attempt})")
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
            continue
        attempt += 1  # the connection closed before the end without an error: resume
        if attempt > retries:
            raise ModelError(f"download incomplete after {retries} retries", url, "run fetch again: it resumes")
        progress("download", 0.0, f"connection closed early, resuming (retry {attempt})")
    if sha256:
        progress("verify", 1.0, "checking sha256")
        actual = sha256_file(part)
        if actual.lower() != sha256.lower():
            part.unlink(missing_ok=True)
            raise ModelError(f"checksum mismatch: got sha256 {actual[:16]}..., expected {sha256[:16]}...; "
                             "the file was deleted", url, "the download is damaged or not the published file; "
                             "try again, and report it if it persists")
    os.replace(part, dest)
    return dest


def _fetch_once(url: str, part: Path, progress: Progress, timeout: float, expected_size: int | None = None) -> bool:
    """One HTTP request continuing ``part``; True when the whole file is there."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "hntumorseg", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range past the end: we already have everything
            return True
        raise
    with response:
        total = None
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            start = int(content_range.split(" ")[1].split("-")[0]) if content_range.startswith("bytes ") else -1
            if start != have:  # not the range asked for: restart cleanly
                have = 0
                part.unlink(missing_ok=True)
                return False
            if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
                total = int(content_range.rsplit("/", 1)[1])
            mode = "ab"
        else:  # 200: the server sends the whole file (no range support)
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        started, at_start, last = time.monotonic(), have, 0.0
        cap = size_cap(expected_size, total)
        fh = _local(lambda: open(part, mode), part)
        try:
            while True:
                block = response.read(CHUNK)   # connection errors go up to be retried
                if not block:
                    break
                if have + len(block) > cap:
                    _local(fh.close, part)
                    part.unlink(missing_ok=True)
                    announced = [n for n in (expected_size, total) if n is not None]
                    what = f"more than announced ({fmt_bytes(min(announced))})" if announced else "the limit"
                    raise ModelError(f"the download passed {fmt_bytes(cap)}, {what}; stopped and deleted", url,
                                     "the server sends more than it should: do not use it "
                                     "(or raise HNTUMORSEG_MAX_DOWNLOAD_BYTES)")
                _local(lambda: fh.write(block), part)
                have += len(block)
                if time.monotonic() - last > 0.2:
                    last = time.monotonic()
                    progress("download", *progress_message(have, total, started, at_start))
        finally:
            if not fh.closed:
                _local(fh.close, part)   # flushes: a full disk may show only here
        progress("download", *progress_message(have, total, started, at_start))
    return total is None or have >= total


def _local(action: Callable, part: Path):
    """Run a write to the ``.part``; its OSError is the disk's (one line, never retried as the connection's)."""
    try:
        return action()
    except OSError as exc:
        raise _LocalWriteFailed(os_error(exc, part, "write the download")) from None


def unpack_limits() -> tuple[int, int, float]:
    """(max unpacked bytes, max members, max compression ratio) for :func:`safe_unzip`.

    Configurable with ``HNTUMORSEG_MAX_UNPACK_BYTES`` (default 64 GiB: five nnU-Net folds with
    their plans are a few GB), ``HNTUMORSEG_MAX_UNPACK_MEMBERS`` (default 10000) and
    ``HNTUMORSEG_MAX_UNPACK_RATIO`` (default 100). Choice: the ratio limit is what stops a zip
    bomb (306 KB -> 300 MB is 1000:1); network weights are nearly incompressible (about 1.1:1),
    so 100:1 never refuses a real model. The ratio is checked only past 16 MiB unpacked.
    """
    def env(name: str, default: float) -> float:
        try:
            value = float(os.environ.get(name, default))
        except ValueError:
            raise ModelError(f"{name} is not a number", None, f"unset it or give a number (default {default:g})") from None
        if value <= 0:
            raise ModelError(f"{name} must be positive", None, f"unset it or give a number (default {default:g})")
        return value

    return (int(env("HNTUMORSEG_MAX_UNPACK_BYTES", 64 * 2 ** 30)), int(env("HNTUMORSEG_MAX_UNPACK_MEMBERS", 10000)),
            env("HNTUMORSEG_MAX_UNPACK_RATIO", 100.0))


RATIO_FLOOR_BYTES = 16 * 2 ** 20


def _too_big(archive: Path, unpacked: int, max_bytes: int, max_ratio: float) -> str | None:
    if unpacked > max_bytes:
        return f"unpacks to more than {fmt_bytes(max_bytes)}"
    packed = max(archive.stat().st_size, 1)
    if unpacked > RATIO_FLOOR_BYTES and unpacked / packed > max_ratio:
        return f"unpacks to {fmt_bytes(unpacked)} from {fmt_bytes(packed)} (more than {max_ratio:g}:1, a zip bomb?)"
    return None


def safe_unzip(archive: Path, target: Path, max_bytes: int | None = None, max_members: int | None = None,
               max_ratio: float | None = None) -> list[str]:
    """Unpack ``archive`` into the new folder ``target``; refuse traversal, links and archives that
    unpack too big or into too many files (:func:`unpack_limits`; checked on the declared sizes
    first, then on the bytes actually written, since a header can lie)."""
    limits = unpack_limits()
    max_bytes = limits[0] if max_bytes is None else max_bytes
    max_members = limits[1] if max_members is None else max_members
    max_ratio = limits[2] if max_ratio is None else max_ratio
    fix = "the archive is unsafe or not a model: do not use it (or raise the HNTUMORSEG_MAX_UNPACK_* limits)"
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise ModelError("is not a valid zip archive", archive, "fetch the model again") from None
    names = []
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise ModelError(f"archive holds {len(infos)} members (limit {max_members})", archive, fix)
        problem = _too_big(archive, sum(i.file_size for i in infos), max_bytes, max_ratio)
        if problem:
            raise ModelError(f"archive {problem}; refused", archive, fix)
        for info in infos:
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
                raise ModelError(f"archive member {name!r} would be written outside the model folder; refused",
                                 archive, "the archive is unsafe: do not use it")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ModelError(f"archive member {name!r} is a link; refused", archive,
                                 "the archive is unsafe: do not use it")
            _check_readable(info, archive)
            names.append(str(pure))
        target.mkdir(parents=True, exist_ok=False)
        written = 0
        for info in infos:
            out = target / PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                member_bytes = 0
                with zf.open(info) as src, open(out, "wb") as dst:
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        member_bytes += len(block)
                        written += len(block)
                        problem = _too_big(archive, written, max_bytes, max_ratio)
                        if problem:
                            raise ModelError(f"archive {problem}; refused", archive, fix)
                        dst.write(block)
                if member_bytes != info.file_size:   # a stored member's header can lie where no CRC sees it
                    raise zipfile.BadZipFile(f"its header says {info.file_size} bytes, it holds {member_bytes}")
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, RuntimeError,
                    NotImplementedError) as exc:   # bad CRC, a size that lies, truncated data
                reason = " ".join(str(exc).split())[:100] or type(exc).__name__
                raise ModelError(f"archive member {info.filename[:100]!r} is damaged ({reason})", archive,
                                 "download the archive again; if it persists, the file is corrupt") from None
    return names


#: Compression methods Python's zipfile unpacks (deflate64, 9, and others are refused up front).
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                    zipfile.ZIP_LZMA: "lzma"}


def _check_readable(info: zipfile.ZipInfo, archive: Path) -> None:
    """ModelError for a member that cannot be unpacked: encrypted, or a compression method Python lacks."""
    name = info.filename[:100]
    if info.flag_bits & 0x1:
        raise ModelError(f"archive member {name!r} is encrypted; refused", archive,
                         "unpack it with its password yourself and import the folder")
    if info.compress_type not in READABLE_METHODS:
        method = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 99: "AES"}.get(info.compress_type,
                                                                                      f"method {info.compress_type}")
        raise ModelError(f"archive member {name!r} is compressed with {method}, which cannot be unpacked here",
                         archive, "unpack it with another tool and import the folder, or re-zip it with deflate")


def fetch(entry: CatalogueEntry, cache: str | Path | None = None, sha256: str | None = None,
          progress: Progress | None = None, force: bool = False, url: str | None = None) -> Path:
    """Install a catalogue model into the cache; returns its folder (see the module docstring).

    ``url`` replaces the entry's (for entries that publish a release page, not a file link);
    it needs ``sha256``, since the catalogue's checksum (if any) is for the catalogue's URL.
    """
    if entry.bundled:
        return (Path(__file__).resolve().parents[1] / str(entry.bundled_path)).resolve()
    if entry.kind == "source-only":
        raise ModelError(f"model {entry.id!r} publishes code, not weights", None,
                         f"see {entry.homepage or entry.url}: train it with the authors' code, "
                         "then give the results folder to --model")
    if sha256 is not None and not SHA256_HEX.fullmatch(sha256.strip()):
        raise ModelError(f"--sha256 {sha256[:20]!r} is not a sha256 (64 hexadecimal characters)", None,
                         "copy the whole checksum, e.g. from `sha256sum FILE`")   # before any download
    if url and not sha256:
        raise ModelError("--url needs --sha256", None, "give the checksum of the file at that URL")
    if url:
        entry = dataclasses.replace(entry, url=url, download_sha256=None, filename=None)
    if not entry.url:
        raise ModelError(f"model {entry.id!r} has no direct download link (see {entry.homepage})", None,
                         "download the release asset's URL from that page and pass --url URL --sha256 HEX")
    expected = sha256 or entry.download_sha256
    if not expected:
        raise ModelError(f"model {entry.id!r} has no published sha256, so its download cannot be verified", None,
                         "check the file with its authors and pass --sha256 HEX to fetch it anyway")
    if sha256 and entry.download_sha256 and sha256.lower() != entry.download_sha256.lower():
        raise ModelError(f"--sha256 differs from the catalogue's for {entry.id!r}", None,
                         "leave --sha256 out to use the catalogue's checksum")
    final = install_dir(entry.id, cache)
    if (final / COMPLETE_MARKER).is_file() and not force:
        return final
    downloads = cache_dir(cache) / "downloads"
    check_cache_writable(downloads)
    filename = entry.filename or PurePosixPath(entry.url.split("?")[0]).name or f"{entry.id}.bin"
    file = download(entry.url, downloads / filename, expected, progress, expected_size=entry.size_bytes)
    staging = final.with_name(final.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if entry.archive == "zip" or (entry.archive is None and filename.lower().endswith(".zip")):
            if progress:
                progress("unpack", 1.0, f"unpacking {filename}")
            safe_unzip(file, staging)
            file.unlink()
        else:
            staging.mkdir(parents=True)
            os.replace(file, staging / filename)
        files = {str(p.relative_to(staging)): sha256_file(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        (staging / COMPLETE_MARKER).write_text(json.dumps(
            {"id": entry.id, "url": entry.url, "sha256": expected, "files": files}, indent=1, allow_nan=False))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def verify_installed(entry: CatalogueEntry | str, cache: str | Path | None = None) -> list[str]:
    """Re-hash an installed model's files against its install manifest; returns problems.

    ``entry``: a catalogue entry, or the id of a model imported without one (``models import``
    writes the same manifest, so ``models verify`` checks every id ``models list`` shows)."""
    model_id = entry if isinstance(entry, str) else entry.id
    folder = install_dir(model_id, cache)
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        raise ModelError(f"model {model_id!r} is not installed", None, f"run: hntumorseg models fetch {model_id}")
    manifest = read_json(marker, "install manifest", f"run: hntumorseg models fetch {model_id}", error=ModelError)
    problems = []
    for rel, digest in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: changed since it was installed")
    return problems
