"""`hntumorseg session`: a warm session serving many requests as JSON lines (docs/design.md "Worker protocol").

    hntumorseg session [--device auto|cpu|cuda|cuda:N|mps]

Reads ``{"id": ..., "request": {...request.json...}}`` (optionally with ``"refine": {"base_labels_path":
PATH, "boxes": ["GTVn-2"]}`` inside the request; the older key ``base_labels`` is still read; ``"box_only": true``
returns only the crop over the edited boxes, no base needed), ``{"id": ..., "cancel": ID}``, ``{"id": ...,
"status": true}`` and ``{"shutdown": true}`` lines on stdin; writes the worker protocol's events,
each tagged with its request's ``"id"``, on stdout. The model stays loaded while model, device
and folds stay the same. Details: :mod:`HNTumorSegLib.session.server`; Python callers use
:class:`HNTumorSegLib.session.SessionClient`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..session.server import add_arguments as session_arguments

    session_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..session.server import serve

    return serve(args)
