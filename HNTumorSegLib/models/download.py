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

Choice: a catalogue entry without a published sha256 is not installed unless the user
gives one (``--sha256``) after checking the file some other way: a model is code-like
input to a clinical tool and must be the file its authors published.

Example:
    >>> path = download("https://example.org/w.zip", Path("cache/w.zip"), sha256="ab12...",
    ...                 progress=lambda stage, fraction, message: print(message))
"""

from __future__ import annotations

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
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import ModelError
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


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def progress_message(done: int, total: int | None, started: float, done_at_start: int) -> tuple[float, str]:
    """(fraction, "12.0 MB / 40.0 MB, 30%, 8 s left") for a download in progress."""
    if not total:
        return 0.0, f"{_fmt_bytes(done)} received"
    fraction = min(done / total, 1.0)
    rate = (done - done_at_start) / max(time.monotonic() - started, 1e-6)
    left = (total - done) / rate if rate > 0 else float("inf")
    left_text = f"{left:.0f} s left" if left != float("inf") else "time left unknown"
    return fraction, f"{_fmt_bytes(done)} / {_fmt_bytes(total)}, {fraction:.0%}, {left_text}"


def download(url: str, dest: Path, sha256: str | None, progress: Progress | None = None,
             retries: int = 5, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify sha256, return ``dest``."""
    if not url.lower().startswith(("https://", "http://")):
        raise ModelError(f"refusing to download from {url!r} (only http and https)", None, "fix the catalogue entry")
    dest = Path(dest)
    check_cache_writable(dest.parent)
    part = dest.with_name(dest.name + ".part")
    progress = progress or (lambda stage, fraction, message: None)
    attempt = 0
    while True:
        try:
            if _fetch_once(url, part, progress, timeout):
                break
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


def _fetch_once(url: str, part: Path, progress: Progress, timeout: float) -> bool:
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
        with open(part, mode) as fh:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                fh.write(block)
                have += len(block)
                if time.monotonic() - last > 0.2:
                    last = time.monotonic()
                    progress("download", *progress_message(have, total, started, at_start))
        progress("download", *progress_message(have, total, started, at_start))
    return total is None or have >= total


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
        return f"unpacks to more than {_fmt_bytes(max_bytes)}"
    packed = max(archive.stat().st_size, 1)
    if unpacked > RATIO_FLOOR_BYTES and unpacked / packed > max_ratio:
        return f"unpacks to {_fmt_bytes(unpacked)} from {_fmt_bytes(packed)} (more than {max_ratio:g}:1, a zip bomb?)"
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
            names.append(str(pure))
        target.mkdir(parents=True, exist_ok=False)
        written = 0
        for info in infos:
            out = target / PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                while True:
                    block = src.read(CHUNK)
                    if not block:
                        break
                    written += len(block)
                    problem = _too_big(archive, written, max_bytes, max_ratio)
                    if problem:
                        raise ModelError(f"archive {problem}; refused", archive, fix)
                    dst.write(block)
    return names


def fetch(entry: CatalogueEntry, cache: str | Path | None = None, sha256: str | None = None,
          progress: Progress | None = None, force: bool = False, url: str | None = None) -> Path:
    """Install a catalogue model into the cache; returns its folder (see the module docstring).

    ``url`` replaces the entry's (for entries that publish a release page, not a file link);
    it needs ``sha256``, since the catalogue's checksum (if any) is for the catalogue's URL.
    """
    if entry.bundled:
        return (Path(__file__).resolve().parents[1] / entry.path).resolve()
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
        entry = CatalogueEntry(**{**{k: getattr(entry, k) for k in entry.__dataclass_fields__},
                                  "url": url, "sha256": None, "filename": None})
    if not entry.url:
        raise ModelError(f"model {entry.id!r} has no direct download link (see {entry.homepage})", None,
                         "download the release asset's URL from that page and pass --url URL --sha256 HEX")
    expected = sha256 or entry.sha256
    if not expected:
        raise ModelError(f"model {entry.id!r} has no published sha256, so its download cannot be verified", None,
                         "check the file with its authors and pass --sha256 HEX to fetch it anyway")
    if sha256 and entry.sha256 and sha256.lower() != entry.sha256.lower():
        raise ModelError(f"--sha256 differs from the catalogue's for {entry.id!r}", None,
                         "leave --sha256 out to use the catalogue's checksum")
    final = install_dir(entry.id, cache)
    if (final / COMPLETE_MARKER).is_file() and not force:
        return final
    downloads = cache_dir(cache) / "downloads"
    check_cache_writable(downloads)
    filename = entry.filename or PurePosixPath(entry.url.split("?")[0]).name or f"{entry.id}.bin"
    file = download(entry.url, downloads / filename, expected, progress)
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
            {"id": entry.id, "url": entry.url, "sha256": expected, "files": files}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def verify_installed(entry: CatalogueEntry, cache: str | Path | None = None) -> list[str]:
    """Re-hash an installed model's files against its install manifest; returns problems."""
    folder = install_dir(entry.id, cache)
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        raise ModelError(f"model {entry.id!r} is not installed", None, f"run: hntumorseg models fetch {entry.id}")
    manifest = json.loads(marker.read_text())
    problems = []
    for rel, digest in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: changed since it was installed")
    return problems
