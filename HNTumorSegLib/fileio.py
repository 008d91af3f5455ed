"""Atomic file writes: the one way this package puts a file where a user will look for it.

Every output (label maps, JSON, CSV, DICOM, HTML, PNG) is written to a temporary file in
the destination folder and renamed over the final name only once it is complete, so a
crash, an error or a cancel never leaves a half-written file behind. The temporary file
gets the permissions a plain ``open()`` would give (``0o666`` less the umask) rather
than ``mkstemp``'s private ``0o600``, so a colleague or a PACS import can read it.

Example:
    >>> with atomic_path("out/labels.nii.gz") as tmp:
    ...     sitk.WriteImage(img, str(tmp))           # written to out/.labels.nii.gz.<random>
    >>> write_json_atomic("out/metrics.json", {"DSC": 0.8})
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _suffix(name: str) -> str:
    """Keep the whole extension (``.nii.gz``) so writers that pick a format by suffix still work."""
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def temp_beside(path: str | os.PathLike) -> Path:
    """An empty temporary file in ``path``'s folder (created), with ``path``'s whole extension.

    For writers that stage several files and publish them together (:func:`publish`).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=_suffix(final.name), dir=final.parent)
    os.close(fd)
    return Path(name)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Give a finished temporary file the usual permissions and rename it over ``path``."""
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    The parent folder is created. On any exception (KeyboardInterrupt included) the
    temporary file is removed and ``path`` is left as it was.
    """
    tmp = temp_beside(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 2, **kwargs: Any) -> Path:
    """Write ``data`` as JSON (one trailing newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, **kwargs) + "\n")
