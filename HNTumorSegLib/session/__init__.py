"""The warm session (issue 17): a long-lived worker that keeps the model loaded and serves many
requests, refinements of one edited box included, over the worker protocol tagged by request id.

* :mod:`.server`: the session process (``hntumorseg session``, ``python -m HNTumorSegLib.session``);
* :mod:`.client`: :class:`SessionClient` / :class:`SessionJob` for Python callers (Slicer, batch);
* :mod:`.messages`: the lines in and out; :mod:`.model_cache`: the one model kept loaded.

The client imports nothing heavy (no torch): Slicer's GUI process uses it.
"""

from .client import SessionClient, SessionJob

__all__ = ["SessionClient", "SessionJob"]
