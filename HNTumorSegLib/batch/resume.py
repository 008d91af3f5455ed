"""Resuming a cohort run: which cases are already finished.

A case counts as finished when (1) its prediction exists and (2) a done-marker
``<out>/.hntumorseg-done/<case>.json`` records the same *fingerprint* (model, task, folds,
TTA, device-independent settings and the input paths) and the prediction's size. The
marker is written atomically after the worker's result event, so a run killed at any moment
leaves either no marker (the case runs again) or a complete one. A prediction without a
marker - half a cohort from another tool, or a run killed between write and marker - is
recomputed: the predictions themselves are written atomically by the pipeline, so nothing
half-written is ever taken for done.

Example:
    >>> fp = fingerprint(SegmentRequest(model="demo-midrt", task="midrt", input_paths={"T2": "a.nii.gz"},
    ...                                 output_path="preds/case1.nii.gz"))         # doctest: +SKIP
    >>> is_done(out_dir, "case1", "preds/case1.nii.gz", fp)          # doctest: +SKIP
    False
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..fileio import write_json_atomic

if TYPE_CHECKING:
    from ..pipeline.request import SegmentRequest

MARKER_DIR = ".hntumorseg-done"
#: Request fields that change the prediction; device, progress and output paths do not.
FINGERPRINT_KEYS = ("task", "model", "input_paths", "prior_path", "boxes_path", "folds", "tta")


def fingerprint(request: "SegmentRequest") -> str:
    """sha256 over the request fields that decide the prediction (stable key order)."""
    data = request.to_dict()
    picked = {k: data.get(k) for k in FINGERPRINT_KEYS}
    blob = json.dumps(picked, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def marker_path(out_dir: str | os.PathLike, case_id: str) -> Path:
    return Path(out_dir) / MARKER_DIR / f"{case_id}.json"


def is_done(out_dir: str | os.PathLike, case_id: str, prediction: str | os.PathLike, fp: str) -> bool:
    """True when the prediction exists and its marker matches ``fp`` and the file's size."""
    pred = Path(prediction)
    try:
        marker = json.loads(marker_path(out_dir, case_id).read_text())
        return (pred.is_file() and marker.get("fingerprint") == fp
                and int(marker.get("size", -1)) == pred.stat().st_size)
    except (OSError, ValueError):
        return False


def mark_done(out_dir: str | os.PathLike, case_id: str, prediction: str | os.PathLike, fp: str,
              timings: Mapping[str, float] | None = None) -> Path:
    """Write the case's done-marker atomically (temp file + rename)."""
    path = marker_path(out_dir, case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pred = Path(prediction)
    data = {"case": case_id, "prediction": str(pred), "size": pred.stat().st_size, "fingerprint": fp,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timings": dict(timings or {})}
    return write_json_atomic(path, data, indent=1)


def read_marker(out_dir: str | os.PathLike, case_id: str) -> dict | None:
    try:
        return json.loads(marker_path(out_dir, case_id).read_text())
    except (OSError, ValueError):
        return None
