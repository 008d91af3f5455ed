"""PET biomarkers of GTVp and GTVn: MTV, NTV, SUVmax, SUVmean, SUVpeak, TLG, NLG (seed 004 section 2.2).

Definitions (per patient, and per lesion):

* **Volumes** (``MTV_ml`` = GTVp, ``NTV_ml`` = GTVn, lesion ``volume_ml``) are counted on the
  label map's own grid: voxels x voxel volume / 1000 (the metrics' :func:`volume_ml`).
* **SUV values** are read on the PET's own grid, never an interpolated PET: when the grids
  differ, the label map (its lesion numbering, so each lesion keeps its identity) is resampled
  onto the PET grid with nearest neighbour. ``SUVmax`` / ``SUVmean`` are the max / mean of the
  PET voxels inside the region.
* **SUVpeak** (PERCIST 1.0): the highest mean SUV in a sphere of 1 cm^3 (radius
  (3000 / 4 pi)^(1/3) = 6.204 mm). The sphere is centred on every PET voxel centre inside the
  region; its mean is the plain mean of the PET voxels whose *centres* lie within the radius
  (physical mm, so anisotropic voxels are handled), inside or outside the region, and only
  voxels inside the image (no padding). The largest such mean is SUVpeak.
* **TLG** = SUVmean_T x MTV_ml, **NLG** = SUVmean_N x NTV_ml, lesion ``TLG`` = SUVmean x volume.
* **Lesions** are 26-connected components of each label (the metrics' definition), ordered
  GTVp first, then by size (largest first), then by first voxel: the order and the names
  (``index`` 1, 2, ...) of the statistics CSV and the Slicer lesion table (one rule for all:
  :func:`HNTumorSegLib.metrics.lesions.lesions_by_size`). ``centroid_ras`` is
  the mean of the lesion's voxel centres on the label grid, in RAS mm.
* An empty label gives volume 0.0 and ``None`` (JSON null) for every SUV value, TLG and NLG;
  a lesion that covers no PET voxel centre after resampling (smaller than a PET voxel) gives
  ``None`` SUV values too.

The PET must be in SUV (body weight): :func:`read_pet` reads it through the one PET path
(:mod:`HNTumorSegLib.dicom.pet_units`): DICOM PET converted by its header; NIfTI PET taken as
SUV (HECKTOR ships it so) when it looks like SUV or the user says so, or times a Bq/mL -> SUV factor.

Example:
    >>> from HNTumorSegLib.image import write_image
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> phantom = make_petct_case(seed=1, in_plane=64)       # PET in SUV; labels on the CT grid
    >>> _ = write_image(phantom["PET"], "case__PT.nii.gz"), write_image(phantom["mask"], "case.nii.gz")
    >>> bm = compute_biomarkers(read_pet("case__PT.nii.gz"), read_image("case.nii.gz", label=True))
    >>> bm["patient"]["SUVpeak_T"] > 0, bm["lesions"][0]["label"]     # the largest lesion first: the GTVp
    (True, 1)
"""

from __future__ import annotations

import math
import os

import numpy as np
from scipy import ndimage

from ..dicom.pet_units import read_pet as read_pet_in_suv
from ..image import Image, check_labels, lps_to_ras, read_image, resample_to
from ..metrics import volume_ml
from ..metrics.lesions import lesions_by_size
from ..vocab import PetUnit

#: radius in mm of the 1 cm^3 sphere of SUVpeak (PERCIST)
PEAK_RADIUS_MM = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
PATIENT_KEYS = ("MTV_ml", "NTV_ml", "SUVmax_T", "SUVmax_N", "SUVmean_T", "SUVmean_N", "SUVpeak_T", "TLG", "NLG")
LESION_KEYS = ("label", "index", "volume_ml", "SUVmax", "SUVmean", "SUVpeak", "TLG", "centroid_ras")
PET_UNITS = PetUnit.values()   # the words: vocab.PetUnit


def read_pet(path: str | os.PathLike, units: str | None = None, suv_factor: float | None = None) -> Image:
    """Read a PET as SUV through the one PET path (:func:`HNTumorSegLib.dicom.pet_units.read_pet`):
    a DICOM series (folder or one file) converted by its header; an image file taken as SUV
    (``units="SUV"``), as Bq/mL times ``suv_factor`` (``"BQML"``: factor = body weight g /
    decay-corrected injected dose Bq), or, with no unit stated, as SUV when it looks like SUV
    (else refused: README "PET units")."""
    return read_pet_in_suv(path, units=units, suv_factor=suv_factor).image


def sphere_offsets(pet: Image, radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Boolean kernel (z, y, x) of the voxel offsets whose centres lie within ``radius_mm``
    of the central voxel's centre (physical distance; direction is orthonormal)."""
    sx, sy, sz = pet.spacing
    r = [int(math.floor(radius_mm / s)) for s in (sz, sy, sx)]
    z, y, x = np.meshgrid(*[np.arange(-n, n + 1) for n in r], indexing="ij")
    return (z * sz) ** 2 + (y * sy) ** 2 + (x * sx) ** 2 <= radius_mm ** 2 + 1e-9


def suv_peak(pet: Image, region: np.ndarray, kernel: np.ndarray | None = None) -> float | None:
    """PERCIST SUVpeak of ``region`` (boolean, PET grid): see the module docstring."""
    if not region.any():
        return None
    kernel = sphere_offsets(pet) if kernel is None else kernel
    half = np.array(kernel.shape) // 2
    idx = np.argwhere(region)
    lo = np.maximum(idx.min(0) - half, 0)
    hi = np.minimum(idx.max(0) + half + 1, region.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    values = pet.array[box].astype(np.float64)
    k = kernel.astype(np.float64)
    sums = ndimage.correlate(values, k, mode="constant", cval=0.0)
    counts = ndimage.correlate(np.ones_like(values), k, mode="constant", cval=0.0)
    # the box holds every voxel within the radius of any region voxel that lies in the image,
    # so sums/counts at region voxels equal those over the whole image
    means = sums / counts
    return float(means[region[box]].max())


def _ordered_lesions(labels: Image) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[slice, ...]]]:
    """A lesion-id map (0 background, 1..N), [(label, index within label)] and the bounding box of
    each id 1..N. Works inside each component's bounding box: no full-volume pass per lesion."""
    ids = np.zeros(labels.array.shape, np.int32)
    order: list[tuple[int, int]] = []
    boxes: list[tuple[slice, ...]] = []
    for value in (1, 2):
        for i, (box, inside) in enumerate(lesions_by_size(labels.array == value), start=1):
            ids[box][inside] = len(order) + 1
            order.append((value, i))
            boxes.append(box)
    return ids, order, boxes


def _suv_stats(pet_values: np.ndarray) -> tuple[float | None, float | None]:
    if pet_values.size == 0:
        return None, None
    return float(pet_values.max()), float(pet_values.mean())


def _times(a: float | None, b: float) -> float | None:
    return None if a is None else a * b


def compute_biomarkers(pet: Image, labels: Image, labels_path: str | os.PathLike | None = None) -> dict:
    """``{"patient": {PATIENT_KEYS...}, "lesions": [{LESION_KEYS...}, ...]}`` (module docstring)."""
    check_labels(labels, path=labels_path)
    ids, order, boxes = _ordered_lesions(labels)
    ids_pet = ids if labels.same_grid(pet) else resample_to(labels.with_array(ids), pet, label=True).array
    kernel = sphere_offsets(pet)
    vv = labels.voxel_volume_mm3
    pet_arr = pet.array

    lesions = []
    for n, ((value, index), box) in enumerate(zip(order, boxes), start=1):
        voxels = np.argwhere(ids[box] == n) + np.array([b.start for b in box])
        vol = volume_ml(len(voxels), vv)
        on_pet = ids_pet == n
        suv_max, suv_mean = _suv_stats(pet_arr[on_pet])
        centre = lps_to_ras(labels.index_to_physical(voxels.mean(axis=0)[::-1]))
        lesions.append({"label": value, "index": index, "volume_ml": vol, "SUVmax": suv_max, "SUVmean": suv_mean,
                        "SUVpeak": suv_peak(pet, on_pet, kernel), "TLG": _times(suv_mean, vol),
                        "centroid_ras": [float(c) for c in centre]})

    patient: dict = {}
    for value, tag in ((1, "T"), (2, "N")):
        vol = volume_ml(int((labels.array == value).sum()), vv)
        label_ids = [n for n, (v, _) in enumerate(order, start=1) if v == value]
        region = np.isin(ids_pet, label_ids) if label_ids else np.zeros(ids_pet.shape, bool)
        suv_max, suv_mean = _suv_stats(pet_arr[region])
        patient["MTV_ml" if value == 1 else "NTV_ml"] = vol
        patient[f"SUVmax_{tag}"] = suv_max
        patient[f"SUVmean_{tag}"] = suv_mean
        if value == 1:
            patient["SUVpeak_T"] = suv_peak(pet, region, kernel)
        patient["TLG" if value == 1 else "NLG"] = _times(suv_mean, vol)
    return {"patient": {k: patient[k] for k in PATIENT_KEYS}, "lesions": lesions}


def format_biomarkers(result: dict) -> str:
    """A plain-text table of :func:`compute_biomarkers`'s result for the terminal."""
    def f(v, pattern="{:.3g}"):
        return "-" if v is None else pattern.format(v)

    p = result["patient"]
    lines = ["Patient", *[f"  {k:<10} {f(p[k])}" for k in PATIENT_KEYS], "",
             f"{'lesion':<8} {'volume_ml':>9} {'SUVmax':>7} {'SUVmean':>7} {'SUVpeak':>7} {'TLG':>8}"]
    for les in result["lesions"]:
        name = f"{'GTVp' if les['label'] == 1 else 'GTVn'}-{les['index']}"
        lines.append(f"{name:<8} {f(les['volume_ml']):>9} {f(les['SUVmax']):>7} {f(les['SUVmean']):>7} "
                     f"{f(les['SUVpeak']):>7} {f(les['TLG']):>8}")
    if not result["lesions"]:
        lines.append("(no lesion)")
    return "\n".join(lines)
