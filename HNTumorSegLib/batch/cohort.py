"""A cohort on disk -> one segmentation job per case, in the layout the challenge expects.

Layouts (:mod:`HNTumorSegLib.datasets`):

- ``hntsmrg``: ``prert`` uses ``<ID>_preRT_T2``; ``midrt`` uses ``<ID>_midRT_T2`` plus the
  registered pre-RT mask as prior; references ``_preRT_mask`` / ``_midRT_mask``.
  Predictions: ``<out>/<ID>_preRT_pred.nii.gz`` / ``<out>/<ID>_midRT_pred.nii.gz``.
  *An unregistered cohort* (``--register-prior [MODE]``, issue 23: what a clinic holds): ``midrt``
  uses ``<ID>_midRT_T2``, the pre-RT T2 ``<ID>/preRT/<ID>_preRT_T2.nii.gz`` and the pre-RT
  contours on it, ``<ID>/preRT/<ID>_preRT_mask.nii.gz`` or, from a planning system,
  ``<ID>/preRT/<ID>_preRT_mask.dcm`` (an RTSTRUCT or a SEG); each case registers the pre-RT T2
  onto its mid-RT T2 first (``segment --prior-image``); no ``*_registered`` file is needed.
- ``hecktor``: ``petct`` with ``<ID>__CT`` and ``<ID>__PT``; reference ``<ID>.nii.gz``;
  prediction ``<out>/<ID>.nii.gz``.
- ``folder``: plain ``<ID>.nii.gz`` / ``<ID>_0000.nii.gz`` files. Choice: channels map to
  inputs in nnU-Net's order - ``prert``: 0 = T2; ``petct``: 0 = CT, 1 = PET (the order of
  the HECKTOR nnU-Net datasets); ``midrt`` needs a prior and is not offered for plain folders.
  References come from ``--labels DIR``. Prediction ``<out>/<ID>.nii.gz``.

The task comes from ``--task``, else from the layout (HECKTOR is always ``petct``), else
from the model card's ``task`` when the model is a local folder.

Example:
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> write_hntsmrg_cohort("HNTSMRG24_train", 2, shape=(8, 24, 24))    # two tiny phantom cases
    ['1', '2']
    >>> cases = discover_cases("hntsmrg", "HNTSMRG24_train", "preds", task="midrt")
    >>> {str(role): path for role, path in cases[1].input_paths.items()}, cases[1].prediction_path
    ({'T2': 'HNTSMRG24_train/2/midRT/2_midRT_T2.nii.gz'}, PosixPath('preds/2_midRT_pred.nii.gz'))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import find_hecktor_cases, find_hntsmrg_cases, find_plain_cases, prediction_path
from ..errors import InputError
from ..fileio import read_json
from ..pipeline.request import SegmentRequest
from ..vocab import Layout, RegistrationMode, Task

FOLDER_CHANNELS = {"prert": ("T2",), "petct": ("CT", "PET")}


@dataclass
class BatchCase:
    """One case of a cohort: input paths by name, optional prior and reference, where its prediction goes."""

    case_id: str
    task: Task
    input_paths: dict[str, str]
    prediction_path: Path
    prior_path: str | None = None
    reference_path: str | None = None
    prior_image_path: str | None = None   # an unregistered cohort: the pre-RT T2 the prior is drawn on
    registration: RegistrationMode | None = None   # ... and the registration mode


def unregistered_prior(case: Any, mode: str) -> tuple[str, str, RegistrationMode]:
    """(pre-RT T2, pre-RT contours, mode) of an HNTS-MRG-layout case of an unregistered cohort:
    the contours as ``<ID>_preRT_mask.nii.gz``, else ``<ID>_preRT_mask.dcm`` (RTSTRUCT or SEG)."""
    parsed = RegistrationMode.parse(mode, "--register-prior")
    image = case.path("preRT_T2")
    contours = case.preRT_mask or case.expected_path("preRT_mask").with_suffix("").with_suffix(".dcm")
    if not Path(contours).is_file():
        raise InputError(f"HNTS-MRG case {case.case_id} has no pre-RT contours to register", case.expected_path("preRT_mask"),
                         f"add {case.expected_path('preRT_mask').name} or {Path(contours).name} (RTSTRUCT or SEG)")
    return str(image), str(contours), parsed


def model_task(model: str) -> str | None:
    """The ``task`` of a model's card: a local folder's ``model.json``, else the catalogue entry's
    (README: "the card's task is used"); None for nnU-Net folders or unknown ids."""
    card = Path(model) / "model.json"
    try:
        return read_json(card, "model card").get("task")   # depth-limited: a deep card is not a traceback
    except (OSError, ValueError, AttributeError):
        pass
    if Path(model).exists():
        return None
    from ..models.catalogue import read_catalogue

    try:
        entry = next((e for e in read_catalogue() if e.id == model), None)
    except InputError:
        return None
    return entry.task if entry is not None else None


def resolve_task(layout: str, task: str | None, model: str) -> Task:
    """``--task`` (converted, "did you mean" on a typo), else petct for HECKTOR, else the model card's."""
    if task:
        return Task.parse(task, "--task")
    if layout == "hecktor":
        return Task.PETCT
    found = model_task(model)
    if found:
        return Task.parse(found, f"task of model {model!r}")
    raise InputError(f"cannot tell the task of model {model!r} for the {layout} layout", None,
                     "give --task prert, midrt or petct")


def discover_cases(layout: str, data: str | os.PathLike, out: str | os.PathLike, task: str,
                   labels: str | os.PathLike | None = None, register_prior: str | None = None) -> list[BatchCase]:
    """All cases of ``data`` for ``task``; raises InputError for a layout/task mismatch or missing input.
    ``register_prior``: a registration mode, for an unregistered mid-RT cohort (module docstring)."""
    layout = Layout.parse(layout, "--layout")
    cases: list[BatchCase] = []
    if register_prior:
        if layout is not Layout.HNTSMRG or task != Task.MIDRT:
            raise InputError(f"--register-prior is for mid-RT cohorts in the hntsmrg layout (not {layout}, {task})",
                             Path(data), "use --layout hntsmrg --task midrt, or leave --register-prior out")
        for c in find_hntsmrg_cases(data):
            image, contours, mode = unregistered_prior(c, register_prior)
            ref = c.reference(task)
            cases.append(BatchCase(c.case_id, Task.MIDRT, {"T2": str(c.path("midRT_T2"))},
                                   prediction_path(layout, out, c.case_id, task), contours,
                                   str(ref) if ref else None, image, mode))
    elif layout is Layout.HNTSMRG:
        for c in find_hntsmrg_cases(data, task=task if task != "petct" else None):
            ins = {k: str(v) for k, v in c.inputs(task).items()}
            prior = ins.pop("prior", None)
            ref = c.reference(task)
            cases.append(BatchCase(c.case_id, task, ins, prediction_path(layout, out, c.case_id, task),
                                   prior, str(ref) if ref else None))
    elif layout is Layout.HECKTOR:
        for c in find_hecktor_cases(data):
            ins = {k: str(v) for k, v in c.inputs(task).items()}
            cases.append(BatchCase(c.case_id, task, ins, prediction_path(layout, out, c.case_id, task),
                                   None, str(c.label) if c.label else None))
    elif layout is Layout.DICOM:  # one DICOM study folder per case; each input reads its series there
        from ..dicom.studies import find_dicom_studies

        if task not in FOLDER_CHANNELS:
            raise InputError(f"task {task} needs a registered prior, which a DICOM study folder does not hold",
                             Path(data), "use --layout hntsmrg for mid-RT cases")
        for case_id, folder in find_dicom_studies(data):
            cases.append(BatchCase(case_id, task, {n: str(folder) for n in FOLDER_CHANNELS[task]},
                                   prediction_path(layout, out, case_id, task), None, None))
    else:
        if task not in FOLDER_CHANNELS:
            raise InputError(f"task {task} needs a registered prior, which a plain folder cannot hold", Path(data),
                             "use --layout hntsmrg for mid-RT cases")
        names = FOLDER_CHANNELS[task]
        for c in find_plain_cases(data, labels):
            if len(c.channels) != len(names):
                raise InputError(f"case {c.case_id} has {len(c.channels)} channel file(s); task {task} needs "
                                 f"{len(names)} ({', '.join(names)})", c.channels[0],
                                 "name them <ID>_0000.nii.gz" + (", <ID>_0001.nii.gz" if len(names) > 1 else ""))
            cases.append(BatchCase(c.case_id, task, {n: str(p) for n, p in zip(names, c.channels)},
                                   prediction_path(layout, out, c.case_id, task), None,
                                   str(c.label) if c.label else None))
    if not cases:
        raise InputError("no case found", Path(data), f"check --data and --layout {layout}")
    return cases


def build_request(case: BatchCase, model: str, device: str = "auto", folds: Any = None,
                  tta: bool | None = None) -> SegmentRequest:
    """The worker's request for one case (``folds``: anything :func:`~HNTumorSegLib.folds.parse_folds` reads)."""
    return SegmentRequest(task=case.task, input_paths=dict(case.input_paths), prior_path=case.prior_path,
                          model=str(model), device=device, folds=folds, tta=None if tta is None else bool(tta),
                          output_path=str(case.prediction_path), prior_image_path=case.prior_image_path,
                          registration=case.registration)
