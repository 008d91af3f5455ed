"""Clinical variables: reading HECKTOR 2025 task 2/3 tables (or any CSV with a column map) and
seed 004's encoding (median imputation + z-score, "Unknown" + one-hot, with training statistics).

HECKTOR 2025 columns (source: the challenge's dataset page, hecktor25.grand-challenge.org/dataset,
"HECKTOR_2025_Training_Task_2.csv ... Center, gender, age, tobacco and alcohol use, performance
status, treatment (radiotherapy only or chemoradiotherapy), M-stage, relapse indicator and RFS";
exact header spellings from the authors' released code, Liiiii2101/HECKTOR2025-MEDAI,
``Task2_inference.py``): ``PatientID``, ``Age``, ``Gender``, ``Tobacco Consumption``,
``Alcohol Consumption``, ``Performance Status``, ``Treatment``, ``M-stage``, ``HPV Status``
(task 3 target, 0/1), ``RFS`` (days) and ``Relapse`` (1 relapse, 0 censored) (task 2 targets).
Headers are matched after replacing non-breaking spaces and trimming (the released code does the
same); a BOM is ignored. Any other CSV works with ``column_map`` ({our name: its header}).

Encoding (seed 004 section 2.2/3.2, released ``build_and_save_preprocessors``):

* continuous: ``Age`` and the imaging biomarkers ``MTV_ml``, ``NTV_ml``, ``SUVmax_T``,
  ``SUVmax_N``, ``TLG``, ``NLG`` (the paper's MTV, NTV, T-SUV, N-SUV, TLG, NLG, computed by
  :mod:`.biomarkers`); a missing value (empty, NaN, NA, null, N/A; or an empty label's null
  SUV) becomes the training median, then ``(x - mean) / std`` with the training mean and
  population std (scikit-learn's StandardScaler; a constant column gets std 1);
* categorical: ``Gender``, ``Tobacco Consumption``, ``Alcohol Consumption``,
  ``Performance Status``, ``M-stage``, ``Treatment``; missing -> ``"Unknown"``, then one-hot
  over the training vocabulary (a value never seen in training gives all zeros, as the
  released code's ``reindex(fill_value=0)``). Numbers are written canonically first, so
  ``1``, ``1.0`` and ``"1"`` are one category (the released code would split them).

The statistics travel in the model card (:meth:`ClinicalEncoder.to_dict`).

Example:
    >>> table = read_clinical_table("HECKTOR_2025_Training_Task_2.csv")
    >>> enc = ClinicalEncoder.fit([{**table[pid], **imaging[pid]} for pid in train_ids])
    >>> x = enc.transform({**table["CHUM-001"], **imaging["CHUM-001"]})   # float32 vector
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import InputError

ID_COLUMN = "PatientID"
CONTINUOUS = ("Age",)
IMAGING = ("MTV_ml", "NTV_ml", "SUVmax_T", "SUVmax_N", "TLG", "NLG")
CATEGORICAL = ("Gender", "Tobacco Consumption", "Alcohol Consumption", "Performance Status", "M-stage", "Treatment")
TARGETS = ("RFS", "Relapse", "HPV Status")
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "unknown"})
UNKNOWN = "Unknown"


def _clean_header(name: str) -> str:
    return name.replace("\xa0", " ").replace("\ufeff", "").strip()


def is_missing(value: Any) -> bool:
    """None, NaN, or one of the missing-value spellings (case-insensitive)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING


def to_float(value: Any) -> float | None:
    """A number, or ``None`` when missing; raises ValueError for text that is not a number."""
    if is_missing(value):
        return None
    return float(value)


def category(value: Any) -> str:
    """Canonical category text: missing -> "Unknown", 1 / 1.0 / "1" -> "1", text trimmed."""
    if is_missing(value):
        return UNKNOWN
    if isinstance(value, bool):
        return str(int(value))
    try:
        f = float(value)
        if math.isfinite(f):
            return str(int(f)) if f == int(f) else repr(f)
    except (TypeError, ValueError):
        pass
    return str(value).strip()


def read_clinical_table(path: str | os.PathLike, column_map: Mapping[str, str] | None = None,
                        id_column: str = ID_COLUMN) -> dict[str, dict]:
    """Rows of a clinical CSV keyed by patient id, with our column names.

    ``column_map`` maps our names (``Age``, ``Gender``, ..., ``RFS``) to the file's headers.
    Raises :class:`InputError` for a missing file, a missing id column, or a duplicate id.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("clinical table does not exist", p, "check the path")
    rename = {_clean_header(v): k for k, v in (column_map or {}).items()}
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.DictReader(fh, dialect=dialect)
            rows = list(reader)
            headers = [_clean_header(h) for h in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the clinical table ({type(exc).__name__})", p, "give a UTF-8 CSV file") from None
    names = [rename.get(h, h) for h in headers]
    id_name = rename.get(_clean_header(id_column), _clean_header(id_column))
    if id_name not in names and id_column not in names:
        raise InputError(f"clinical table has no patient id column {id_column!r}", p,
                         "name the id column PatientID or map it (--id-column)")
    table: dict[str, dict] = {}
    for raw in rows:
        row = {n: v for n, v in zip(names, raw.values())}
        pid = str(row.get(id_column, row.get(id_name, "")) or "").strip()
        if not pid:
            continue
        if pid in table:
            raise InputError(f"patient {pid} appears twice in the clinical table", p, "keep one row per patient")
        row[ID_COLUMN] = pid
        table[pid] = row
    return table


def read_clinical_record(path: str | os.PathLike, patient: str | None = None,
                         column_map: Mapping[str, str] | None = None) -> dict:
    """One patient's clinical values from a JSON object (HECKTOR's ``ehr.json`` style) or a CSV
    (its only row, or the row of ``patient``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("clinical file does not exist", p, "check the path")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise InputError("clinical JSON is not valid JSON", p, "give a JSON object of clinical values") from None
        if not isinstance(data, dict):
            raise InputError("clinical JSON is not an object", p, 'give {"Age": 61, "Gender": "M", ...}')
        rename = {_clean_header(v): k for k, v in (column_map or {}).items()}
        return {rename.get(_clean_header(k), _clean_header(k)): v for k, v in data.items()}
    table = read_clinical_table(p, column_map)
    if patient is not None:
        if patient not in table:
            raise InputError(f"patient {patient} is not in the clinical table", p, "check --patient")
        return table[patient]
    if len(table) != 1:
        raise InputError(f"clinical table holds {len(table)} patients", p, "give --patient ID to pick one")
    return next(iter(table.values()))


@dataclass
class ClinicalEncoder:
    """Seed 004's clinical encoding with statistics from the training patients (module docstring)."""

    continuous: list[str] = field(default_factory=lambda: [*CONTINUOUS, *IMAGING])
    categorical: list[str] = field(default_factory=lambda: list(CATEGORICAL))
    median: dict[str, float] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    vocabulary: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, records: Iterable[Mapping[str, Any]], continuous: Iterable[str] | None = None,
            categorical: Iterable[str] | None = None) -> "ClinicalEncoder":
        records = list(records)
        enc = cls() if continuous is None and categorical is None else cls(
            list(continuous if continuous is not None else (*CONTINUOUS, *IMAGING)),
            list(categorical if categorical is not None else CATEGORICAL))
        for col in enc.continuous:
            values = np.array([v for v in (_number(r.get(col), col) for r in records) if v is not None], float)
            med = float(np.median(values)) if len(values) else 0.0
            filled = np.array([med if v is None else v for v in (_number(r.get(col), col) for r in records)], float)
            std = float(filled.std()) if len(filled) else 1.0
            enc.median[col] = med
            enc.mean[col] = float(filled.mean()) if len(filled) else 0.0
            enc.std[col] = std if std > 0 else 1.0
        for col in enc.categorical:
            enc.vocabulary[col] = sorted({category(r.get(col)) for r in records})
        return enc

    @property
    def feature_names(self) -> list[str]:
        return [*self.continuous, *[f"{c}_{v}" for c in self.categorical for v in self.vocabulary[c]]]

    @property
    def size(self) -> int:
        return len(self.feature_names)

    def transform(self, record: Mapping[str, Any]) -> np.ndarray:
        """The float32 feature vector of one patient."""
        out = []
        for col in self.continuous:
            v = _number(record.get(col), col)
            v = self.median[col] if v is None else v
            out.append((v - self.mean[col]) / self.std[col])
        for col in self.categorical:
            value = category(record.get(col))
            out.extend(1.0 if value == v else 0.0 for v in self.vocabulary[col])
        return np.asarray(out, np.float32)

    def to_dict(self) -> dict:
        return {"continuous": list(self.continuous), "categorical": list(self.categorical),
                "median": dict(self.median), "mean": dict(self.mean), "std": dict(self.std),
                "vocabulary": {k: list(v) for k, v in self.vocabulary.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClinicalEncoder":
        enc = cls(list(data["continuous"]), list(data["categorical"]), dict(data["median"]), dict(data["mean"]),
                  dict(data["std"]), {k: list(v) for k, v in data["vocabulary"].items()})
        for col in enc.continuous:
            if col not in enc.median or col not in enc.mean or col not in enc.std:
                raise KeyError(col)
        for col in enc.categorical:
            if col not in enc.vocabulary:
                raise KeyError(col)
        return enc


def _number(value: Any, column: str) -> float | None:
    try:
        return to_float(value)
    except (TypeError, ValueError):
        raise InputError(f"clinical value {value!r} of {column} is not a number", None,
                         f"give a number or leave {column} empty") from None


def imaging_features(biomarkers: Mapping[str, Any]) -> dict[str, float | None]:
    """The continuous imaging variables from :func:`~.biomarkers.compute_biomarkers`'s ``patient`` dict."""
    return {k: biomarkers.get(k) for k in IMAGING}
