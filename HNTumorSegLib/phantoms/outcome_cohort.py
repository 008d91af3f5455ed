"""A synthetic outcome cohort: small PET/CT phantoms with clinical data, RFS and HPV drawn from known laws.

Each patient: a neck-sized body (CT 2 x 2 x 3 mm, 64 x 64 x 32 voxels; PET on its own
4 mm grid with another origin, 6 mm FWHM blur, SUV), one spherical primary (GTVp, radius
6-18 mm, SUV 5-16) and 0-3 nodes (GTVn, radius 4-11 mm, SUV 3-12), HECKTOR-style clinical
variables (``Age``, ``Gender``, ``Tobacco Consumption``, ``Alcohol Consumption``,
``Performance Status``, ``M-stage``, ``Treatment``, some missing) and:

* **HPV status**, Bernoulli with ``logit = 0.6 + 2.2 z(NTV) - 1.2 z(SUVmax_N)``: nodal disease
  drives it (HPV-positive oropharyngeal cancers present with large, often cystic, less avid
  nodes); ``z`` uses fixed population constants, NTV and SUVmax_N are the *true* values;
* **time to relapse**, exponential with hazard
  ``lambda = ln 2 / 1500 d * exp(1.3 z(log MTV) + 1.0 z(SUVmax_N) + 0.6 z(Age))`` (tumour
  volume, nodal SUV and one clinical variable, as the issue asks); **censoring** uniform in
  [200, 4000] days; ``RFS = min(T, C)`` and ``Relapse = T <= C``.

So a model that reads the images and the clinical data can reach a C-index well above 0.5,
and one that learns nothing stays at 0.5: the training test proves learning, not running.

Example:
    >>> case = make_outcome_case(seed=0, index=3)
    >>> case["clinical"]["Age"], case["RFS"], case["Relapse"], case["HPV"]
    (62.7, 1614.0, 0, 0)
    >>> csv_path = write_outcome_cohort("cohort/", n=4, seed=0)
    >>> str(csv_path), sorted(p.name for p in csv_path.parent.iterdir())
    ('cohort/outcome_clinical.csv', ['SYN-000', 'SYN-001', 'SYN-002', 'SYN-003', 'outcome_clinical.csv'])
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..fileio import atomic_path
from ..image import Image, resample_to, write_image

CLINICAL_COLUMNS = ("PatientID", "Age", "Gender", "Tobacco Consumption", "Alcohol Consumption", "Performance Status",
                    "M-stage", "Treatment", "HPV Status", "RFS", "Relapse")
CSV_NAME = "outcome_clinical.csv"
CT_SPACING = (2.0, 2.0, 3.0)
PET_SPACING = (4.0, 4.0, 4.0)
SHAPE_ZYX = (32, 64, 64)
# population constants of the z-scores in the laws above
_LOG_MTV = (1.8, 0.9)
_NTV = (3.0, 3.5)
_SUVN = (4.5, 3.5)
_AGE = (62.0, 9.0)


def _z(value: float, stats: tuple[float, float]) -> float:
    return (value - stats[0]) / stats[1]


def _maybe(rng: np.random.Generator, value, p_missing: float = 0.1):
    return "" if rng.random() < p_missing else value


def make_outcome_case(seed: int = 0, index: int = 0) -> dict:
    """One patient: ``{"id", "CT", "PET", "mask", "clinical", "RFS", "Relapse", "HPV", "truth"}``."""
    rng = np.random.default_rng([seed, index, 15])
    nz, ny, nx = SHAPE_ZYX
    origin = tuple(float(v) for v in rng.uniform(-80, -50, size=3))
    grid = Image(np.zeros(SHAPE_ZYX, np.uint8), CT_SPACING, origin)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE_ZYX, CT_SPACING[::-1])], indexing="ij")
    cy, cx = (ny - 1) * CT_SPACING[1] / 2, (nx - 1) * CT_SPACING[0] / 2
    body = ((yy - cy) / 55.0) ** 2 + ((xx - cx) / 60.0) ** 2 <= 1.0
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    suv = np.where(body, 1.0, 0.0).astype(np.float32)
    ct = np.where(body, 45.0, -1000.0).astype(np.float32)

    def sphere(centre, radius):
        return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2

    r_p = rng.uniform(6.0, 18.0)
    c_p = (nz * CT_SPACING[2] / 2 + rng.uniform(-8, 8), cy + rng.uniform(-12, 6), cx + rng.uniform(-10, 10))
    suv_p = rng.uniform(5.0, 16.0)
    primary = sphere(c_p, r_p) & body
    labels[primary] = 1
    suv[primary] = suv_p
    ct[primary] = 55.0
    n_nodes = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))
    suv_n = rng.uniform(3.0, 12.0)
    for k in range(n_nodes):
        side = 1 if k % 2 == 0 else -1
        c_n = (c_p[0] + rng.uniform(-20, 20), cy + rng.uniform(-5, 20), cx + side * rng.uniform(28, 42))
        node = sphere(c_n, rng.uniform(4.0, 11.0)) & body & (labels == 0)
        labels[node] = 2
        suv[node] = suv_n * rng.uniform(0.85, 1.0)
        ct[node] = 40.0
    vv = grid.voxel_volume_mm3 / 1000.0
    mtv, ntv = float((labels == 1).sum() * vv), float((labels == 2).sum() * vv)
    suvmax_n = float(suv[labels == 2].max()) if ntv > 0 else 0.0

    age = float(np.clip(rng.normal(*_AGE), 30, 90))
    hpv_logit = 0.6 + 2.2 * _z(ntv, _NTV) - 1.2 * _z(suvmax_n, _SUVN)
    hpv = int(rng.random() < 1.0 / (1.0 + math.exp(-hpv_logit)))
    log_hazard = 1.3 * _z(math.log(max(mtv, 1e-3)), _LOG_MTV) + 1.0 * _z(suvmax_n, _SUVN) + 0.6 * _z(age, _AGE)
    rate = math.log(2.0) / 1500.0 * math.exp(log_hazard)
    t_event = float(rng.exponential(1.0 / rate))
    t_censor = float(rng.uniform(200.0, 4000.0))
    rfs, relapse = (t_event, 1) if t_event <= t_censor else (t_censor, 0)

    sigma = [6.0 / 2.3548 / s for s in CT_SPACING[::-1]]
    suv_blur = ndimage.gaussian_filter(suv, sigma)
    extent = np.array(SHAPE_ZYX[::-1]) * np.array(CT_SPACING)
    pet_shape_xyz = np.ceil(extent / np.array(PET_SPACING)).astype(int)
    pet_origin = np.array(origin) - 0.5 * np.array(CT_SPACING) + 0.5 * np.array(PET_SPACING) + rng.uniform(-1.5, 1.5, 3)
    pet_grid = Image(np.zeros(pet_shape_xyz[::-1], np.uint8), PET_SPACING, tuple(pet_origin))
    pet = resample_to(grid.with_array(suv_blur.astype(np.float32)), pet_grid, interpolator="linear", default_value=0.0)
    noisy = pet.array + rng.normal(size=pet.array.shape).astype(np.float32) * 0.08 * np.sqrt(np.maximum(pet.array, 0) + 0.05)
    ct_noisy = ct + rng.normal(scale=10.0, size=ct.shape)

    pid = f"SYN-{index:03d}"
    clinical = {"PatientID": pid, "Age": round(age, 1), "Gender": "M" if rng.random() < 0.8 else "F",
                "Tobacco Consumption": _maybe(rng, int(rng.random() < 0.6)),
                "Alcohol Consumption": _maybe(rng, int(rng.random() < 0.5)),
                "Performance Status": _maybe(rng, int(rng.choice([0, 1, 2], p=[0.5, 0.4, 0.1]))),
                "M-stage": "M1" if rng.random() < 0.05 else "M0",
                "Treatment": "Radiotherapy only" if rng.random() < 0.3 else "Chemoradiotherapy"}
    return {"id": pid, "CT": grid.with_array(np.round(ct_noisy).astype(np.int16)),
            "PET": pet.with_array(np.clip(noisy, 0, None).astype(np.float32)), "mask": grid.with_array(labels),
            "clinical": clinical, "RFS": round(rfs, 1), "Relapse": relapse, "HPV": hpv,
            "truth": {"log_hazard": log_hazard, "hpv_logit": hpv_logit, "MTV_ml": mtv, "NTV_ml": ntv,
                      "SUVmax_N": suvmax_n}}


def write_outcome_cohort(root: str | os.PathLike, n: int, seed: int = 0, first_index: int = 0) -> Path:
    """Write ``n`` patients HECKTOR-style (``<root>/<id>/<id>__CT.nii.gz``, ``__PT.nii.gz``,
    ``<id>.nii.gz``) and ``<root>/outcome_clinical.csv``; returns the CSV path."""
    root = Path(root)
    rows = []
    for index in range(first_index, first_index + n):
        case = make_outcome_case(seed, index)
        folder = root / case["id"]
        write_image(case["CT"], folder / f"{case['id']}__CT.nii.gz")
        write_image(case["PET"], folder / f"{case['id']}__PT.nii.gz")
        write_image(case["mask"], folder / f"{case['id']}.nii.gz")
        rows.append({**case["clinical"], "HPV Status": case["HPV"], "RFS": case["RFS"], "Relapse": case["Relapse"]})
    csv_path = root / CSV_NAME
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CLINICAL_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return csv_path
