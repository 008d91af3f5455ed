"""PET from DICOM in SUV (body-weight SUV, g/mL): what biomarkers need and clinicians read.

Per slice, the stored value (after ``RescaleSlope``/``RescaleIntercept``) is turned into
SUVbw = value x weight [g] / (injected dose [Bq] x decay), following the QIBA/UWPET
vendor-neutral recipe:

* ``Units`` (0054,1001) ``BQML``: the dose is decayed from the injection
  (``RadiopharmaceuticalStartDateTime`` (0018,1078), else ``RadiopharmaceuticalStartTime``
  (0018,1072) on the ``SeriesDate``) with ``RadionuclideHalfLife`` (0018,1075) to the time the
  image values are decay-corrected to, per ``DecayCorrection`` (0054,1102):
  ``START`` -> the series start (``SeriesDate``/``SeriesTime``; the earliest
  ``AcquisitionDate``/``AcquisitionTime`` when the series time is later, as after a
  re-processing that reset it), ``ADMIN`` -> no decay (already corrected to the injection),
  ``NONE`` -> each slice's own acquisition time; ``PatientWeight`` (0010,1030) in kg,
  ``RadionuclideTotalDose`` (0018,1074) in Bq;
* a Philips private SUV scale factor (7053,1000) when present: SUV = value x factor (it
  already holds weight, dose and decay; Philips stores ``CNTS`` this way);
* ``GML``: already SUVbw, taken as is;
* ``CNTS`` without the Philips factor, or any other unit: refused (no calibration known).

A missing or empty tag raises :class:`InputError` naming the tag and the file.

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series
    >>> suv = make_petct_case(seed=1, in_plane=64)["PET"]          # written as Bq/mL, decay-corrected
    >>> _ = write_dicom_series(suv, "study/PET", modality="PT", pet=PetAcquisition())
    >>> pet = read_pet_suv("study/PET")            # Image, float32, SUVbw
    >>> pet.array.dtype, bool(abs(float(pet.array.max()) - float(suv.array.max())) < 1e-3)
    (dtype('float32'), True)
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image
from .geometry import SeriesGeometry
from .pixels import read_series
from .scan import read_header
from .select import select_series

PHILIPS_SUV_TAG = 0x70531000

SuvError = InputError  # the error this module raises (an InputError: exit 2 on the command line)


def _need(ds, keyword: str, tag: str, path, what: str = ""):
    value = ds.get(keyword, None)
    if value is None or value == "" or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0):
        raise InputError(f"PET has no {keyword} {tag}{what}, needed for SUV", path,
                         "export the PET with its acquisition details, or give it in SUV already")
    return value


def _date_time(date: str, time: str) -> datetime.datetime:
    date, time = str(date).strip(), str(time).strip()
    frac = 0.0
    if "." in time:
        time, f = time.split(".", 1)
        frac = float("0." + (f or "0"))
    time = (time + "0000")[:6]
    out = datetime.datetime.strptime(date[:8] + time, "%Y%m%d%H%M%S")
    return out + datetime.timedelta(seconds=frac)


def _dt(value: str) -> datetime.datetime:
    text = str(value).strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]  # drop a UTC offset: all times of the series share it
    date, time = text[:8], text[8:]
    return _date_time(date, time or "000000")


def _philips_factor(ds) -> float | None:
    if PHILIPS_SUV_TAG not in ds:
        return None
    value = ds[PHILIPS_SUV_TAG].value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    try:
        factor = float(value)
    except (TypeError, ValueError):
        return None
    return factor if factor > 0 else None


def _injection(ds, radio, path) -> datetime.datetime:
    if str(radio.get("RadiopharmaceuticalStartDateTime", "") or ""):
        return _dt(radio.RadiopharmaceuticalStartDateTime)
    start = _need(radio, "RadiopharmaceuticalStartTime", "(0018,1072)", path,
                  " (nor RadiopharmaceuticalStartDateTime (0018,1078))")
    date = _need(ds, "SeriesDate", "(0008,0021)", path)
    return _date_time(date, start)


def _acquisition(ds, path) -> datetime.datetime:
    date = ds.get("AcquisitionDate", "") or _need(ds, "SeriesDate", "(0008,0021)", path)
    return _date_time(date, _need(ds, "AcquisitionTime", "(0008,0032)", path))


def suv_factors(headers, files=None) -> np.ndarray:
    """Per slice: the factor taking the rescaled stored value to SUVbw (see the module docstring)."""
    files = files or [None] * len(headers)
    out = np.empty(len(headers))
    first, path0 = headers[0], files[0]
    units = str(_need(first, "Units", "(0054,1001)", path0)).upper()
    philips = [_philips_factor(h) for h in headers]
    if all(p is not None for p in philips) and units != "GML":
        return np.array(philips, dtype=float)
    if units == "GML":
        return np.ones(len(headers))
    if units != "BQML":
        raise InputError(f"PET is in {units} with no SUV scale factor (7053,1000); SUV cannot be computed", path0,
                         "export the PET in Bq/mL (BQML) or SUV from the scanner")
    weight_kg = float(_need(first, "PatientWeight", "(0010,1030)", path0))
    if weight_kg <= 0:
        raise InputError(f"PET has PatientWeight {weight_kg} kg", path0,
                         "give the patient's weight in the DICOM header")
    seq = _need(first, "RadiopharmaceuticalInformationSequence", "(0054,0016)", path0)
    radio = seq[0]
    dose = float(_need(radio, "RadionuclideTotalDose", "(0018,1074)", path0))
    half_life = float(_need(radio, "RadionuclideHalfLife", "(0018,1075)", path0))
    if dose <= 0 or half_life <= 0:
        raise InputError(f"PET has dose {dose} Bq, half-life {half_life} s", path0,
                         "fix the radiopharmaceutical details")
    injection = _injection(first, radio, path0)
    correction = str(_need(first, "DecayCorrection", "(0054,1102)", path0)).upper()
    if correction == "ADMIN":
        times = [injection] * len(headers)
    elif correction == "START":
        series_time = _date_time(_need(first, "SeriesDate", "(0008,0021)", path0),
                                 _need(first, "SeriesTime", "(0008,0031)", path0))
        acquired = [_acquisition(h, f) for h, f in zip(headers, files) if h.get("AcquisitionTime")]
        start = min([series_time] + acquired) if acquired else series_time
        times = [start] * len(headers)
    elif correction == "NONE":
        times = [_acquisition(h, f) for h, f in zip(headers, files)]
    else:
        raise InputError(f"PET has DecayCorrection {correction!r} (0054,1102)", path0,
                         "expected START, ADMIN or NONE")
    for i, when in enumerate(times):
        decay = 2.0 ** (-(when - injection).total_seconds() / half_life)
        out[i] = weight_kg * 1000.0 / (dose * decay)
    return out


def suv_factor(ds) -> float:
    """The Bq/mL (or stored unit) -> SUVbw factor of one PET slice."""
    return float(suv_factors([ds])[0])


def read_pet_suv(folder_or_path: str | os.PathLike, series: str | None = None) -> Image:
    """A DICOM PET series as SUVbw (float32) on its own grid.

    ``folder_or_path``: a folder (``series`` = SeriesInstanceUID when it holds several PET
    series) or one file of the series. Raises :class:`InputError` (exit 2) with one line when
    the series cannot be chosen, read or converted.
    """
    p = Path(folder_or_path)
    if p.is_file():
        header = read_header(p)
        if header is None:
            raise InputError("is not a DICOM file", p, "give a PET DICOM file or its folder")
        series = series or str(header.get("SeriesInstanceUID", ""))
        p = p.parent
    geometry = select_series(p, series_uid=series, modality=None if series else "PT")
    if geometry.series.modality != "PT":
        raise InputError(f"series {geometry.uid} is {geometry.series.modality}, not PET (PT)", geometry.files[0],
                         "give the PET series")
    return to_suv(geometry, read_series(geometry, name="PET"))


def to_suv(geometry: SeriesGeometry, image: Image) -> Image:
    """``image`` (the rescaled values of the PET series ``geometry``, slice k = ``geometry.headers[k]``) in SUVbw."""
    factors = suv_factors(geometry.headers, geometry.files)
    values = image.array.astype(np.float32) * factors.astype(np.float32)[:, None, None]
    return image.with_array(values)
