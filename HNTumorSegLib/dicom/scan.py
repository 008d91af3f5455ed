"""Every DICOM object under a folder, grouped by series: what a real study folder holds.

A folder exported from a PACS or a scanner holds more than one image series: a second series
(another sequence, a scout), non-DICOM files (README, .txt, thumbnails), RTSTRUCT / SEG / RTPLAN
objects from an earlier export, a ``DICOMDIR``. Reading "every file of the folder" as one
volume breaks on any of these, so we read every file's header once (no pixels), skip what is
not DICOM and the DICOMDIR, and group the rest by ``SeriesInstanceUID``. A series is an
*image series* when its objects carry pixels and an image plane (``ImagePositionPatient``)
or are Enhanced multi-frame images (refused later, with a line that says so).

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))                # a phantom T2 as a DICOM study
    >>> _ = write_dicom_series(case["T2"], "study/T2", modality="MR", series_description="T2 TSE")
    >>> [s.summary() for s in scan_folder("study/")]
    ['1.2.826...: MR "T2 TSE" 4 files 32x32']
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..protect import check_path_kind

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
ENHANCED_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET",
}


@dataclass
class SeriesInfo:
    """One series found under a folder: its files (unsorted) and the header of each."""

    uid: str
    modality: str = ""
    description: str = ""
    files: list[Path] = field(default_factory=list)
    headers: list = field(default_factory=list)  # pydicom Datasets without pixel data

    @property
    def first(self):
        return self.headers[0]

    @property
    def is_image(self) -> bool:
        h = self.first
        return ("ImagePositionPatient" in h and "Rows" in h) or self.is_multiframe

    @property
    def is_multiframe(self) -> bool:
        h = self.first
        return str(h.get("SOPClassUID", "")) in ENHANCED_CLASSES or int(h.get("NumberOfFrames", 1) or 1) > 1

    def size_text(self) -> str:
        n = len(self.files)
        text = f"{n} file{'s' if n != 1 else ''}"
        if "Rows" in self.first:
            text += f" {self.first.Rows}x{self.first.Columns}"
        return text

    def summary(self) -> str:
        """``UID: MODALITY "description" N files RxC`` - one entry of the lists shown to the user."""
        return f'{self.uid}: {self.modality or "?"} "{self.description}" {self.size_text()}'


def read_header(path: str | os.PathLike):
    """The header of a DICOM file (no pixels), or None for a file that is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            # a SpecificCharacterSet pydicom does not know warned on every access (lines with
            # pydicom's source on stderr); decoded once here, quietly. An export refuses it in one
            # line (HNTumorSegLib.export._dicom_source.output_character_set, issue 25)
            warnings.simplefilter("ignore", UserWarning)
            header = pydicom.dcmread(str(path), stop_before_pixels=True)
            header.decode()
        return header
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None


def _walk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def scan_folder(folder: str | os.PathLike) -> list[SeriesInfo]:
    """All series under ``folder`` (recursively), in the order of their first file's name.

    A single file is scanned as a folder holding only it. Raises :class:`InputError` when the
    path does not exist or holds no DICOM object at all.
    """
    root = Path(folder)
    check_path_kind(root, "DICOM folder", "file or folder")   # a FIFO is named so (issue 22)
    files = [root] if root.is_file() else _walk(root)
    series: dict[str, SeriesInfo] = {}
    for f in files:
        h = read_header(f)
        if h is None:
            continue
        sop_class = str(getattr(h.get("file_meta", None) or h, "MediaStorageSOPClassUID", "") or "")
        if sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in h:
            continue
        uid = str(h.get("SeriesInstanceUID", "") or "")
        if not uid:
            continue
        info = series.setdefault(uid, SeriesInfo(uid, str(h.get("Modality", "") or ""),
                                                 str(h.get("SeriesDescription", "") or "")))
        info.files.append(f)
        info.headers.append(h)
    if not series:
        raise InputError("holds no DICOM series", root, "give a folder with the DICOM files of the image series")
    return list(series.values())


def list_series_text(series: list[SeriesInfo]) -> str:
    """The series as one line: ``series found: UID: CT "desc" 12 files 64x64; ...``."""
    return "series found: " + "; ".join(s.summary() for s in series)
