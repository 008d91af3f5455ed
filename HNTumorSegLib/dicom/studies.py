"""The ``dicom`` cohort layout of ``hntumorseg batch``: one DICOM study folder per patient.

    <data>/<ID>/...   any files: the series of one study (a DICOMDIR, README files, earlier
                      RTSTRUCTs may lie there too; :mod:`.scan` tells them apart)

The case id is the folder's name. Each input of the task reads its series from the case folder
(:func:`.read.read_volume`: the only image series, or the only one of the input's modality: CT
and PET of one study share a folder). Folders holding no DICOM file are not cases.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> t2 = make_prert_case(seed=3, shape=(4, 32, 32))["T2"]
    >>> for patient in ("PAT001", "PAT002"):
    ...     _ = write_dicom_series(t2, f"clinic_export/{patient}/T2", modality="MR")
    >>> find_dicom_studies("clinic_export/")
    [('PAT001', PosixPath('clinic_export/PAT001')), ('PAT002', PosixPath('clinic_export/PAT002'))]
"""

from __future__ import annotations

import os
from pathlib import Path

from ..protect import check_path_kind
from .scan import read_header


def _holds_dicom(folder: Path) -> bool:
    return any(read_header(f) is not None for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))


def find_dicom_studies(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """``[(case_id, folder)]`` for every sub-folder of ``root`` holding DICOM files, sorted by id."""
    p = Path(root)
    check_path_kind(p, "DICOM data folder", "folder", "give the folder of study folders")   # FIFO named so (issue 22)
    return [(d.name, d) for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".") and _holds_dicom(d)]
