"""Outcome training data: a HECKTOR-style cohort folder + clinical CSV -> cases ready for the network.

Layout: for each patient id of the CSV, ``<id>__CT.*``, ``<id>__PT.*`` and the label map
``<id>.nii.gz`` (or HECKTOR 2025's ``labelsTr/<id with - replaced by _>.nii.gz``) anywhere under
the data folder. Each case is read once: PET biomarkers (:mod:`HNTumorSegLib.outcome.biomarkers`)
join its clinical record, and its patch (:func:`HNTumorSegLib.outcome.patch.make_patch`) is kept
in memory (3 x 96^3 float32 = 10 MB a patient at the default size).

Example:
    >>> cases = load_cohort("HECKTOR2025/Task2", "HECKTOR_2025_Training_Task_2.csv", PatchSpec())
    >>> cases[0].rfs_days, cases[0].relapse, cases[0].patch.shape
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import IMAGE_SUFFIXES, check_labels, read_image
from HNTumorSegLib.outcome.biomarkers import compute_biomarkers, read_pet
from HNTumorSegLib.outcome.clinical import imaging_features, read_clinical_table, to_float
from HNTumorSegLib.outcome.patch import PatchSpec, make_patch


@dataclass
class OutcomeCase:
    """One patient ready for training: patch, clinical record (with biomarkers), targets (None = unknown)."""

    id: str
    patch: np.ndarray
    record: dict
    rfs_days: float | None
    relapse: int | None
    hpv: int | None


def _index_files(root: Path) -> dict[str, Path]:
    files = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name.endswith(IMAGE_SUFFIXES):
            files.setdefault(p.name, p)
    return files


def _find(files: dict[str, Path], stems: list[str]) -> Path | None:
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            if stem + suffix in files:
                return files[stem + suffix]
    return None


def _target(row: Mapping, column: str, kind: Callable, pid: str, csv_path) -> float | int | None:
    try:
        value = to_float(row.get(column))
    except ValueError:
        raise InputError(f"patient {pid}: {column} value {row.get(column)!r} is not a number", csv_path,
                         f"fix the {column} column") from None
    return None if value is None else kind(value)


def load_cohort(data_dir: str | os.PathLike, clinical_csv: str | os.PathLike, spec: PatchSpec,
                column_map: Mapping[str, str] | None = None, progress: Callable[[str], None] | None = None) -> list[OutcomeCase]:
    """Every patient of the CSV with CT, PET and labels found (module docstring); missing images -> InputError."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError("data folder does not exist", root, "check --data")
    table = read_clinical_table(clinical_csv, column_map)
    files = _index_files(root)
    cases = []
    for n, (pid, row) in enumerate(table.items(), start=1):
        ct_path = _find(files, [f"{pid}__CT"])
        pet_path = _find(files, [f"{pid}__PT", f"{pid}__PET"])
        lab_path = _find(files, [pid, pid.replace("-", "_")])
        if ct_path is None or pet_path is None or lab_path is None:
            missing = [w for w, p in (("CT", ct_path), ("PET", pet_path), ("label map", lab_path)) if p is None]
            raise InputError(f"patient {pid}: no {' / '.join(missing)} found", root,
                             f"put {pid}__CT.nii.gz, {pid}__PT.nii.gz and {pid}.nii.gz under the data folder")
        ct = read_image(ct_path, name="CT")
        pet = read_pet(pet_path)
        labels = read_image(lab_path, label=True, name="label map")
        check_labels(labels, path=lab_path)
        bm = compute_biomarkers(pet, labels, lab_path)
        record = {**row, **imaging_features(bm["patient"])}
        cases.append(OutcomeCase(pid, make_patch(ct, pet, labels, spec), record,
                                 _target(row, "RFS", float, pid, clinical_csv),
                                 _target(row, "Relapse", int, pid, clinical_csv),
                                 _target(row, "HPV Status", int, pid, clinical_csv)))
        if progress:
            progress(f"loaded {n}/{len(table)} patients")
    return cases
