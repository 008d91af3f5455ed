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

Empty label (issue 28, released rule): the released inference
(``preprocess_clinical_data_for_inference_docker``) starts every continuous value as NaN and
fills MTV, T_SUV, TLG only when the mask holds label 1 (NTV, N_SUV, NLG only with label 2), so
an empty GTVp gives **MTV = the training median**, not 0. We do the same
(:class:`ClinicalEncoder`'s ``empty_label``, default :data:`DEFAULT_EMPTY_LABEL` = ``median``):
an empty label's volume is missing in training and at prediction alike, and the median that
replaces it is the one fitted on the fold's training patients that have the label, stored with
the rule in the outcome model card (``model.json``, each fold's ``clinical.median`` and
``clinical.empty_label``; written by ``outcome-train``, ``--empty-label zero`` keeps 0.0). A card
without ``empty_label`` (written before issue 28) was trained with 0.0 and is read as ``zero``.
The biomarker report itself (``hntumorseg biomarkers``) still says 0.0 mL. Cost, measured on the
synthetic cohort (Testing/test_outcome_training.py, whose HPV law uses nodal volume): held-out
HPV AUC 0.57 with ``median`` vs 0.75 with ``zero`` - an N0 patient's true NTV of 0 is lost.

Values are checked where they enter (issue 22): a continuous value must be a finite number
within :data:`RANGES` (``Age`` 0-130 years) or, for a column without a range, within
:data:`MAX_ABS` - ``Infinity`` or ``1e308`` would overflow the float32 network to a risk of NaN.
The error names the file, the patient and the column (exit 2).

Example:
    >>> from HNTumorSegLib.phantoms.outcome_cohort import write_outcome_cohort
    >>> csv_path = write_outcome_cohort("cohort/", n=4, seed=0)     # HECKTOR 2025 task 2's columns
    >>> table = read_clinical_table(csv_path)
    >>> list(table)
    ['SYN-000', 'SYN-001', 'SYN-002', 'SYN-003']
    >>> imaging = {pid: {"MTV_ml": 10.0 + i, "SUVmax_T": 8.0 + i} for i, pid in enumerate(table)}  # PET biomarkers
    >>> train_ids = ["SYN-000", "SYN-001", "SYN-002"]
    >>> enc = ClinicalEncoder.fit([{**table[pid], **imaging[pid]} for pid in train_ids])
    >>> x = enc.transform({**table["SYN-003"], **imaging["SYN-003"]})   # float32 vector
    >>> x.dtype, x.ndim
    (dtype('float32'), 1)
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import InputError
from ..fileio import loads_json
from ..protect import check_path_kind
from ..vocab import EmptyLabel

ID_COLUMN = "PatientID"
CONTINUOUS = ("Age",)
IMAGING = ("MTV_ml", "NTV_ml", "SUVmax_T", "SUVmax_N", "TLG", "NLG")
CATEGORICAL = ("Gender", "Tobacco Consumption", "Alcohol Consumption", "Performance Status", "M-stage", "Treatment")
TARGETS = ("RFS", "Relapse", "HPV Status")
#: Plausible range of each continuous clinical variable a user types (outside: a typo or a unit slip).
RANGES = {"Age": (0.0, 130.0)}
#: Largest magnitude of any other continuous value: beyond it the z-score overflows float32.
MAX_ABS = 1e9
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "unknown"})
#: What the model takes for an empty label's volume: missing -> training median, as released (issue 28).
DEFAULT_EMPTY_LABEL = EmptyLabel.MEDIAN
#: the rule of cards written before issue 28 (no ``empty_label`` in their clinical statistics)
LEGACY_EMPTY_LABEL = EmptyLabel.ZERO
#: the volumes the rule applies to (an empty GTVp's MTV, an empty GTVn's NTV)
VOLUMES = tuple(c for c in IMAGING if c.endswith("TV_ml"))   # MTV_ml, NTV_ml
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
    """A finite number, or ``None`` when missing; ValueError for text that is not a number, for
    ``inf`` and for values beyond the float range (``1e999``)."""
    if is_missing(value):
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


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
    check_path_kind(p, "clinical table", "file")   # a FIFO is named so, not "does not exist" (issue 22)
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
    check_path_kind(p, "clinical file", "file")
    if p.suffix.lower() == ".json":
        try:   # depth-limited; NaN/Infinity kept here so that the check below names the field
            data = loads_json(p.read_bytes(), "clinical JSON", p, "give a JSON object of clinical values",
                              finite=False)
        except OSError as exc:
            raise InputError(f"cannot read the clinical JSON ({exc.strerror or exc})", p, "check the file") from None
        if not isinstance(data, dict):
            raise InputError("clinical JSON is not an object", p, 'give {"Age": 61, "Gender": "M", ...}')
        rename = {_clean_header(v): k for k, v in (column_map or {}).items()}
        record = {rename.get(_clean_header(k), _clean_header(k)): v for k, v in data.items()}
    else:
        table = read_clinical_table(p, column_map)
        if patient is not None:
            if patient not in table:
                raise InputError(f"patient {patient} is not in the clinical table", p, "check --patient")
            record = table[patient]
        elif len(table) != 1:
            raise InputError(f"clinical table holds {len(table)} patients", p, "give --patient ID to pick one")
        else:
            record = next(iter(table.values()))
    check_record(record, p)
    return record


def check_record(record: Mapping[str, Any], path: str | os.PathLike | None = None,
                 columns: Iterable[str] = (*CONTINUOUS, *IMAGING)) -> None:
    """InputError naming the patient and column when a continuous value is not a finite number in range."""
    for column in columns:
        if column in record:
            _number(record[column], column, record.get(ID_COLUMN), path)


@dataclass
class ClinicalEncoder:
    """Seed 004's clinical encoding with statistics from the training patients (module docstring)."""

    continuous: list[str] = field(default_factory=lambda: [*CONTINUOUS, *IMAGING])
    categorical: list[str] = field(default_factory=lambda: list(CATEGORICAL))
    median: dict[str, float] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    vocabulary: dict[str, list[str]] = field(default_factory=dict)
    empty_label: str = DEFAULT_EMPTY_LABEL.value

    @classmethod
    def fit(cls, records: Iterable[Mapping[str, Any]], continuous: Iterable[str] | None = None,
            categorical: Iterable[str] | None = None,
            empty_label: EmptyLabel | str = DEFAULT_EMPTY_LABEL) -> "ClinicalEncoder":
        records = list(records)
        enc = cls() if continuous is None and categorical is None else cls(
            list(continuous if continuous is not None else (*CONTINUOUS, *IMAGING)),
            list(categorical if categorical is not None else CATEGORICAL))
        enc.empty_label = EmptyLabel.parse(empty_label, "empty label").value
        for col in enc.continuous:
            numbers = [enc._value(r, col) for r in records]
            values = np.array([v for v in numbers if v is not None], float)
            med = float(np.median(values)) if len(values) else 0.0
            filled = np.array([med if v is None else v for v in numbers], float)
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
            v = self._value(record, col)
            v = self.median[col] if v is None else v
            out.append((v - self.mean[col]) / self.std[col])
        for col in self.categorical:
            value = category(record.get(col))
            out.extend(1.0 if value == v else 0.0 for v in self.vocabulary[col])
        return np.asarray(out, np.float32)

    def _value(self, record: Mapping[str, Any], col: str) -> float | None:
        """The checked number of ``col``, None when missing; an empty label's volume is missing under ``median``."""
        v = _number(record.get(col), col, record.get(ID_COLUMN))
        if v == 0.0 and col in VOLUMES and self.empty_label == EmptyLabel.MEDIAN.value:
            return None
        return v

    def to_dict(self) -> dict:
        return {"continuous": list(self.continuous), "categorical": list(self.categorical),
                "median": dict(self.median), "mean": dict(self.mean), "std": dict(self.std),
                "vocabulary": {k: list(v) for k, v in self.vocabulary.items()}, "empty_label": self.empty_label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClinicalEncoder":
        enc = cls(list(data["continuous"]), list(data["categorical"]), dict(data["median"]), dict(data["mean"]),
                  dict(data["std"]), {k: list(v) for k, v in data["vocabulary"].items()},
                  EmptyLabel.parse(data.get("empty_label", LEGACY_EMPTY_LABEL.value), "empty label").value)
        for col in enc.continuous:
            if col not in enc.median or col not in enc.mean or col not in enc.std:
                raise KeyError(col)
        for col in enc.categorical:
            if col not in enc.vocabulary:
                raise KeyError(col)
        return enc


def _number(value: Any, column: str, patient: Any = None, path: str | os.PathLike | None = None) -> float | None:
    """``value`` as a finite number in range (:data:`RANGES`, :data:`MAX_ABS`), or None when missing."""
    who = f"patient {patient}: " if patient not in (None, "") else ""
    if isinstance(value, bool):
        value = str(value)   # true/false are not numbers (float(True) would be 1.0)
    try:
        number = to_float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        kind = "is not finite" if "finite" in str(exc) else "is not a number"
        raise InputError(f"{who}clinical value {str(value)[:40]!r} of {column} {kind}", path,
                         f"give a number or leave {column} empty") from None
    if number is None:
        return None
    low, high = RANGES.get(column, (-MAX_ABS, MAX_ABS))
    if not low <= number <= high:
        raise InputError(f"{who}clinical value {number:g} of {column} is outside {low:g} to {high:g}", path,
                         f"fix {column} (a typo or a unit slip?) or leave it empty")
    return number


def imaging_features(biomarkers: Mapping[str, Any]) -> dict[str, float | None]:
    """The continuous imaging variables from :func:`~.biomarkers.compute_biomarkers`'s ``patient`` dict.

    An empty label's volume is 0.0 here; the encoder's ``empty_label`` rule decides what the
    model takes for it (module docstring).
    """
    return {k: biomarkers.get(k) for k in IMAGING}
