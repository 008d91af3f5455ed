"""Fetching a catalogue model from the Hugging Face hub, at a pinned revision, every file's sha256 checked.

Used by ``hntumorseg models fetch ID`` for entries with a ``hub`` block::

    "hub": {"repo_id": "JintaoRen/GradientSegHNTS", "revision": "<40-hex commit>",
            "folder": "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres_bs8", "sha256": {...}}

What happens, in order:

1. the revision must be a full commit hash (a branch such as ``main`` moves: it is not a pin);
   the catalogue's, or ``--revision`` when the catalogue has none;
2. ``HfApi.model_info(repo_id, revision, files_metadata=True)`` lists the repository's files with
   the hub's own checksums: the LFS sha256 of every large file, the git blob id (sha1 of
   ``"blob <size>\\0" + content``) of every small one; the hub must answer with the same commit;
3. the files under the results folder named ``folder`` (at any depth: the release may nest it in
   ``Dataset504_.../``) are downloaded with ``huggingface_hub.hf_hub_download`` into a staging
   folder of the cache (``local_dir``): it honours ``HF_ENDPOINT``, proxies and ``HF_TOKEN``, and
   resumes a partial file with an HTTP ``Range`` request after a dropped connection (and in a later
   run: the partial file stays until it is complete);
4. every file is hashed and compared with the catalogue's pinned sha256 (where the entry lists
   them) and the hub's (LFS sha256, or the git blob id): one changed byte deletes the whole staging
   folder - nothing is left in the cache - and raises :class:`ModelError` (exit 2);
5. the results folder moves to ``<cache>/models/<id>/<folder>/``, the entry's ``declaration`` is
   written beside ``plans.json``, and ``.complete`` records the commit and every file's sha256
   (``models verify ID`` re-hashes against it).

Sizes and a full disk (issue 22): the files' total (the hub's sizes) must stay within the
catalogue's ``size_bytes`` plus a margin (:func:`.download.size_cap`) and fit the free space of
the cache, else nothing is requested; a file that arrives larger than the hub listed is deleted
with the staging folder. A full disk or quota during a download is not retried as a lost
connection: the staging folder (partial files included) is deleted and one line names the path
and the free space (:class:`~HNTumorSegLib.errors.EnvironmentFault`, exit 1).

Only ``models fetch`` calls this; nothing else touches the network.

Example (command line; it needs the Hugging Face hub - Testing/test_models_published_hub.py runs it
against a local hub server, which is ``fetch_from_hub(get_entry("GradientSegHNTS"), revision=COMMIT)``)::

    $ hntumorseg models fetch GradientSegHNTS --revision 0123456789abcdef0123456789abcdef01234567

Offline, the revision check (step 1) and the checksum of a small file (step 4):
    >>> from pathlib import Path
    >>> from HNTumorSegLib.models.catalogue import get_entry
    >>> entry = get_entry("GradientSegHNTS")                       # the catalogue pins no commit for it
    >>> pinned_revision(entry, "0123456789ABCDEF0123456789abcdef01234567")
    '0123456789abcdef0123456789abcdef01234567'
    >>> pinned_revision(entry, "main")
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.ModelError: revision 'main' is not a 40-character commit hash (a branch or tag moves) - ...
    >>> _ = Path("dataset.json").write_bytes(b"hello\\n")
    >>> git_blob_sha1(Path("dataset.json"))                          # = `git hash-object dataset.json`
    'ce013625030ba8dba906f756967f9e9ca394464a'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import EnvironmentFault, ModelError
from ..fileio import FULL_DISK_ERRNOS, free_space_text, os_error, read_json
from .catalogue import COMPLETE_MARKER, CatalogueEntry, install_dir
from .weights import sha256_file

Progress = Callable[[str, float, str], None]
_COMMIT = re.compile(r"[0-9a-f]{40}")
STAGING_SUFFIX = ".hub-staging"


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (what the hub reports for files not stored in LFS)."""
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pinned_revision(entry: CatalogueEntry, revision: str | None) -> str:
    """The commit to fetch: the catalogue's, or the user's ``--revision`` (must agree when both exist)."""
    hub = entry.hub or {}
    pinned = hub.get("revision")
    if revision and pinned and revision.lower() != pinned.lower():
        raise ModelError(f"--revision {revision} differs from the catalogue's pinned revision {pinned}", None,
                         "leave --revision out to fetch the pinned revision")
    chosen = (revision or pinned or "").lower()
    if not chosen:
        raise ModelError(f"model {entry.id!r} has no pinned revision in this catalogue (it could not be verified "
                         "when the catalogue was written)", None,
                         f"open https://huggingface.co/{hub.get('repo_id')}/commits/main, check the commit with the "
                         f"authors, and run: hntumorseg models fetch {entry.id} --revision COMMIT")
    if not _COMMIT.fullmatch(chosen):
        raise ModelError(f"revision {chosen!r} is not a 40-character commit hash (a branch or tag moves)", None,
                         "give the full commit hash shown on the repository's commit history page")
    return chosen


def _files_under(siblings, folder: str) -> tuple[str, list]:
    """(prefix up to and including ``folder``, the sibling files under it)."""
    prefixes = set()
    for s in siblings:
        parts = PurePosixPath(s.rfilename).parts
        if folder in parts[:-1]:
            prefixes.add("/".join(parts[: parts.index(folder) + 1]))
    if len(prefixes) != 1:
        found = sorted({p for s in siblings for p in PurePosixPath(s.rfilename).parts[:-1] if "__" in p})
        what = "no" if not prefixes else f"{len(prefixes)}"
        raise ModelError(f"the hub repository has {what} results folder named {folder!r} (folders: "
                         f"{', '.join(found) or 'none'})", None, "report this: the catalogue entry is out of date")
    prefix = prefixes.pop()
    return prefix, [s for s in siblings if s.rfilename.startswith(prefix + "/")]


def _expected(sibling, pinned: dict) -> tuple[str, str]:
    """(kind, digest) the file must have: catalogue sha256, else hub LFS sha256, else git blob id."""
    if sibling.rfilename in pinned:
        return "sha256", pinned[sibling.rfilename].lower()
    lfs = getattr(sibling, "lfs", None)
    if lfs:
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        if sha:
            return "sha256", str(sha).lower()
    if getattr(sibling, "blob_id", None):
        return "git-blob-sha1", sibling.blob_id.lower()
    raise ModelError(f"the hub gives no checksum for {sibling.rfilename}", None,
                     "the file cannot be verified; report this to the model's authors")


def _download(repo_id: str, name: str, revision: str, staging: Path, endpoint: str | None,
              retries: int, progress: Progress, label: str) -> Path:
    from huggingface_hub import hf_hub_download

    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():   # its free-space warning: a full disk is our one line below
                warnings.filterwarnings("ignore", message="Not enough free disk space")
                return Path(hf_hub_download(repo_id, name, revision=revision, local_dir=staging, endpoint=endpoint))
        except ModelError:
            raise
        except Exception as exc:  # httpx / OSError / hub errors: keep the partial file and resume
            full = _full_disk(exc)
            if full is not None:   # the disk, not the connection: no retry, and free what was written
                shutil.rmtree(staging, ignore_errors=True)
                raise os_error(full, staging, "write the download") from None
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403, 404):
                raise ModelError(f"the hub refused {name} (HTTP {status})", None,
                                 "check the repository is public and the revision exists") from None
            attempt += 1
            if attempt > retries:
                raise ModelError(f"download of {name} failed after {retries} retries ({type(exc).__name__}: {exc})",
                                 None, "check the connection and run fetch again: it resumes where it stopped") from None
            progress("download", 0.0, f"{label}: connection lost ({type(exc).__name__}), resuming (retry {attempt})")
            time.sleep(min(0.2 * 2 ** attempt, 5.0))


def announce_text(entry: CatalogueEntry, n_files: int, total: int) -> str:
    """What a download says before its first byte: size and licence (the panel shows it as the stage line).

    Example:
        >>> from HNTumorSegLib.models.catalogue import get_entry
        >>> text = announce_text(get_entry("GradientSegHNTS"), 9, 250 * 2 ** 20)
        >>> text.split(";")[0], "licence Apache-2.0" in text
        ('GradientSegHNTS: 9 files, 250.0 MB to download', True)
    """
    from .download import fmt_bytes

    return f"{entry.id}: {n_files} files, {fmt_bytes(total)} to download; licence {entry.licence or 'not stated'}"


def _bytes_in(folder: Path) -> int:
    """Bytes under ``folder`` now (complete and partial files: hf_hub_download writes ``*.incomplete`` there)."""
    n = 0
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                n += p.stat().st_size
        except OSError:   # a partial file renamed between listing and stat
            continue
    return n


def _watched(call: Callable[[], Path], staging: Path, done: int, total: int, progress: Progress,
             every_s: float = 0.5) -> Path:
    """Run one file's download in a thread; meanwhile report MB received every ``every_s`` (this thread
    calls ``progress``, so progress lines never interleave). Exceptions come back here as they were."""
    import threading

    from .download import progress_message

    result: dict = {}

    def run() -> None:
        try:
            result["path"] = call()
        except BaseException as exc:   # re-raised below, in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="hntumorseg-hub-download")
    before = _bytes_in(staging) if staging.exists() else 0   # earlier files (and a partial one being resumed)
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        worker.join(every_s)
        if worker.is_alive() and staging.exists():
            have = min(done + max(_bytes_in(staging) - before, 0), total)
            progress("download", *progress_message(have, total, started, done))
    if "error" in result:
        raise result["error"]
    return result["path"]


def _full_disk(exc: BaseException) -> OSError | None:
    """The full-disk ``OSError`` behind ``exc`` (itself, its cause or context), if any."""
    seen = 0
    link: BaseException | None = exc
    while link is not None and seen < 10:
        if isinstance(link, OSError) and link.errno in FULL_DISK_ERRNOS:
            return link
        link, seen = link.__cause__ or link.__context__, seen + 1
    return None


def _check_sizes(entry: CatalogueEntry, files: list, where: Path) -> None:
    """Refuse before any request: more than the catalogue's size (plus a margin), or more than the free space."""
    from .download import fmt_bytes, size_cap

    total = sum(int(s.size or 0) for s in files)
    if entry.size_bytes is not None and total > size_cap(entry.size_bytes):
        raise ModelError(f"the hub lists {fmt_bytes(total)} of files, more than the catalogue's "
                         f"{fmt_bytes(entry.size_bytes)}; nothing was downloaded", None,
                         "report this: the repository changed or the catalogue entry is out of date")
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if total > free:
        raise EnvironmentFault(f"the download needs {fmt_bytes(total)} ({free_space_text(where)}); nothing was "
                               "downloaded", where, "free disk space or give another cache with --cache DIR")


def fetch_from_hub(entry: CatalogueEntry, cache: str | Path | None = None, revision: str | None = None,
                   progress: Progress | None = None, force: bool = False, retries: int = 5) -> Path:
    """Install a hub entry into the cache (module docstring); returns the install folder."""
    from huggingface_hub import HfApi

    progress = progress or (lambda stage, fraction, message: None)
    hub = entry.hub or {}
    repo_id, folder = hub.get("repo_id"), hub.get("folder")
    if not repo_id or not folder:
        raise ModelError(f"catalogue entry {entry.id!r} lacks hub.repo_id or hub.folder", None, "fix the catalogue")
    commit = pinned_revision(entry, revision)
    final = install_dir(entry.id, cache)
    if (final / COMPLETE_MARKER).is_file() and not force:
        return final
    from .download import check_cache_writable

    check_cache_writable(final.parent)   # a read-only cache is one line, before any request
    endpoint = os.environ.get("HF_ENDPOINT") or None
    progress("download", 0.0, f"asking the hub for {repo_id} at {commit[:12]}")
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=commit, files_metadata=True)
    except Exception as exc:
        raise ModelError(f"cannot read {repo_id} at {commit[:12]} from the hub ({type(exc).__name__}: {exc})", None,
                         "check the connection (HF_ENDPOINT, proxy settings) and the revision") from None
    if (info.sha or "").lower() != commit:
        raise ModelError(f"the hub answered with commit {info.sha} for revision {commit}", None,
                         "the hub or a proxy in between is not serving the pinned revision; do not use the files")
    prefix, files = _files_under(info.siblings or [], folder)
    _check_sizes(entry, files, final.parent)
    staging = final.with_name(final.name + STAGING_SUFFIX)
    total = sum(int(s.size or 0) for s in files) or 1
    progress("download", 0.0, announce_text(entry, len(files), total))   # before the first byte
    done = 0
    pinned = {f"{prefix}/{k}" if not k.startswith(prefix + "/") else k: v for k, v in (hub.get("sha256") or {}).items()}
    manifest: dict[str, str] = {}
    for i, sib in enumerate(files, 1):
        label = f"file {i}/{len(files)} {PurePosixPath(sib.rfilename).name}"
        progress("download", done / total, label)
        path = _watched(lambda: _download(repo_id, sib.rfilename, commit, staging, endpoint, retries, progress,
                                          label), staging, done, total, progress)
        if sib.size is not None and path.stat().st_size > int(sib.size):
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelError(f"{sib.rfilename} arrived larger ({path.stat().st_size} bytes) than the hub listed "
                             f"({sib.size}); every downloaded file was deleted", None,
                             "do not use this server; run fetch again against the real hub")
        kind, want = _expected(sib, pinned)
        got = sha256_file(path) if kind == "sha256" else git_blob_sha1(path)
        if got.lower() != want:
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelError(f"checksum mismatch for {sib.rfilename}: {kind} {got[:16]}..., the hub published "
                             f"{want[:16]}...; every downloaded file was deleted", None,
                             "the download is damaged or not the published file; run fetch again, and report it "
                             "if it persists")
        manifest[str(PurePosixPath(folder) / PurePosixPath(sib.rfilename).relative_to(prefix))] = sha256_file(path)
        done += int(sib.size or 0)
    progress("unpack", 1.0, "installing")
    _install(entry, staging / prefix, final, folder, commit, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    return final


def _install(entry: CatalogueEntry, results: Path, final: Path, folder: str, commit: str,
             manifest: dict[str, str]) -> None:
    """Move the verified results folder into place with its declaration and ``.complete``."""
    new = final.with_name(final.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    os.replace(results, new / folder)
    if entry.declaration_json:
        from .declaration import DECLARATION_NAME, write_declaration

        dataset = read_json(new / folder / "dataset.json", "dataset.json", "report this", error=ModelError)
        channels = dataset.get("channel_names", {}) if isinstance(dataset, dict) else {}
        write_declaration(new / folder, dict(entry.declaration_json), channels)
        manifest[f"{folder}/{DECLARATION_NAME}"] = sha256_file(new / folder / DECLARATION_NAME)
    (new / COMPLETE_MARKER).write_text(json.dumps({"id": entry.id, "hub": (entry.hub or {}).get("repo_id"), "folder": folder,
                                                   "revision": commit, "files": manifest}, indent=1,
                                                  allow_nan=False))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(new, final)
