"""A server job's ``request.json``: the client's fields plus the paths of its uploads.

Why here and not in the client's hands: server-side paths are off. The client sends only the
request fields that are not paths (:data:`CLIENT_FIELDS`, named as in ``request.json``, plus
``boxes`` inline as boxes.json entries); the server fills every path itself, inside the job's
private folder, and its own ``--device`` decides the device (a client's ``device`` is ignored).
A path field, or anything unknown, is a bad request (HTTP 400, one line).

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> d, refine = build({"model": "demo-midrt", "device": "cuda", "boxes": []},
    ...                   {"input.T2": folder / "in" / "T2.nii.gz"}, folder)
    >>> d["input_paths"]["T2"].endswith("T2.nii.gz"), d["output_path"].endswith("labels.nii.gz"), d["device"]
    (True, True, 'auto')
    >>> build({"model": "m", "prior_path": "/etc/passwd"}, {"input.T2": folder}, folder)
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.InputError: request field(s) prior_path are not taken by the server - upload files as parts (input.T2, input.CT, input.PET, prior, prior_image); send only task, model, folds, tta, restrict_to_boxes, prior_structures, registration, align_pet, pet_units, suv_factor, series, boxes
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import loads_json

#: ``request.json`` fields a client may send (no paths, no device).
CLIENT_FIELDS = ("task", "model", "folds", "tta", "restrict_to_boxes", "prior_structures", "registration",
                 "align_pet", "pet_units", "suv_factor", "series", "boxes")
#: Sent by clients that build a whole ``request.json``: ignored (the server decides them).
IGNORED_FIELDS = ("device",)
#: The labels file of every job (the result event's ``files["labels"]`` names it).
LABELS_NAME = "labels.nii.gz"
PATHS_FIX = ("upload files as parts (input.T2, input.CT, input.PET, prior, prior_image); send only "
             + ", ".join(CLIENT_FIELDS))


def parse_field(text: str | None, name: str) -> dict:
    """A form field's JSON object (``{}`` when absent); InputError when it is not one."""
    if text is None:
        return {}
    data = loads_json(text, what=f"form field {name!r}")
    if not isinstance(data, dict):
        raise InputError(f"form field {name!r} is not a JSON object", None, 'send e.g. {"model": "demo-midrt"}')
    return data


def _write_boxes(boxes: Any, folder: Path) -> str:
    from ..prompts.boxes import parse_boxes, write_boxes

    if not isinstance(boxes, list):
        raise InputError("request field 'boxes' must be a list of boxes.json entries", None,
                         'write e.g. "boxes": [{"label": 2, "name": "GTVn-1", "min_ras": [...], "max_ras": [...]}]')
    path = folder / "in" / "boxes.json"
    write_boxes(parse_boxes(boxes), path)
    return str(path)


def build(client: dict, files: dict[str, Path], folder: Path) -> tuple[dict, None]:
    """``(request.json dict, None)`` of a new job from the client's fields and its placed uploads."""
    unknown = sorted(set(client) - set(CLIENT_FIELDS) - set(IGNORED_FIELDS))
    if unknown:
        raise InputError(f"request field(s) {', '.join(unknown)} are not taken by the server", None, PATHS_FIX)
    inputs = {name[len("input."):]: str(p) for name, p in files.items() if name.startswith("input.")}
    if not inputs:
        raise InputError("no input image uploaded", None, "add a file part input.T2 (or input.CT and input.PET)")
    if not client.get("model"):
        raise InputError("the request names no model", None, 'add "model": an id GET /v1/health lists')
    data = {k: v for k, v in client.items() if k in CLIENT_FIELDS and k != "boxes"}
    data.update(input_paths=inputs, output_path=str(folder / "out" / LABELS_NAME), device="auto")
    if "prior" in files:
        data["prior_path"] = str(files["prior"])
    if "prior_image" in files:
        data["prior_image_path"] = str(files["prior_image"])
    if client.get("boxes") is not None:
        data["boxes_path"] = _write_boxes(client["boxes"], folder)
    return data, None


def build_refine(parent_request: dict, parent_labels: Path | None, refine: dict, base_labels: Path | None,
                 folder: Path) -> tuple[dict, dict]:
    """``(request.json dict, refine spec)`` of a refinement: the parent's inputs, new boxes, and the
    base labels (uploaded, else the parent's result). With ``"box_only": true`` the result is the
    crop over the edited boxes and only an uploaded base is used (none: 0 outside the edited boxes,
    as a session's; the parent's result is not needed)."""
    unknown = sorted(set(refine) - {"boxes", "refine_boxes", "box_only"})
    if unknown:
        raise InputError(f"refine field(s) {', '.join(unknown)} are not taken", None,
                         'send {"boxes": [boxes.json entries], "refine_boxes": ["GTVn-2"], "box_only": true|false}')
    names = refine.get("refine_boxes")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError("refine field 'refine_boxes' must list the names of the boxes to refine", None,
                         'send e.g. "refine_boxes": ["GTVn-2"]')
    from ..pipeline.refine import box_only_flag   # lazy, as the server's other pipeline imports

    box_only = box_only_flag(refine)
    if not box_only and base_labels is None and (parent_labels is None or not parent_labels.is_file()):
        raise InputError("the job has no result labels to refine", None,
                         "refine a job that ended with a result, or upload base_labels")
    # the parent's own files (its labels, its boxes) are copied: the parent may be deleted meanwhile;
    # its inputs are read in place (their owner is kept while this job runs, server/jobs.py)
    base = base_labels
    if base is None and not box_only:
        base = Path(shutil.copy2(parent_labels, folder / "in" / "base_labels.nii.gz"))  # type: ignore[arg-type]
    data = dict(parent_request)
    data["output_path"] = str(folder / "out" / LABELS_NAME)
    for key in ("probabilities_path", "uncertainty_path", "boxes_output_path", "registered_folder_path"):
        data.pop(key, None)
    if refine.get("boxes") is not None:
        data["boxes_path"] = _write_boxes(refine["boxes"], folder)
    elif data.get("boxes_path"):
        data["boxes_path"] = str(shutil.copy2(data["boxes_path"], folder / "in" / "boxes.json"))
    spec: dict[str, Any] = {"boxes": list(names)}
    if base is not None:
        spec["base_labels_path"] = str(base)
    if box_only:
        spec["box_only"] = True
    return data, spec
