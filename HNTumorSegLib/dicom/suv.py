"""PET from DICOM in SUV (body-weight SUV, g/mL): what biomarkers need and clinicians read.

Per slice, the stored value (after ``RescaleSlope``/``RescaleIntercept``) is turned into
SUVbw = value x factor, the factor chosen by ``Units`` (0054,1001) and the vendor's fields, after
the QIBA/UWPET vendor-neutral recipe (checked against the eight real scanner header sets of
cornerstonejs/calculate-suv, ``Testing/data/calculate_suv``, README "PET units"):

* ``BQML`` (Siemens, GE, Philips, ...): factor = weight [g] / (injected dose [Bq] x decay). The dose
  is decayed with ``RadionuclideHalfLife`` (0018,1075) from the injection
  (``RadiopharmaceuticalStartDateTime`` (0018,1078), else ``RadiopharmaceuticalStartTime``
  (0018,1072) on the ``SeriesDate``, a day earlier when that would fall after the scan: an
  injection before midnight) to the time the values are decay-corrected to, per
  ``DecayCorrection`` (0054,1102): ``START`` -> the series start: ``SeriesDate``/``SeriesTime``
  when it is not after the earliest ``AcquisitionDate``/``AcquisitionTime`` of the series; else
  (the series time was reset by a re-processing) GE's private scan date-time (0009,100d) when
  present, else the earliest acquisition; ``ADMIN`` -> no decay (already corrected to the
  injection); ``NONE`` -> each slice's own acquisition time. ``PatientWeight`` (0010,1030) kg,
  ``RadionuclideTotalDose`` (0018,1074) Bq. Philips private factors are **not** used on BQML
  images (they hold Philips' own conversions of its count images, not of Bq/mL).
* ``CNTS`` (Philips counts): the Philips private SUV scale factor (7053,1000) when every slice has
  one (it holds weight, dose and decay); else the Philips activity concentration scale factor
  (7053,1009) (counts -> Bq/mL) times the BQML factor above; else refused.
* ``GML``: already SUVbw, taken as is.
* any other unit (``CPS``, ``PROPCNTS`` ...): refused (no calibration known); so is a series whose
  ``CorrectedImage`` (0028,0051) lacks ``ATTN`` (not attenuation-corrected: no SUV).

Private elements are read only when their block's creator says whose they are
(``Philips PET Private Group``, ``GEMS_PETD_01``) or names none. A missing or empty tag, or an
injection after the scan, raises :class:`InputError` naming the tag and the file.

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series
    >>> suv = make_petct_case(seed=1, in_plane=64)["PET"]          # written as Bq/mL, decay-corrected
    >>> _ = write_dicom_series(suv, "study/PET", modality="PT", pet=PetAcquisition())
    >>> pet = read_pet_suv("study/PET")            # Image, float32, SUVbw
    >>> pet.array.dtype, bool(abs(float(pet.array.max()) - float(suv.array.max())) < 1e-3)
    (dtype('float32'), True)
    >>> from HNTumorSegLib.dicom.select import select_series
    >>> suv_conversion(select_series("study/PET").headers).rule
    'BQML, decay-corrected to the series start (DecayCorrection START)'
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image
from .geometry import SeriesGeometry
from .pixels import read_series
from .scan import read_header
from .select import select_series

PHILIPS_SUV_TAG = 0x70531000              # Philips SUV scale factor (CNTS images)
PHILIPS_ACTIVITY_TAG = 0x70531009         # Philips activity concentration scale factor: counts -> Bq/mL
PHILIPS_CREATOR = "Philips PET Private Group"
GE_SCAN_DATETIME_TAG = 0x0009100D         # GE private scan date-time (start of the scan, decay reference)
GE_CREATOR = "GEMS_PETD_01"

SuvError = InputError  # the error this module raises (an InputError: exit 2 on the command line)


@dataclass(frozen=True)
class SuvConversion:
    """Per slice, the factor taking the rescaled stored value to SUVbw; ``units`` the header's
    ``Units``; ``rule`` which vendor rule gave it (said in notes and README "PET units")."""

    factors: np.ndarray
    units: str
    rule: str


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


def _private(ds, tag: int, creator: str):
    """The value of a private element whose block's creator is ``creator`` (or unnamed), else None."""
    if tag not in ds:
        return None
    group, block = tag >> 16, (tag >> 8) & 0xFF
    named = ds.get((group << 16) | block, None)
    if named is not None and str(named.value).strip("\x00 ").lower() != creator.lower():
        return None   # another vendor's element at this number: not ours to read
    value = ds[tag].value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ") or None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and np.isfinite(number) else None


def _philips(headers, tag: int) -> list[float] | None:
    """Per slice, a Philips private factor; None unless every slice has a valid one."""
    out = [_positive(_private(h, tag, PHILIPS_CREATOR)) for h in headers]
    return None if any(v is None for v in out) else [float(v) for v in out if v is not None]


def _injection(ds, radio, path) -> tuple[datetime.datetime, bool]:
    """(injection date-time, whether its date was given rather than taken from the series)."""
    if str(radio.get("RadiopharmaceuticalStartDateTime", "") or "").strip():
        return _dt(radio.RadiopharmaceuticalStartDateTime), True
    start = _need(radio, "RadiopharmaceuticalStartTime", "(0018,1072)", path,
                  " (nor RadiopharmaceuticalStartDateTime (0018,1078))")
    date = _need(ds, "SeriesDate", "(0008,0021)", path)
    return _date_time(date, start), False


def _acquisition(ds, path) -> datetime.datetime:
    date = ds.get("AcquisitionDate", "") or _need(ds, "SeriesDate", "(0008,0021)", path)
    return _date_time(date, _need(ds, "AcquisitionTime", "(0008,0032)", path))


def _series_start(headers, files) -> tuple[datetime.datetime, str]:
    """The START decay-correction time and the rule that gave it (module docstring)."""
    first, path0 = headers[0], files[0]
    series_time = _date_time(_need(first, "SeriesDate", "(0008,0021)", path0),
                             _need(first, "SeriesTime", "(0008,0031)", path0))
    acquired = [_acquisition(h, f) for h, f in zip(headers, files) if h.get("AcquisitionTime")]
    if not acquired or series_time <= min(acquired):
        return series_time, "the series start"
    ge = _private(first, GE_SCAN_DATETIME_TAG, GE_CREATOR)
    if ge:
        return _dt(ge), "GE's scan date-time (0009,100d), the series time being after the acquisition"
    return min(acquired), "the earliest acquisition, the series time being after it"


def _bqml_factors(headers, files) -> tuple[np.ndarray, str]:
    """weight [g] / decayed dose [Bq] per slice, and the decay rule used."""
    first, path0 = headers[0], files[0]
    weight_kg = float(_need(first, "PatientWeight", "(0010,1030)", path0))
    if weight_kg <= 0:
        raise InputError(f"PET has PatientWeight {weight_kg} kg", path0, "give the patient's weight in the DICOM header")
    radio = _need(first, "RadiopharmaceuticalInformationSequence", "(0054,0016)", path0)[0]
    dose = float(_need(radio, "RadionuclideTotalDose", "(0018,1074)", path0))
    half_life = float(_need(radio, "RadionuclideHalfLife", "(0018,1075)", path0))
    if dose <= 0 or half_life <= 0:
        raise InputError(f"PET has dose {dose} Bq, half-life {half_life} s", path0, "fix the radiopharmaceutical details")
    injection, dated = _injection(first, radio, path0)
    correction = str(_need(first, "DecayCorrection", "(0054,1102)", path0)).upper()
    if correction == "ADMIN":
        times, rule = [injection] * len(headers), "the injection (DecayCorrection ADMIN)"
    elif correction == "START":
        start, rule = _series_start(headers, files)
        times, rule = [start] * len(headers), f"{rule} (DecayCorrection START)"
    elif correction == "NONE":
        times, rule = [_acquisition(h, f) for h, f in zip(headers, files)], "each slice's acquisition (DecayCorrection NONE)"
    else:
        raise InputError(f"PET has DecayCorrection {correction!r} (0054,1102)", path0, "expected START, ADMIN or NONE")
    if not dated and injection > min(times) and injection - datetime.timedelta(days=1) <= min(times):
        injection -= datetime.timedelta(days=1)   # a time-only injection before midnight, the scan after it
    if injection > min(times):
        raise InputError(f"PET was injected ({injection:%Y-%m-%d %H:%M:%S}) after the time its values are "
                         f"decay-corrected to ({min(times):%Y-%m-%d %H:%M:%S})", path0,
                         "fix RadiopharmaceuticalStartDateTime (0018,1078) / SeriesTime in the header")
    out = np.array([weight_kg * 1000.0 / (dose * 2.0 ** (-(t - injection).total_seconds() / half_life)) for t in times])
    return out, rule


def suv_conversion(headers, files=None) -> SuvConversion:
    """The per-slice SUVbw factors of a PET series and the vendor rule used (module docstring)."""
    files = list(files) if files is not None else [None] * len(headers)
    path0 = files[0]
    units = str(_need(headers[0], "Units", "(0054,1001)", path0)).strip().upper()
    corrected = headers[0].get("CorrectedImage", None)
    corrected = [corrected] if isinstance(corrected, str) else list(corrected or [])   # one value: a str
    if corrected and "ATTN" not in [str(c).strip().upper() for c in corrected]:
        raise InputError(f"PET is not attenuation-corrected (CorrectedImage (0028,0051) {'/'.join(corrected)} "
                         "lacks ATTN): its SUV is meaningless", path0, "give the attenuation-corrected PET series")
    if units == "GML":
        return SuvConversion(np.ones(len(headers)), units, "GML: already SUVbw")
    if units == "BQML":
        factors, decay = _bqml_factors(headers, files)
        return SuvConversion(factors, units, f"BQML, decay-corrected to {decay}")
    if units == "CNTS":
        philips_suv = _philips(headers, PHILIPS_SUV_TAG)
        if philips_suv is not None:
            return SuvConversion(np.array(philips_suv), units, "CNTS x Philips SUV scale factor (7053,1000)")
        activity = _philips(headers, PHILIPS_ACTIVITY_TAG)
        if activity is not None:
            factors, decay = _bqml_factors(headers, files)
            return SuvConversion(np.array(activity) * factors, units,
                                 f"CNTS x Philips activity concentration scale factor (7053,1009) -> BQML, "
                                 f"decay-corrected to {decay}")
    raise InputError(f"PET is in {units} with no SUV scale factor (7053,1000) nor activity concentration scale "
                     "factor (7053,1009); SUV cannot be computed", path0,
                     "export the PET in Bq/mL (BQML) or SUV from the scanner")


def suv_factors(headers, files=None) -> np.ndarray:
    """Per slice: the factor taking the rescaled stored value to SUVbw (see the module docstring)."""
    return suv_conversion(headers, files).factors


def suv_factor(ds) -> float:
    """The Bq/mL (or stored unit) -> SUVbw factor of one PET slice."""
    return float(suv_factors([ds])[0])


def read_pet_suv(folder_or_path: str | os.PathLike, series: str | None = None) -> Image:
    """A DICOM PET series as SUVbw (float32) on its own grid.

    ``folder_or_path``: a folder (``series`` = SeriesInstanceUID when it holds several PET
    series) or one file of the series. Raises :class:`InputError` (exit 2) with one line when
    the series cannot be chosen, read or converted.
    """
    return to_suv(*pet_series(folder_or_path, series))


def pet_series(folder_or_path: str | os.PathLike, series: str | None = None,
               need_frame_of_reference: bool = True) -> tuple[SeriesGeometry, Image]:
    """The PET series of a folder or one of its files, checked to be PT: (geometry, rescaled values)."""
    p = Path(folder_or_path)
    if p.is_file():
        header = read_header(p)
        if header is None:
            raise InputError("is not a DICOM file", p, "give a PET DICOM file or its folder")
        series = series or str(header.get("SeriesInstanceUID", ""))
        p = p.parent
    geometry = select_series(p, series_uid=series, modality=None if series else "PT",
                             need_frame_of_reference=need_frame_of_reference)
    if geometry.series.modality != "PT":
        raise InputError(f"series {geometry.uid} is {geometry.series.modality}, not PET (PT)", geometry.files[0],
                         "give the PET series")
    return geometry, read_series(geometry, name="PET")


def to_suv(geometry: SeriesGeometry, image: Image) -> Image:
    """``image`` (the rescaled values of the PET series ``geometry``, slice k = ``geometry.headers[k]``) in SUVbw."""
    factors = suv_factors(geometry.headers, geometry.files)
    values = image.array.astype(np.float32) * factors.astype(np.float32)[:, None, None]
    return image.with_array(values)
