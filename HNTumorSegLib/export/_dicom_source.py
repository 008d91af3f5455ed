"""The source series of a DICOM export: checked, matched slice by slice to the label map, and the
patient/study identity the exported objects copy from it (shared by SEG and RTSTRUCT).

The source is one image series (:mod:`HNTumorSegLib.dicom`): a :class:`SeriesGeometry`
already chosen and checked, or a list of files (Slicer gives the files of the series the volume
was loaded from) that must all belong to one checked series. Each slice's
``ImagePositionPatient`` goes through the label map's inverse geometry to a continuous index;
it must fall on an integer ``k`` with ``i = j = 0`` (within 0.1 voxel), so the label map must
lie on the series' own grid (the worker's output does: it lies on the first input's grid).

Identity: ``SpecificCharacterSet`` and the Patient, Clinical Trial Subject, General Study and
Patient Study modules are copied element by element from the first source slice, so a name
in any character set ("Müller–Ng^Wén" in UTF-8) is written with the bytes the images carry
and a PACS or planning system matches the objects to the patient. The character set we
declare is always valid (:func:`output_character_set`, issue 25): scanners write an empty
``SpecificCharacterSet`` (type 1C: an empty value is an error) - ours then omits it (the default
repertoire) when every copied text is ASCII, else declares ``ISO_IR 192`` and writes the same
characters in UTF-8; the ISO 2022 form with an empty first value (``\\ISO 2022 IR 87``, value 1
means ISO 2022 IR 6) is valid and kept as the source has it; a term DICOM does not define is
refused (one line, exit 2) before anything runs.

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> labels = case["mask"]                                     # labels 0/1/2 on the T2 grid
    >>> _ = write_dicom_series(case["T2"], "mr", modality="MR")  # the T2 as the source DICOM series
    >>> slices = match_series(labels, sorted(Path("mr").glob("*.dcm")))
    >>> [(s.k, s.dataset.SOPInstanceUID) for s in slices][:2]
    [(0, '1.2.826.0.1.3680043.8.498...'), (1, '1.2.826.0.1.3680043.8.498...')]
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..dicom.geometry import SeriesGeometry, check_series, slice_index_on
from ..dicom.scan import SeriesInfo, list_series_text, read_header
from ..errors import InputError
from ..image import Image

GRID_TOL = 0.1  # voxels

# PS3.3 C.7.1.1 Patient, C.7.1.3 Clinical Trial Subject, C.7.2.1 General Study, C.7.2.2 Patient Study
PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "TypeOfPatientID",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "QualityControlSubject", "OtherPatientIDsSequence",
    "OtherPatientNames", "EthnicGroup", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "StrainDescription", "ResponsiblePerson", "ResponsiblePersonRole",
    "ResponsibleOrganization", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence", "ReferencedPatientPhotoSequence",
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID",
    "ClinicalTrialSiteName", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingServiceCodeSequence",
    "ReferencedStudySequence", "ProcedureCodeSequence", "ReasonForPerformedProcedureCodeSequence",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge", "PatientSize",
    "PatientWeight", "PatientSizeCodeSequence", "MedicalAlerts", "Allergies", "SmokingStatus",
    "PregnancyStatus", "LastMenstrualDate", "PatientState", "AdditionalPatientHistory", "Occupation",
    "AdmissionID", "IssuerOfAdmissionIDSequence", "ServiceEpisodeID", "ServiceEpisodeDescription",
)
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass
class SourceSlice:
    k: int
    dataset: object  # pydicom.Dataset (with pixels: highdicom reads source attributes from it)
    path: str


def _geometry_of_files(files: list[Path]) -> SeriesGeometry:
    by_uid: dict[str, SeriesInfo] = {}
    for f in files:
        h = read_header(f)
        if h is None:
            raise InputError("is not a readable DICOM file", f,
                             "give the files of the series the segmentation was made on")
        uid = str(h.get("SeriesInstanceUID", "") or "")
        info = by_uid.setdefault(uid, SeriesInfo(uid, str(h.get("Modality", "") or ""),
                                                 str(h.get("SeriesDescription", "") or "")))
        info.files.append(Path(f))
        info.headers.append(h)
    if not by_uid:
        raise InputError("no source DICOM files given", None, "give the files of the source series")
    if len(by_uid) > 1:
        raise InputError(f"the source files belong to {len(by_uid)} series; {list_series_text(list(by_uid.values()))}",
                         Path(files[0]).parent, "give the files of the one series the segmentation was made on")
    return check_series(next(iter(by_uid.values())))


def source_geometry(source: SeriesGeometry | Iterable[str | os.PathLike]) -> SeriesGeometry:
    """A checked :class:`SeriesGeometry` from either a geometry or the series' files."""
    if isinstance(source, SeriesGeometry):
        return source
    return _geometry_of_files([Path(f) for f in source])


def match_series(labels: Image, source: SeriesGeometry | Iterable[str | os.PathLike]) -> list[SourceSlice]:
    """The source slices with their ``k`` index on ``labels``' grid, ordered by ``k``."""
    import pydicom

    geometry = source_geometry(source)
    if labels.shape_xyz[:2] != geometry.grid.shape_xyz[:2]:
        nx, ny = geometry.grid.shape_xyz[:2]
        raise InputError(f"has {ny}x{nx} pixels per slice, "
                         f"the segmentation {labels.shape_xyz[1]}x{labels.shape_xyz[0]}",
                         geometry.files[0], "export on the grid of the DICOM series it was made on")
    out: list[SourceSlice] = []
    for f, h in zip(geometry.files, geometry.headers):
        k = slice_index_on(labels, h, GRID_TOL)
        if k is None:
            raise InputError("does not lie on the segmentation's grid", f,
                             "export on the grid of the DICOM series it was made on (do not resample the result)")
        out.append(SourceSlice(k, pydicom.dcmread(str(f)), str(f)))
    out.sort(key=lambda s: s.k)
    ks = [s.k for s in out]
    if len(set(ks)) != len(ks):
        raise InputError("two source files fall on the same slice", out[0].path, "give the files of one series only")
    return out


def _character_set_values(source) -> list[str]:
    value = source.get("SpecificCharacterSet", None)
    if value is None:
        return []
    return [str(v).strip() for v in ([value] if isinstance(value, (str, bytes)) else value)]


def _text_is_ascii(value) -> bool:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if isinstance(value, Sequence):
        return all(_text_is_ascii(elem.value) for item in value for elem in item)
    if isinstance(value, Dataset):
        return all(_text_is_ascii(elem.value) for elem in value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return all(_text_is_ascii(v) for v in value)
    if isinstance(value, str) or type(value).__name__ == "PersonName":
        return str(value).isascii()
    return True   # numbers, dates as numbers, binary values: no characters to declare


def output_character_set(source, path: str | os.PathLike | None = None) -> str | list[str] | None:
    """The ``SpecificCharacterSet`` our objects declare for ``source``'s names (``None``: omitted, the default repertoire).

    The source's own value when it is valid; an empty or absent one becomes the default repertoire
    (omitted), or ``ISO_IR 192`` when a copied name is not ASCII (module docstring). A term DICOM
    does not define -> :class:`InputError` naming ``path``.

    Example:
        >>> from pydicom.dataset import Dataset
        >>> ds = Dataset(); ds.SpecificCharacterSet = ""; ds.PatientName = "DOE^JOHN"
        >>> output_character_set(ds) is None
        True
        >>> ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        >>> output_character_set(ds)
        ['', 'ISO 2022 IR 87']
    """
    from pydicom.charset import python_encoding

    values = _character_set_values(source)
    unknown = [v for v in values if v and v not in python_encoding]
    if unknown:
        raise InputError(f"declares SpecificCharacterSet {unknown[0]!r}, which is not a DICOM character set", path,
                         "correct the series' SpecificCharacterSet (PS3.3 C.12.1.1.2) and export again")
    if any(values):
        return values[0] if len(values) == 1 else values
    names_ascii = all(_text_is_ascii(source[k].value) for k in PATIENT_STUDY_KEYWORDS if k in source)
    return None if names_ascii else "ISO_IR 192"


def check_source_identity(geometry: SeriesGeometry) -> None:
    """Refuse, before any work, a source whose names we could not declare (:func:`output_character_set`)."""
    if geometry.headers:
        output_character_set(geometry.headers[0], geometry.files[0])


def copy_identity(source, target) -> None:
    """Copy the patient/study modules from ``source`` to ``target`` exactly, declaring
    :func:`output_character_set` (the source's ``SpecificCharacterSet`` when it is valid)."""
    charset = output_character_set(source)
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source and not (source[keyword].VR == "SQ" and len(source[keyword].value) == 0):
            # an empty sequence in the source (a Philips ProcedureCodeSequence of 0 items) is left
            # out: copied, it is 2 dciodvfy errors in the SEG and the RTSTRUCT (issue 25 corpus)
            target[keyword] = copy.deepcopy(source[keyword])
        elif keyword in target:
            del target[keyword]
    if charset is None:
        if "SpecificCharacterSet" in target:
            del target.SpecificCharacterSet
    else:
        target.SpecificCharacterSet = charset
    for keyword in TYPE2:
        if keyword not in target:
            setattr(target, keyword, "")
