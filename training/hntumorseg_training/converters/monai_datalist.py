"""MONAI (Auto3DSeg-style) datalist JSON from a converted raw dataset and its splits.

Entries: ``{"image": [channel files], "label": file, "case_id", "patient", "fold", "primary"}``
with ``fold`` the fold that validates the patient. A MONAI trainer of fold k trains on
entries with ``fold != k`` and validates on ``fold == k and primary`` - exactly nnU-Net's
``splits_final.json`` (extras never validated, and not trained on in their patient's fold).
:func:`fold_lists` applies that rule. Paths are absolute.

Example:
    >>> write_datalist(raw_folder, raw_folder / "datalist.json")
    >>> train, val = fold_lists(read_json("datalist.json"), fold=0)
"""

from __future__ import annotations

import os
from pathlib import Path

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import read_json, write_json_atomic

from .nnunet_raw import case_channel_paths, read_raw_dataset
from .splits import SPLITS_NAME, fold_of_patients


def build_datalist(raw_folder: str | os.PathLike) -> dict:
    """The datalist dict (needs ``splits_final.json`` beside dataset.json)."""
    raw_folder = Path(raw_folder).resolve()
    data = read_raw_dataset(raw_folder)
    splits_path = raw_folder / SPLITS_NAME
    if not splits_path.is_file():
        raise InputError("no splits_final.json in the raw dataset", raw_folder,
                         "run `python -m hntumorseg_training splits` first")
    splits = read_json(splits_path, SPLITS_NAME)   # depth-limited, strict
    cases = data["hntumorseg"]["cases"]
    folds = fold_of_patients(splits, cases)
    n_ch = len(data["channel_names"])
    entries = []
    for case_id, info in sorted(cases.items()):
        entries.append({"image": [str(p) for p in case_channel_paths(raw_folder, case_id, n_ch)],
                        "label": str(raw_folder / "labelsTr" / f"{case_id}.nii.gz"), "case_id": case_id,
                        "patient": str(info["patient"]), "fold": folds[str(info["patient"])],
                        "primary": bool(info["primary"])})
    return {"name": data.get("name", raw_folder.name), "task": data["hntumorseg"]["task"],
            "inputs": data["hntumorseg"]["inputs"], "labels": data["labels"], "num_folds": len(splits),
            "training": entries}


def write_datalist(raw_folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the datalist (default ``<raw>/datalist.json``)."""
    out = Path(out) if out is not None else Path(raw_folder) / "datalist.json"
    return write_json_atomic(out, build_datalist(raw_folder))


def fold_lists(datalist: dict, fold: int) -> tuple[list[dict], list[dict]]:
    """(train, val) entries of one fold (see the module docstring)."""
    if not 0 <= fold < int(datalist.get("num_folds", 0)):
        raise InputError(f"fold {fold} does not exist (datalist has {datalist.get('num_folds')} folds)", None,
                         "choose --fold between 0 and num_folds - 1")
    train = [e for e in datalist["training"] if e["fold"] != fold]
    val = [e for e in datalist["training"] if e["fold"] == fold and e["primary"]]
    return train, val
