"""Write a phantom :class:`~HNTumorSegLib.image.Image` as a conformant DICOM series (CT, MR or PET).

Why: the DICOM paths (series choice, RTSTRUCT/SEG export, SUV) must be tested on series that
an independent validator accepts (``dciodvfy`` from dicom3tools reports 0 errors), written
the way scanners write them: one file per slice, Explicit VR Little Endian, the modality's
IOD modules (CT Image, MR Image, PET Series/Isotope/Image, NM/PET Patient Orientation), the
image plane from the image's geometry (any orientation: axial, oblique, sagittal; a
feet-first CT is ``patient_position="FFS"`` with the slice axis pointing to the feet).

Pixels: CT as int16 HU (slope 1, intercept 0); MR as int16 (rounded); PET as int16 with a
per-slice ``RescaleSlope`` in the series' ``Units``. A PET phantom is in SUV (as
:func:`~HNTumorSegLib.phantoms.make_petct_case` makes it); :class:`PetAcquisition` says how
it was "acquired" and the writer stores the activity concentration (Bq/mL) that gives back
this SUV through decay correction, weight and dose (``units="BQML"``), or the SUV itself
(``units="GML"``), or counts with a Philips SUV scale factor (``units="CNTS"``).

``charset="ISO_IR 192"`` writes UTF-8 with ``SpecificCharacterSet``, so names outside
Latin-1 (``"Müller–Ng^Wén"``) survive; ``None`` writes the default repertoire (ASCII only).

Example:
    >>> from HNTumorSegLib.phantoms import make_prert_case
    >>> case = make_prert_case(seed=3, shape=(4, 32, 32))
    >>> files = write_dicom_series(case["T2"], "study/T2", modality="MR",
    ...                            patient=DicomPatient(name="Müller–Ng^Wén"), charset="ISO_IR 192")
    >>> len(files), str(files[0])                    # one file per slice
    (4, 'study/T2/IM0001.dcm')
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..image import Image

SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
               "PT": "1.2.840.10008.5.1.4.1.1.128"}
F18_HALF_LIFE_S = 6586.2


@dataclass
class DicomPatient:
    """Patient and study identity shared by the series of one study (keep one to write a study)."""

    name: str = "Phantom^One"
    patient_id: str = "HNTS-1"
    birth_date: str = "19600101"
    sex: str = "O"
    study_uid: str = field(default_factory=lambda: _uid())
    study_date: str = "20240101"
    study_time: str = "080000"
    study_description: str = "Head and neck phantom"
    accession: str = "A0001"
    referring: str = ""
    frame_uid: str = field(default_factory=lambda: _uid())


@dataclass
class PetAcquisition:
    """How a phantom PET was "acquired": what SUV conversion needs (body weight SUV, F-18 FDG)."""

    weight_kg: float = 75.0
    dose_bq: float = 3.7e8
    half_life_s: float = F18_HALF_LIFE_S
    injection: datetime.datetime = datetime.datetime(2024, 1, 1, 8, 0, 0)
    series_start: datetime.datetime = datetime.datetime(2024, 1, 1, 9, 0, 0)
    decay_correction: str = "START"  # START, ADMIN or NONE
    units: str = "BQML"  # BQML, GML, CNTS
    philips_suv_scale: float | None = None  # CNTS with (7053,1000); SUV = stored value * factor
    frame_duration_s: float = 180.0
    slice_seconds: float = 0.0  # acquisition time offset per slice (for decay correction NONE)

    def decay(self, when: datetime.datetime) -> float:
        return float(2.0 ** (-(when - self.injection).total_seconds() / self.half_life_s))

    def bqml_per_suv(self, when: datetime.datetime | None = None) -> float:
        """Bq/mL per SUVbw unit for values decay-corrected to ``when`` (START: series start, ADMIN: None)."""
        dose = self.dose_bq if when is None else self.dose_bq * self.decay(when)
        return dose / (self.weight_kg * 1000.0)


def _uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


def _ds(value: float) -> str:
    """A DS value (at most 16 characters)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.6e}" if abs(value) < 1e-4 or abs(value) >= 1e10 else f"{value:.8g}"
    return text


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _common(ds, patient: DicomPatient, modality: str, series_uid: str, series_number: int, description: str,
            charset: str | None, position: str, now: datetime.datetime) -> None:
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName, ds.PatientID = patient.name, patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = patient.study_uid, patient.study_date, patient.study_time
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = patient.referring, "1", patient.accession
    ds.StudyDescription = patient.study_description
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = modality, series_uid, series_number
    ds.SeriesDescription, ds.BodyPartExamined = description, "HEADNECK"  # unpaired: no Laterality
    if modality != "PT":  # PET says it with PatientOrientationCodeSequence (and must not repeat it)
        ds.PatientPosition = position
    ds.SeriesDate, ds.SeriesTime = patient.study_date, patient.study_time
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = patient.frame_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "HNTumorSeg", "Phantom", "1"
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _plane(ds, image: Image, k: int) -> None:
    d = image.direction
    ds.ImagePositionPatient = [_ds(v) for v in image.index_to_physical(np.array([0.0, 0.0, float(k)]))]
    ds.ImageOrientationPatient = [_ds(round(float(v), 10)) for v in np.concatenate([d[:, 0], d[:, 1]])]
    ds.PixelSpacing = [_ds(image.spacing[1]), _ds(image.spacing[0])]  # row spacing (y), column spacing (x)
    ds.SliceThickness = _ds(image.spacing[2])
    normal = np.cross(d[:, 0], d[:, 1])
    ds.SliceLocation = _ds(float(np.dot(normal, image.index_to_physical(np.array([0.0, 0.0, float(k)])))))


def _pixels(ds, values: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(values.astype("<i2")).tobytes()


def _ct(ds) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
    ds.KVP, ds.AcquisitionNumber = "120", 1
    ds.WindowCenter, ds.WindowWidth = "40", "400"


def _mr(ds, image: Image) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", "FS"
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "4000", "90", 16
    ds.ImagedNucleus, ds.MagneticFieldStrength = "1H", "1.5"
    ds.SpacingBetweenSlices = _ds(image.spacing[2])
    ds.AcquisitionNumber = 1


def _pet(ds, acq: PetAcquisition, n_slices: int, k: int, slope: float, position: str) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Units, ds.CountsSource, ds.SeriesType = acq.units, "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"] if acq.decay_correction != "NONE" \
        else ["ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.DecayCorrection, ds.RandomsCorrectionMethod = acq.decay_correction, "DLYD"
    ds.ReconstructionMethod, ds.AttenuationCorrectionMethod = "OSEM", "CT"
    ds.NumberOfSlices, ds.CollimatorType = n_slices, "NONE"
    ds.SeriesDate, ds.SeriesTime = acq.series_start.strftime("%Y%m%d"), acq.series_start.strftime("%H%M%S")
    when = acq.series_start + datetime.timedelta(seconds=acq.slice_seconds * k)
    ds.AcquisitionDate, ds.AcquisitionTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")
    ds.PatientWeight = _ds(acq.weight_kg)
    radio = Dataset()
    radio.Radiopharmaceutical = "Fluorodeoxyglucose F^18^"
    radio.RadiopharmaceuticalStartTime = acq.injection.strftime("%H%M%S")
    radio.RadiopharmaceuticalStartDateTime = acq.injection.strftime("%Y%m%d%H%M%S")
    radio.RadionuclideTotalDose = _ds(acq.dose_bq)
    radio.RadionuclideHalfLife = _ds(acq.half_life_s)
    radio.RadionuclidePositronFraction = "0.97"
    radio.RadionuclideCodeSequence = Sequence([_code("77004003", "SCT", "^18^Fluorine")])
    radio.RadiopharmaceuticalCodeSequence = Sequence([_code("35321007", "SCT", "Fluorodeoxyglucose F^18^")])
    ds.RadiopharmaceuticalInformationSequence = Sequence([radio])
    orient = _code("102538003", "SCT", "recumbent")
    orient.PatientOrientationModifierCodeSequence = Sequence([_code("40199007", "SCT", "supine")])
    ds.PatientOrientationCodeSequence = Sequence([orient])
    gantry = _code("102541007", "SCT", "feet-first") if position.startswith("FF") \
        else _code("102540008", "SCT", "headfirst")
    ds.PatientGantryRelationshipCodeSequence = Sequence([gantry])
    ds.RescaleIntercept, ds.RescaleSlope = "0", _ds(slope)
    ds.FrameReferenceTime, ds.ImageIndex = "0", k + 1
    ds.ActualFrameDuration = int(acq.frame_duration_s * 1000)
    if acq.decay_correction != "NONE":
        ds.DecayFactor = "1"
    ds.AcquisitionNumber = 1
    if acq.philips_suv_scale is not None:
        ds.add_new(0x70530010, "LO", "Philips PET Private Group")
        ds.add_new(0x70531000, "DS", _ds(acq.philips_suv_scale))


def _pet_values(suv: np.ndarray, acq: PetAcquisition, k: int) -> np.ndarray:
    """Values in the series' Units for one slice of an SUV phantom."""
    if acq.units == "GML":
        return suv
    if acq.units == "CNTS":
        if acq.philips_suv_scale is None:
            return suv * 1000.0  # counts with no known SUV factor: SUV conversion must refuse these
        return suv / acq.philips_suv_scale
    if acq.decay_correction == "ADMIN":
        return suv * acq.bqml_per_suv(None)
    if acq.decay_correction == "START":
        return suv * acq.bqml_per_suv(acq.series_start)
    when = acq.series_start + datetime.timedelta(seconds=acq.slice_seconds * k)  # NONE: activity at acquisition
    return suv * acq.bqml_per_suv(when)


def write_dicom_series(image: Image, folder: str | os.PathLike, modality: str = "CT",
                       patient: DicomPatient | None = None, charset: str | None = "ISO_IR 100",
                       series_description: str | None = None, series_number: int = 1,
                       patient_position: str = "HFS", pet: PetAcquisition | None = None,
                       series_uid: str | None = None, prefix: str = "IM") -> list[Path]:
    """Write ``image`` as one file per slice into ``folder``; returns the files in slice (k) order.

    ``modality`` CT (HU), MR or PT (``image`` in SUV, see :class:`PetAcquisition`). The slice
    normal must be the cross product of the row and column directions (a right-handed grid, as
    every DICOM reader assumes); flip the image first otherwise.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    modality = modality.upper()
    if modality not in SOP_CLASSES:
        raise ValueError(f"modality {modality!r} not in {sorted(SOP_CLASSES)}")
    d = image.direction
    if not np.allclose(np.cross(d[:, 0], d[:, 1]), d[:, 2], atol=1e-6):
        raise ValueError("the image's slice axis is not row x column (left-handed grid): flip it first")
    patient = patient or DicomPatient()
    pet = pet or (PetAcquisition() if modality == "PT" else None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or _uid()
    now = datetime.datetime(2024, 1, 1, 12, 0, 0)
    arr = np.asarray(image.array, dtype=float)
    files = []
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
        meta.MediaStorageSOPInstanceUID = _uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        _common(ds, patient, modality, series_uid, series_number,
                series_description if series_description is not None else f"Phantom {modality}",
                charset, patient_position, now)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        _plane(ds, image, k)
        if modality == "CT":
            _ct(ds)
            values = np.round(arr[k])
        elif modality == "MR":
            _mr(ds, image)
            values = np.round(arr[k])
        else:
            phys = _pet_values(arr[k], pet, k)
            top = float(np.abs(phys).max())
            slope = top / 32000.0 if top > 0 else 1.0
            _pet(ds, pet, arr.shape[0], k, slope, patient_position)
            values = np.round(phys / slope)
        _pixels(ds, np.clip(values, -32768, 32767))
        path = folder / f"{prefix}{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def reoriented(image: Image, direction: np.ndarray) -> Image:
    """The same voxels on a grid turned to ``direction`` about the image's centre (for oblique/sagittal tests)."""
    direction = np.asarray(direction, dtype=float)
    old = Image(image.array, image.spacing, image.origin, image.direction)
    centre = old.index_to_physical((np.array(image.shape_xyz) - 1) / 2.0)
    new = Image(image.array, image.spacing, (0.0, 0.0, 0.0), direction)
    origin = centre - new.index_to_physical((np.array(image.shape_xyz) - 1) / 2.0)
    return Image(image.array, image.spacing, tuple(origin), direction)


def rotation(axis_xyz, degrees: float) -> np.ndarray:
    """A 3x3 rotation about ``axis_xyz`` (Rodrigues): oblique directions for tests."""
    a = np.asarray(axis_xyz, dtype=float)
    a = a / np.linalg.norm(a)
    t = np.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


# direction matrices (columns: the i, j, k axes in LPS)
SAGITTAL = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # rows to P, columns to I, slices to R
FEET_FIRST = np.diag([-1.0, 1.0, -1.0])  # FFS supine: rows to R, columns to P, slices to the feet
