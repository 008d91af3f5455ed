"""Resuming a cohort run: which cases are already finished.

A case counts as finished when (1) its prediction exists and (2) a done-marker
``<out>/.hntumorseg-done/<case>.json`` records the same *fingerprint* and the prediction's size.
The fingerprint is made of the request (every field but the device and the output paths,
which do not change a prediction), the *content* of every input (size, mtime and a
fast hash: the first and last MiB plus the size, blake2b - an input replaced in place under
the same name is redone, issue 11) and the model's identity (every file of its folder: name,
size, mtime; a catalogue id is resolved to its installed folder). Choice: a sampled hash, not a
full one, so that resuming a 500-case cohort does not read every volume again; with the size
and mtime in the key a replaced file is still told apart. The
marker is written atomically after the worker's result event, so a run killed at any moment
leaves either no marker (the case runs again) or a complete one. A prediction without a
marker - half a cohort from another tool, or a run killed between write and marker - is
recomputed: the predictions themselves are written atomically by the pipeline, so nothing
half-written is ever taken for done.

Example:
    >>> from HNTumorSegLib.pipeline.request import SegmentRequest
    >>> fp = fingerprint(SegmentRequest(model="demo-midrt", task="midrt", input_paths={"T2": "a.nii.gz"},
    ...                                 output_path="preds/case1.nii.gz"))
    >>> out_dir = "preds"
    >>> is_done(out_dir, "case1", "preds/case1.nii.gz", fp)          # no done-marker yet
    False
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..fileio import loads_json, os_error, write_json_atomic

if TYPE_CHECKING:
    from ..pipeline.request import SegmentRequest

MARKER_DIR = ".hntumorseg-done"
#: Request fields that do NOT change the prediction: where it runs and where other outputs go.
#: Every other field is in the key, so a field added later (--align-pet, --pet-units,
#: --prior-image ...) can never make a resumed run reuse a prediction made with another setting.
NOT_IN_FINGERPRINT = ("device", "output_path", "probabilities_path", "uncertainty_path",
                      "boxes_output_path", "registered_folder_path")
#: Request fields naming files whose *content* is part of the key, beside the image inputs.
CONTENT_FIELDS = ("prior_path", "boxes_path", "prior_reference_path", "prior_image_path")


SAMPLE_BYTES = 1 << 20


def content_fingerprint(path: str | os.PathLike | None) -> str | None:
    """size, mtime and a blake2b of the first and last MiB of a file (a folder: of its files)."""
    if not path:
        return None
    p = Path(path)
    try:
        if p.is_dir():   # a DICOM series folder
            return hashlib.blake2b("|".join(f"{f.relative_to(p)}:{content_fingerprint(f)}"
                                            for f in sorted(p.rglob("*")) if f.is_file()).encode(),
                                   digest_size=16).hexdigest()
        st = p.stat()
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with open(p, "rb") as fh:
            h.update(fh.read(SAMPLE_BYTES))
            if st.st_size > SAMPLE_BYTES:
                fh.seek(max(SAMPLE_BYTES, st.st_size - SAMPLE_BYTES))
                h.update(fh.read(SAMPLE_BYTES))
        return h.hexdigest()
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def model_identity(model: str) -> str:
    """A model's identity: every file of its folder (relative name, size, mtime_ns); a catalogue
    id is resolved to its installed folder; an unknown id stands for itself."""
    folder = Path(model)
    if not folder.exists():
        try:
            from ..models.catalogue import installed_path

            folder = installed_path(model) or folder
        except Exception:  # not installed: the run reports it; the id alone keys the marker
            return f"id:{model}"
    if folder.is_file():
        files = [folder]
    else:
        files = sorted(f for f in folder.rglob("*") if f.is_file())
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f.relative_to(folder) if f != folder else f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def fingerprint(request: "SegmentRequest") -> str:
    """sha256 over the request fields that decide the prediction, the inputs' content and the
    model's identity (module docstring; stable key order)."""
    data = request.to_dict()
    picked = {k: v for k, v in data.items() if k not in NOT_IN_FINGERPRINT}
    picked["content"] = {name: content_fingerprint(path) for name, path in sorted(request.input_paths.items())}
    for name in CONTENT_FIELDS:
        picked["content"][name] = content_fingerprint(getattr(request, name))
    picked["model_identity"] = model_identity(str(request.model))
    blob = json.dumps(picked, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def marker_path(out_dir: str | os.PathLike, case_id: str) -> Path:
    return Path(out_dir) / MARKER_DIR / f"{case_id}.json"


def is_done(out_dir: str | os.PathLike, case_id: str, prediction: str | os.PathLike, fp: str) -> bool:
    """True when the prediction exists and its marker matches ``fp`` and the file's size."""
    pred = Path(prediction)
    try:
        marker = loads_json(marker_path(out_dir, case_id).read_bytes(), "done-marker")   # depth-limited
        return (pred.is_file() and marker.get("fingerprint") == fp
                and int(marker.get("size", -1)) == pred.stat().st_size)
    except (OSError, ValueError):
        return False


def mark_done(out_dir: str | os.PathLike, case_id: str, prediction: str | os.PathLike, fp: str,
              timings: Mapping[str, float] | None = None) -> Path:
    """Write the case's done-marker atomically (temp file, fsync, verify, rename). A full disk is
    one line (EnvironmentFault, exit 1), never a traceback."""
    path = marker_path(out_dir, case_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, path.parent, "create the folder") from None
    pred = Path(prediction)
    data = {"case": case_id, "prediction": str(pred), "size": pred.stat().st_size, "fingerprint": fp,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timings": dict(timings or {})}
    return write_json_atomic(path, data, indent=1)


def read_marker(out_dir: str | os.PathLike, case_id: str) -> dict | None:
    try:
        return loads_json(marker_path(out_dir, case_id).read_bytes(), "done-marker")
    except (OSError, ValueError):
        return None


#: ``batch.json`` fields that say which cohort a run was of (issue 22): the same cohort may be
#: rerun into its ``--out`` (resume, or new settings), another one may not.
COHORT_KEYS = ("layout", "data", "task")


def cohort_identity(layout: str, data: str | os.PathLike, task: str, case_ids) -> dict:
    """What :func:`check_same_cohort` compares; also written into ``batch.json``."""
    return {"layout": str(layout), "data": str(Path(data).absolute()), "task": str(task), "case_ids": list(case_ids)}


def check_same_cohort(out_dir: str | os.PathLike, identity: dict) -> None:
    """InputError when ``out_dir`` holds the ``batch.json`` of another cohort's run.

    Why: a second cohort written into the same ``--out`` replaces the first's ``metrics.json``,
    ``batch.json`` and report, and its predictions where case names meet - the first run's
    results are lost without a word. The same cohort (same layout, data folder and task) is
    accepted: that is a resume, or a rerun with new settings (the done-markers decide what runs
    again). A ``batch.json`` written before the data folder was recorded is compared by its case
    names. Deleting ``batch.json`` is how a user says "reuse this folder".
    """
    from ..errors import InputError

    path = Path(out_dir) / "batch.json"
    if not path.exists():
        return
    try:
        old = loads_json(path.read_bytes(), "batch.json", path)
    except (OSError, ValueError):
        old = None
    fix = f"give a new --out for this cohort, or delete {path} to reuse the folder (its run's results are replaced)"
    if not isinstance(old, dict):
        raise InputError("--out holds a batch.json that is not a batch run's record", path, fix)
    if old.get("data") is not None:
        differs = [k for k in COHORT_KEYS if str(old.get(k)) != identity[k]]
    else:
        old_ids = set((old.get("cases") or {}) if isinstance(old.get("cases"), dict) else [])
        differs = ([k for k in ("layout", "task") if str(old.get(k)) != identity[k]]
                   + (["cases"] if old_ids != set(identity["case_ids"]) else []))
    if differs:
        was = f"{old.get('layout')} cohort {old.get('data') or '?'} ({len(old.get('cases') or {})} cases, " \
              f"task {old.get('task')})"
        raise InputError(f"--out holds the run of another cohort: {was}; it differs in {', '.join(differs)}", path, fix)
