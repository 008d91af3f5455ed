"""What a warm session remembers between requests: decoded inputs and the grids made from them.

Why (issue 27): a one-lesion refinement of an 80 x 512 x 512 T2 re-read the T2 and the base
labels and resampled the whole T2 onto the model's grid for every request - about a second of
its 1.9 s - although nothing had changed. A session (:mod:`HNTumorSegLib.session.server`)
activates one :class:`WarmCache` around each request; the readers and the resampling ask it
first (:func:`cached`). Outside a session nothing is active and :func:`cached` just computes.

* **Key = content identity**: a file is known by its resolved path, inode, size and
  modification time in nanoseconds (:func:`file_identity`); a rewrite, a touch or another file
  at the path is a miss. An image made from a cached one (resampled) is keyed by its source's
  key plus what was done to it (:func:`key_of`); an image changed in memory has no key.
* **Bounded**: least recently used entries go once the entries' bytes pass the budget
  (:data:`DEFAULT_BUDGET_MB`, 1 GiB: a mid-RT T2 of 80 x 512 x 512 is 80 MB as float32, its
  model-grid copy 17 MB; a PET/CT case 0.4-0.6 GB). An entry larger than the whole budget is
  not kept.
* **Shared safely**: cached arrays are made read-only, so a request that would change one in
  place fails loudly instead of corrupting the next request.

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> cache = WarmCache(budget_mb=1)
    >>> made = []
    >>> def make():
    ...     made.append(1)
    ...     return Image(np.zeros((4, 4, 4), np.float32))
    >>> with cache.active():
    ...     a = cached(("demo", 1), make)
    ...     b = cached(("demo", 1), make)
    >>> a is b, len(made), cache.hits, cache.misses, a.array.flags.writeable
    (True, 1, 1, 1, False)
    >>> cached(("demo", 1), make) is a        # no cache active: computed again
    False
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator

#: The byte budget of a session's cache (MB) unless ``HNTUMORSEG_SESSION_CACHE_MB`` says otherwise.
DEFAULT_BUDGET_MB = 1024
BUDGET_ENV = "HNTUMORSEG_SESSION_CACHE_MB"

_active: "WarmCache | Handover | None" = None
_active_lock = threading.Lock()


def file_identity(path: str | os.PathLike) -> tuple | None:
    """(resolved path, inode, size, mtime_ns) of a regular file; None for a folder or a missing path."""
    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    if not p.is_file():
        return None
    return (str(p), st.st_ino, st.st_size, st.st_mtime_ns)


def _nbytes(value: Any) -> int:
    arr = getattr(value, "array", value)
    return int(getattr(arr, "nbytes", 0)) + 512


def _freeze(value: Any) -> None:
    arr = getattr(value, "array", value)
    if hasattr(arr, "flags"):
        arr.flags.writeable = False


def key_of(value: Any) -> Hashable | None:
    """The cache key a value was stored under (images: also those made from them), else None."""
    return getattr(value, "_warm_key", None)


class WarmCache:
    """An LRU of decoded images by content identity, bounded by bytes (module docstring)."""

    def __init__(self, budget_mb: float | None = None) -> None:
        if budget_mb is None:
            budget_mb = float(os.environ.get(BUDGET_ENV) or DEFAULT_BUDGET_MB)
        self.budget_bytes = int(budget_mb * 2**20)
        self._items: collections.OrderedDict[Hashable, tuple[Any, int]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
        value = make()
        size = _nbytes(value)
        _freeze(value)
        try:
            value._warm_key = key
        except AttributeError:   # a value without attributes (a plain array): cached, not a source of keys
            pass
        if size > self.budget_bytes:
            return value
        with self._lock:
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.budget_bytes and self._items:
                _, (_, old) = self._items.popitem(last=False)
                self.bytes -= old
        return value

    def stats(self) -> dict:
        """Counts for a session's result event: entries, MB held, budget, hits, misses."""
        with self._lock:
            return {"entries": len(self._items), "mb": round(self.bytes / 2**20, 1),
                    "budget_mb": round(self.budget_bytes / 2**20, 1), "hits": self.hits, "misses": self.misses}

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def active(self) -> contextlib.AbstractContextManager["WarmCache"]:
        """Make this the cache :func:`cached` uses (one request at a time: the session's worker thread)."""
        return _activated(self)


class Handover:
    """Files decoded ahead, in threads, for the one request that follows: a new worker's inputs.

    Why (issue 27): a new worker imports torch and the pipeline and loads the model (1-2 s)
    before it reads its first input; decoding an 80 x 512 x 512 T2 or a 300 x 512 x 512 CT
    (0.5-1.6 s, zlib and numpy, mostly outside the GIL) can run meanwhile on the second core.
    :meth:`start` decodes in a daemon thread; the reader asking :func:`cached` for that key while
    this is active takes the value (waiting if it is still being made) and the handover forgets
    it: nothing is held for longer than one read, and nothing is frozen. A failed read ahead is
    made again by the reader, so its error is raised where it always was.

    Example:
        >>> import numpy as np
        >>> handover = Handover()
        >>> with handover.active():
        ...     handover.start(("read", "t2"), lambda: np.zeros(3))
        ...     taken = cached(("read", "t2"), lambda: "made again")
        ...     again = cached(("read", "t2"), lambda: "made again")
        >>> taken.tolist(), again
        ([0.0, 0.0, 0.0], 'made again')
    """

    def __init__(self) -> None:
        self._pending: dict[Hashable, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()

    def start(self, key: Hashable, make: Callable[[], Any]) -> None:
        """Make ``key``'s value in a daemon thread (once per key)."""
        done = threading.Event()
        box: list[Any] = []   # the value, once made
        with self._lock:
            if key in self._pending:
                return
            self._pending[key] = (done, box)

        def run() -> None:
            try:
                box.append(make())
            except BaseException:   # the reader makes it again and meets the error itself
                pass
            finally:
                done.set()

        threading.Thread(target=run, name="hntumorseg-read-ahead", daemon=True).start()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._pending.pop(key, None)
        if entry is not None:
            done, box = entry
            done.wait()
            if box:
                return box[0]
        return make()

    def active(self) -> contextlib.AbstractContextManager["Handover"]:
        """Make this what :func:`cached` asks first (a new worker, for its one request)."""
        return _activated(self)


@contextlib.contextmanager
def _activated(cache: Any) -> Iterator[Any]:
    global _active
    with _active_lock:
        before, _active = _active, cache
    try:
        yield cache
    finally:
        with _active_lock:
            _active = before


def cached(key: Hashable | None, make: Callable[[], Any]) -> Any:
    """``make()``, remembered under ``key`` while a :class:`WarmCache` is active (``key`` None: never)."""
    cache = _active
    if cache is None or key is None:
        return make()
    return cache.get_or_make(key, make)


def derived_key(source: Any, *what: Hashable) -> Hashable | None:
    """The key of something made from a cached ``source`` by ``what`` (None when the source has no key)."""
    base = key_of(source)
    return None if base is None else (base, *what)
