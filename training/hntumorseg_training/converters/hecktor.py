"""HECKTOR 2025 task 1 -> nnU-Net v2 raw dataset (CT + PET, optional head crop and CT enhancement).

Every case gives ``<ID>_0000`` (CT) and ``<ID>_0001`` (PET resampled linearly onto the CT grid,
as nnU-Net needs one grid per case) and the label map on the CT grid.

* ``head_crop=True`` (seed 004): both images and the label are cut to
  :func:`HNTumorSegLib.prompts.head_localisation.locate_head`'s 1 mm crop (200 x 200 x 310 mm
  around the largest PET hot spot in the top of the scan; ``head_crop_mm`` changes the size);
  the label is resampled nearest-neighbour onto the crop.
* ``channel_set=("seed002", n)`` (seed 002's ResEnc-L input; ``enhanced=True`` is
  ``("seed002", 4)``): the named set's ``n`` channels from
  :func:`HNTumorSegLib.prompts.ct_channels.channel_set_arrays` - ``seed002`` is the released
  code's (CT window [-105, 195] HU -> [0, 1] and min-max, powers on [0, 1]; 2, 4 or 6
  channels), ``seed002_paper`` the paper's 4 (window [-110, 190] -> [-1, 1]). They are already
  normalised, so the dataset.json channel names are nnU-Net's ``noNorm`` (no second
  normalisation) while the ``hntumorseg.inputs`` block keeps the model-card inputs
  (:func:`~HNTumorSegLib.prompts.ct_channels.channel_set_inputs`) that inference recomputes identically.
* otherwise channels ``CT`` (nnU-Net's CT normalisation) and ``PET`` (z-score), as seed 004.

Example:
    >>> folder = convert_hecktor("HECKTOR2025_train", "nnUNet_raw", 504, head_crop=True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from HNTumorSegLib.datasets import find_hecktor_cases
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import check_labels, resample_to
from HNTumorSegLib.prompts.ct_channels import DEFAULT_CHANNEL_SET, channel_set_arrays, channel_set_inputs
from HNTumorSegLib.prompts.head_localisation import locate_head

from .nnunet_raw import RawDatasetWriter

PETCT_INPUTS = [{"name": "CT", "normalisation": {"type": "ct"}}, {"name": "PET", "normalisation": {"type": "zscore"}}]
HEAD_CROP_MM = (200.0, 200.0, 310.0)


def convert_hecktor(data_root: str | os.PathLike, raw_root: str | os.PathLike, dataset_id: int,
                    name: str | None = None, head_crop: bool = False, enhanced: bool = False,
                    head_crop_mm: Sequence[float] = HEAD_CROP_MM, cases: Sequence[str] | None = None,
                    channel_set: tuple[str, int] | None = None) -> Path:
    """Convert a HECKTOR 2025 training folder; returns the written ``DatasetXXX_Name`` folder.

    The card input ``CT`` of a plain dataset is ``{"type": "ct"}`` without statistics: the
    export fills mean/std/percentiles from nnU-Net's plans after planning.
    """
    if enhanced and channel_set is None:
        channel_set = (DEFAULT_CHANNEL_SET, 4)
    inputs = channel_set_inputs(*channel_set) if channel_set else PETCT_INPUTS
    found = [c for c in find_hecktor_cases(data_root) if cases is None or c.case_id in set(cases)]
    unlabelled = [c.case_id for c in found if c.label is None]
    if unlabelled:
        raise InputError(f"{len(unlabelled)} HECKTOR case(s) have no label map (first: {unlabelled[0]})",
                         Path(data_root), "training needs <ID>.nii.gz beside each CT; remove unlabelled cases")
    name = name or ("HECKTORPETCT" + ("Crop" if head_crop else "") + ("Enh" if channel_set else ""))
    writer = RawDatasetWriter(
        Path(raw_root), dataset_id, name, inputs, "petct",
        nnunet_channel_names=["noNorm"] * len(inputs) if channel_set else ["CT", "PET"],
        description="HECKTOR 2025 task 1 (PET/CT) converted by hntumorseg_training")
    for case in found:
        ct, pet = case.load("CT"), case.load("PET")
        label = case.load("label")
        check_labels(label, path=case.label)
        if head_crop:
            crop = locate_head(ct, pet, crop_mm=tuple(head_crop_mm))
            ct, pet = crop.ct, crop.pet
            label = resample_to(label, ct, label=True)
        else:
            pet = resample_to(pet, ct)
            if not label.same_grid(ct):
                label = resample_to(label, ct, label=True)
        channels = list(channel_set_arrays(channel_set[0], ct, pet, channel_set[1])) if channel_set else [ct, pet]
        writer.add_case(case.case_id, channels, label, patient=case.case_id)
    return writer.finish({"source": str(Path(data_root)), "head_crop": bool(head_crop),
                          "head_crop_mm": list(head_crop_mm) if head_crop else None, "enhanced": bool(channel_set),
                          "channel_set": list(channel_set) if channel_set else None})
