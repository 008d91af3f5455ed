"""Writing an nnU-Net v2 raw dataset: ``imagesTr/``, ``labelsTr/`` and ``dataset.json``.

Shared by the challenge converters (:mod:`.hntsmrg`, :mod:`.hecktor`). Each training case is
written as ``imagesTr/<case>_<XXXX>.nii.gz`` (one file per channel, all on the label's grid)
and ``labelsTr/<case>.nii.gz``. Besides nnU-Net's own keys, ``dataset.json`` carries
``hntumorseg``: the task, each channel's model-card input (name, normalisation,
``derived_from``) and the case -> patient map, so that splits, the MONAI datalist and the
export to a model card (:mod:`hntumorseg_training.export`) need no other file.

Example:
    >>> raw = RawDatasetWriter(out_root, 501, "HNTSMRGMidRT", inputs=MIDRT_INPUTS, task="midrt")
    >>> raw.add_case("12_midRT", [t2, grad], label, patient="12", primary=True)
    >>> raw.finish()          # writes dataset.json, returns the dataset folder
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import read_json, write_json_atomic
from HNTumorSegLib.image import Image, write_image

LABELS = {"background": 0, "GTVp": 1, "GTVn": 2}


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetXXX_Name`` (InputError for ids outside 1..999 or odd names)."""
    if not 0 < int(dataset_id) < 1000:
        raise InputError(f"dataset id {dataset_id} is outside 1..999", None, "choose e.g. --dataset-id 501")
    if not name or not all(ch.isalnum() or ch in "-" for ch in name):
        raise InputError(f"dataset name {name!r} must be letters, digits or '-'", None, "e.g. --name HNTSMRGPreRT")
    return f"Dataset{int(dataset_id):03d}_{name}"


@dataclass
class RawCase:
    """One written training case."""

    case_id: str
    patient: str
    primary: bool  # False: an extra training case (seed 003's pre-RT cases) never validated on


@dataclass
class RawDatasetWriter:
    """Collects cases and writes them in nnU-Net v2's raw layout (see the module docstring)."""

    root: Path
    dataset_id: int
    name: str
    inputs: Sequence[dict]          # model-card input dicts, one per channel, in channel order
    task: str
    nnunet_channel_names: Sequence[str] | None = None  # default: the inputs' names
    description: str = ""
    cases: list[RawCase] = field(default_factory=list)
    labels: dict | None = None      # default LABELS (background, GTVp, GTVn); seed 002's head stage: Head

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.folder = self.root / dataset_folder_name(self.dataset_id, self.name)
        if (self.folder / "dataset.json").exists():
            raise InputError("an nnU-Net raw dataset already exists here", self.folder,
                             "choose another --dataset-id/--name or delete the folder")
        for sub in ("imagesTr", "labelsTr"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    @property
    def num_channels(self) -> int:
        return len(self.inputs)

    def add_case(self, case_id: str, channels: Sequence[Image | np.ndarray], label: Image, patient: str,
                 primary: bool = True) -> None:
        """Write one case; ``channels`` are Images (or arrays) on ``label``'s grid."""
        if len(channels) != self.num_channels:
            raise ValueError(f"case {case_id}: {len(channels)} channels given, dataset has {self.num_channels}")
        if any(c.case_id == case_id for c in self.cases):
            raise InputError(f"case id {case_id!r} appears twice", self.folder, "give each case a unique id")
        for k, ch in enumerate(channels):
            img = ch if isinstance(ch, Image) else label.with_array(np.asarray(ch, dtype=np.float32))
            if img.array.shape != label.array.shape:
                raise ValueError(f"case {case_id}: channel {k} {img.array.shape} is not on the label grid "
                                 f"{label.array.shape}")
            write_image(img.with_array(img.array.astype(np.float32, copy=False)),
                        self.folder / "imagesTr" / f"{case_id}_{k:04d}.nii.gz")
        write_image(label.with_array(label.array.astype(np.uint8, copy=False)),
                    self.folder / "labelsTr" / f"{case_id}.nii.gz")
        self.cases.append(RawCase(case_id, str(patient), bool(primary)))

    def finish(self, extra: dict | None = None) -> Path:
        """Write ``dataset.json`` (atomic) and return the dataset folder."""
        if not self.cases:
            raise InputError("no training case was converted", self.folder, "check the input folder")
        names = list(self.nnunet_channel_names or [i["name"] for i in self.inputs])
        data = {
            "channel_names": {str(k): n for k, n in enumerate(names)},
            "labels": dict(self.labels or LABELS),
            "numTraining": len(self.cases),
            "file_ending": ".nii.gz",
            "name": self.name,
            "description": self.description,
            "hntumorseg": {
                "task": self.task,
                "inputs": [dict(i) for i in self.inputs],
                "cases": {c.case_id: {"patient": c.patient, "primary": c.primary} for c in self.cases},
                **(extra or {}),
            },
        }
        write_json_atomic(self.folder / "dataset.json", data)
        return self.folder


def read_raw_dataset(folder: str | os.PathLike) -> dict:
    """``dataset.json`` of a raw dataset written here (InputError when absent or foreign)."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise InputError("no dataset.json", Path(folder), "give the DatasetXXX_Name folder written by `convert`")
    data = read_json(path, "dataset.json")   # depth-limited, strict
    if not isinstance(data, dict) or "hntumorseg" not in data:
        raise InputError("dataset.json was not written by hntumorseg_training (no 'hntumorseg' block)", path,
                         "convert the data with `python -m hntumorseg_training convert ...`")
    return data


def case_channel_paths(folder: str | os.PathLike, case_id: str, num_channels: int) -> list[Path]:
    """``imagesTr/<case>_0000.nii.gz ...`` of one case."""
    return [Path(folder) / "imagesTr" / f"{case_id}_{k:04d}.nii.gz" for k in range(num_channels)]
