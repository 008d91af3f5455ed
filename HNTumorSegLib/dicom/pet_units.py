"""One door for every PET: its values in SUVbw, and where their unit came from (issue 24).

Why: the PET/CT models and the biomarkers expect body-weight SUV. A PET enters by many ways (a
NIfTI or a DICOM folder on the command line, batch and session requests, a Slicer volume node,
``biomarkers`` and ``outcome``); each of them calls :func:`pet_to_suv` (values already read) or
:func:`read_pet` (a path), so a PET is never fed to a model or measured in Bq/mL by one path
while another converts it. The answer, :class:`PetSuv`, says where the unit came from
(:class:`~HNTumorSegLib.vocab.PetUnitSource`):

* **DICOM header** (a PET read from its DICOM series): ``Units`` and the vendor rules of
  :mod:`.suv` give the factors; ``--pet-units`` is not needed (and not used) there.
* **--pet-units** (an image file, the user states the unit): ``SUV`` -> the values as they are;
  ``BQML`` -> values x ``--suv-factor`` (body weight g / decay-corrected injected dose Bq).
* **model card** / **default** (an image file, no unit stated): taken in the unit the model card
  declares (``pet_unit``, SUV for every model so far), or SUV for a command without a model, and
  **checked to look like SUV** (the rule below); otherwise refused with one line naming the file
  and ``--pet-units``.

The rule (README "PET units"): the 99.9th percentile of the PET inside the body, the body being
the voxels above 1 % of the image's maximum, must not exceed :data:`SUV_PLAUSIBLE_MAX` (100).
Body-weight SUV of FDG is about 1 in soft tissue, 5-30 in tumours, rarely above 50 at a
tumour's hottest voxel, so its 99.9th percentile stays far below 100; the same PET in Bq/mL
(1 SUV ~ 5 kBq/mL for 370 MBq in 70 kg) or in counts is over 1000. A conversion from a header
or a factor that ends above the limit is refused the same way (a wrong weight or dose).

Example:
    >>> import numpy as np
    >>> from HNTumorSegLib.image import Image
    >>> suv = Image(np.linspace(0, 12, 4000, dtype=np.float32).reshape(10, 20, 20), (4.0, 4.0, 4.0))
    >>> pet = pet_to_suv(suv, "pet.nii.gz")             # no unit stated: checked to look like SUV
    >>> str(pet.source), pet.unit, round(plausibility_percentile(pet.image), 2)
    ('default', 'SUV', 11.99)
    >>> bqml = suv.with_array(suv.array * 5000)
    >>> pet_to_suv(bqml, "pet.nii.gz")                  # the same PET in Bq/mL
    Traceback (most recent call last):
    HNTumorSegLib.errors.InputError: pet.nii.gz: PET values do not look like SUV (99.9th percentile inside the body 59941 > 100: Bq/mL or counts?) - state its unit: --pet-units BQML --suv-factor F (body weight g / decay-corrected dose Bq), or --pet-units SUV to take the values as they are, or give the DICOM series
    >>> pet = pet_to_suv(bqml, "pet.nii.gz", units="BQML", suv_factor=1 / 5000)
    >>> str(pet.source), round(float(pet.image.array.max()), 3)
    ('pet-units', 12.0)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image, checked_image, read_image
from ..vocab import PetUnit, PetUnitSource
from .geometry import SeriesGeometry
from .scan import read_header
from .suv import pet_series, suv_conversion

#: the largest 99.9th percentile inside the body that a PET in SUV can plausibly have (module docstring)
SUV_PLAUSIBLE_MAX = 100.0
#: the body: voxels above this fraction of the image's maximum
BODY_FRACTION = 0.01
#: the percentile of the body's voxels compared with SUV_PLAUSIBLE_MAX
BODY_PERCENTILE = 99.9
#: the rule of a PET taken as it is (SUV stated, or unstated and looking like SUV)
UNCONVERTED = "taken as they are"
#: how the command line states a PET's unit (the fix of a refusal)
STATE_UNIT_CLI = ("--pet-units BQML --suv-factor F (body weight g / decay-corrected dose Bq), "
                  "or --pet-units SUV to take the values as they are, or give the DICOM series")


@dataclass(frozen=True)
class PetSuv:
    """A PET in SUVbw (float32), the unit its values came in, where that unit came from, and how."""

    image: Image
    unit: str                 # BQML, CNTS, GML (DICOM Units) or a PetUnit value
    source: PetUnitSource
    rule: str

    @property
    def note(self) -> str:
        """One line for the progress, the result and the panels."""
        return f"PET in SUVbw: {self.unit} by the {_SOURCE_WORDS[self.source]} ({self.rule})"


_SOURCE_WORDS = {PetUnitSource.DICOM_HEADER: "DICOM header", PetUnitSource.USER: "user's --pet-units",
                 PetUnitSource.MODEL_CARD: "model card's pet_unit", PetUnitSource.DEFAULT: "default (SUV)"}


def plausibility_percentile(image: Image) -> float:
    """The 99.9th percentile of the voxels above 1 % of the maximum (0.0 for an image without positive values)."""
    values = np.asarray(image.array, dtype=np.float32)
    top = float(np.max(values)) if values.size else 0.0
    if not math.isfinite(top) or top <= 0:
        return 0.0
    body = values[values > BODY_FRACTION * top]
    return float(np.percentile(body, BODY_PERCENTILE)) if body.size else 0.0


def _check_plausible(image: Image, path, how: str, fix: str) -> None:
    level = plausibility_percentile(image)
    if level > SUV_PLAUSIBLE_MAX:
        raise InputError(f"PET values {how} (99.9th percentile inside the body {level:.0f} > "
                         f"{SUV_PLAUSIBLE_MAX:.0f}: Bq/mL or counts?)", path, fix)


def pet_to_suv(values: Image, path: str | os.PathLike | None, *, geometry: SeriesGeometry | None = None,
               units: PetUnit | str | None = None, suv_factor: float | None = None,
               expected: PetUnit | str = PetUnit.SUV, card: bool = False,
               state_unit: str = STATE_UNIT_CLI) -> PetSuv:
    """THE conversion of a PET to SUVbw (module docstring).

    ``values``: the PET as read (for a DICOM series ``geometry``, its rescaled values, slice k =
    ``geometry.headers[k]``). ``units`` / ``suv_factor``: what the user stated (``--pet-units``,
    ``--suv-factor``), for image files. ``expected``: the unit the model card declares
    (``card=True``), else the default SUV. ``state_unit``: how the user states the unit where the
    PET came from (the fix of a refusal). Raises :class:`InputError` (exit 2, one line).
    """
    expected = PetUnit.parse(expected, "model card pet_unit")
    if expected is not PetUnit.SUV:
        raise InputError(f"the model expects PET in {expected}; PET is given to models in SUV only", path,
                         "set the model card's pet_unit to SUV")
    if geometry is not None:
        conv = suv_conversion(geometry.headers, geometry.files)
        image = values.with_array(values.array.astype(np.float32) * conv.factors.astype(np.float32)[:, None, None])
        _check_plausible(image, geometry.files[0], "converted with the DICOM header do not look like SUV",
                         "check PatientWeight (kg), RadionuclideTotalDose (Bq) and the times in the header, "
                         "or export the PET in SUV")
        return PetSuv(image, conv.units, PetUnitSource.DICOM_HEADER, conv.rule)
    stated = PetUnit.parse_optional(units, "--pet-units")
    image = values.with_array(values.array.astype(np.float32))
    image.source = values.source   # float32, as nnU-Net reads the file too: still that file's voxels
    if stated is PetUnit.SUV:
        return PetSuv(image, str(stated), PetUnitSource.USER, UNCONVERTED)
    if stated is PetUnit.BQML:
        if suv_factor is None:
            raise InputError("PET in Bq/mL needs the SUV factor", path,
                             "give --suv-factor (body weight g / decay-corrected dose Bq) or a DICOM PET")
        if not (math.isfinite(suv_factor) and 0 < suv_factor <= 1e6):   # g / Bq: ~1e-4; inf or 1e308 overflow float32
            raise InputError(f"--suv-factor {suv_factor:g} is not a finite number in (0, 1e6]", path,
                             "give body weight (g) / decay-corrected dose (Bq), about 1e-4")
        image = image.with_array(image.array * np.float32(suv_factor))
        _check_plausible(image, path, f"times --suv-factor {suv_factor:g} do not look like SUV",
                         "give body weight (g) / decay-corrected dose (Bq), about 1e-4")
        return PetSuv(image, str(stated), PetUnitSource.USER, f"x --suv-factor {suv_factor:g}")
    source = PetUnitSource.MODEL_CARD if card else PetUnitSource.DEFAULT
    _check_plausible(image, path, "do not look like SUV", f"state its unit: {state_unit}")
    return PetSuv(image, str(expected), source, UNCONVERTED)


def is_dicom_input(path: str | os.PathLike) -> bool:
    """A folder (a DICOM series or study) or a DICOM file (by content, any name)."""
    p = Path(path)
    if p.is_dir():
        return True
    return p.suffix.lower() == ".dcm" or (p.is_file() and not p.name.lower().endswith(
        (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")) and read_header(p) is not None)


def read_pet(path: str | os.PathLike, *, units: PetUnit | str | None = None, suv_factor: float | None = None,
             series: str | None = None, expected: PetUnit | str = PetUnit.SUV, card: bool = False,
             name: str = "PET image") -> PetSuv:
    """Read a PET given by path (an image file, a DICOM folder or one DICOM file) through :func:`pet_to_suv`.

    A DICOM PET: its PT series (``series`` = SeriesInstanceUID when the folder holds several),
    read with the same checks as any image. Raises :class:`InputError` (exit 2, one line).
    """
    p = Path(path)
    if is_dicom_input(p):
        geometry, values = pet_series(p, series, need_frame_of_reference=False)
        values = checked_image(values.to_sitk(), p, what=name)
        return pet_to_suv(values, p, geometry=geometry, expected=expected, card=card)
    if series:
        raise InputError(f"a series ({series}) is named for the {name}, which is a file, not a DICOM folder",
                         p, "drop --series, or give the DICOM folder")
    return pet_to_suv(read_image(p, name=name), p, units=units, suv_factor=suv_factor, expected=expected, card=card)
