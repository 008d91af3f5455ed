"""Cross-validation folds by patient, written as nnU-Net's ``splits_final.json``.

Patients (not cases) are shuffled with ``numpy.random.default_rng(seed)`` and dealt into
``n_folds`` folds of near-equal size. For fold k:

* ``val``: the **primary** cases of the fold-k patients (for task 2: their mid-RT cases);
* ``train``: every case (primary and extra) of the other patients.

So a patient's extra case (seed 003's pre-RT image + its own gradient map) is in training
only when that patient is not being validated, and is never a validation case: no fold ever
scores a model on a patient it saw during training. nnU-Net reads the file from
``nnUNet_preprocessed/DatasetXXX_Name/splits_final.json``; :func:`install_splits` copies it
there after planning (``nnUNetv2_plan_and_preprocess`` creates the folder).

Example:
    >>> splits = make_splits(read_raw_dataset(folder)["hntumorseg"]["cases"], n_folds=5, seed=12345)
    >>> write_splits(splits, folder / "splits_final.json")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import write_json_atomic

from .nnunet_raw import read_raw_dataset

SPLITS_NAME = "splits_final.json"


def make_splits(cases: dict[str, dict], n_folds: int = 5, seed: int = 12345) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "val": [...]}, ...]`` from ``{case: {"patient": p, "primary": bool}}``."""
    if n_folds < 2:
        raise InputError(f"{n_folds} folds: cross-validation needs at least 2", None, "use --folds 5 or 10")
    patients = sorted({str(v["patient"]) for v in cases.values()})
    if len(patients) < n_folds:
        raise InputError(f"{len(patients)} patients cannot fill {n_folds} folds", None,
                         f"use at most {len(patients)} folds or add cases")
    order = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    fold_of = {p: i % n_folds for i, p in enumerate(order)}
    splits = []
    for k in range(n_folds):
        val = sorted(c for c, v in cases.items() if fold_of[str(v["patient"])] == k and v.get("primary", True))
        train = sorted(c for c, v in cases.items() if fold_of[str(v["patient"])] != k)
        splits.append({"train": train, "val": val})
    return splits


def fold_of_patients(splits: list[dict], cases: dict[str, dict]) -> dict[str, int]:
    """patient -> the fold that validates it."""
    out = {}
    for k, s in enumerate(splits):
        for c in s["val"]:
            out[str(cases[c]["patient"])] = k
    return out


def write_splits(splits: list[dict], path: str | os.PathLike) -> Path:
    """Write ``splits_final.json`` (a folder may be given)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPLITS_NAME
    return write_json_atomic(path, splits)


def write_dataset_splits(raw_folder: str | os.PathLike, n_folds: int = 5, seed: int = 12345) -> Path:
    """Make the splits of a converted raw dataset and write them beside its dataset.json."""
    data = read_raw_dataset(raw_folder)
    return write_splits(make_splits(data["hntumorseg"]["cases"], n_folds, seed), Path(raw_folder) / SPLITS_NAME)


def install_splits(raw_folder: str | os.PathLike, preprocessed_root: str | os.PathLike) -> Path:
    """Copy ``<raw>/splits_final.json`` to ``<nnUNet_preprocessed>/<DatasetXXX_Name>/`` for nnU-Net."""
    raw_folder = Path(raw_folder)
    src = raw_folder / SPLITS_NAME
    if not src.is_file():
        raise InputError("no splits_final.json in the raw dataset", raw_folder,
                         "run `python -m hntumorseg_training splits` first")
    dst_dir = Path(preprocessed_root) / raw_folder.name
    if not dst_dir.is_dir():
        raise InputError("the dataset has not been planned yet", dst_dir,
                         f"run nnUNetv2_plan_and_preprocess -d {raw_folder.name[7:10]} first")
    return Path(shutil.copyfile(src, dst_dir / SPLITS_NAME))
