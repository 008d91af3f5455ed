"""Case ids from challenge file names, and the pairing of prediction files with reference files.

Names understood (after the image suffix ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha`` ... is removed):

=====================================  ========  =========  ==============================
name                                   case id   timepoint  kind
=====================================  ========  =========  ==============================
``12_midRT_mask`` / ``12_preRT_mask``  ``12``    midRT/pre  label (HNTS-MRG reference)
``12_midRT_T2``, ``12_preRT_T2``       ``12``    ...        image
``12_preRT_T2_registered``             ``12``    preRT      image
``12_preRT_mask_registered``           ``12``    preRT      prior (a registered mask, never a reference)
``12_midRT``, ``12_midRT_pred`` ...    ``12``    midRT      label (a prediction named after the case)
``CHUM-001__CT`` / ``CHUM-001__PT``    ``CHUM-001``  -      image (HECKTOR)
``CHUM-001`` (any other name)          the name  -          label (HECKTOR label, plain ``<id>``)
=====================================  ========  =========  ==============================

The HNTS-MRG folder layout ``<ID>/midRT/<ID>_midRT_mask.nii.gz`` is covered because folders
are searched recursively and the id comes from the file name. Hidden files (names starting
with ``.``, e.g. the temporary files of an atomic write) are ignored.

Pairing (:func:`match_cases`): a prediction goes with the reference of the same case id; when
the reference side holds both a pre-RT and a mid-RT mask of one case, the prediction's own
timepoint (``<ID>_midRT...``) or the ``timepoint`` argument chooses, otherwise it is an error.

Example:
    >>> case_id_from_filename("12_midRT_mask.nii.gz")
    '12'
    >>> case_id_from_filename("CHUM-001__CT.nii.gz")
    'CHUM-001'
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> write_hntsmrg_cohort("HNTSMRG24_train", 2, shape=(8, 24, 24))    # two tiny phantom cases
    ['1', '2']
    >>> import shutil; _ = shutil.copytree("HNTSMRG24_train/1/midRT", "preds")  # "predicted" = the reference
    >>> matched = match_cases("preds/", "HNTSMRG24_train/", timepoint="midRT")
    >>> [(p.case_id, str(p.pred.path), str(p.ref.path)) for p in matched.pairs]
    [('1', 'preds/1_midRT_mask.nii.gz', 'HNTSMRG24_train/1/midRT/1_midRT_mask.nii.gz')]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .protect import check_path_kind
from .image import IMAGE_SUFFIXES, strip_image_suffix
from .vocab import CaseFileKind, Timepoint

TIMEPOINTS = Timepoint.values()
LABEL, IMAGE, PRIOR = CaseFileKind.LABEL, CaseFileKind.IMAGE, CaseFileKind.PRIOR

_HECKTOR_IMAGE = re.compile(r"^(?P<id>.+?)__(?P<modality>CT|PT|PET)$", re.IGNORECASE)
_HNTSMRG = re.compile(r"^(?P<id>.+?)_(?P<tp>preRT|midRT)(?:_(?P<rest>.+))?$")


@dataclass(frozen=True)
class CaseFile:
    """One file and what its name says: case id, timepoint (or None) and kind."""

    path: Path
    case_id: str
    timepoint: str | None
    kind: str  # LABEL, IMAGE or PRIOR

    @property
    def display(self) -> str:
        return f"{self.case_id}_{self.timepoint}" if self.timepoint else self.case_id


@dataclass(frozen=True)
class CasePair:
    case_id: str
    pred: CaseFile
    ref: CaseFile


@dataclass
class MatchResult:
    """Matched pairs plus the files left without a partner (the caller warns about them)."""

    pairs: list[CasePair] = field(default_factory=list)
    unmatched_pred: list[CaseFile] = field(default_factory=list)
    unmatched_ref: list[CaseFile] = field(default_factory=list)


def parse_case_filename(name: str | os.PathLike) -> tuple[str, str | None, str]:
    """``(case_id, timepoint or None, kind)`` for a file name (see the module table)."""
    stem = strip_image_suffix(Path(name).name)
    hecktor = _HECKTOR_IMAGE.match(stem)
    if hecktor:
        return hecktor.group("id"), None, IMAGE
    hnts = _HNTSMRG.match(stem)
    if hnts:
        rest = (hnts.group("rest") or "").lower()
        if rest.startswith("t2"):
            kind = IMAGE
        elif rest == "mask_registered":
            kind = PRIOR
        else:
            kind = LABEL
        return hnts.group("id"), hnts.group("tp"), kind
    return stem, None, LABEL


def case_id_from_filename(name: str | os.PathLike) -> str:
    """The case id a file name carries: ``"12_midRT_mask.nii.gz"`` -> ``"12"``, ``"P1__PT.nii.gz"`` -> ``"P1"``."""
    return parse_case_filename(name)[0]


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(IMAGE_SUFFIXES)


def describe(path: str | os.PathLike) -> CaseFile:
    case_id, timepoint, kind = parse_case_filename(path)
    return CaseFile(Path(path), case_id, timepoint, kind)


def find_label_files(root: str | os.PathLike, role: str = "reference") -> list[CaseFile]:
    """Label files under ``root`` (searched recursively; images and registered priors skipped).

    ``role`` ("reference" or "prediction") only words the error messages.
    """
    root = Path(root)
    check_path_kind(root, f"{role} folder", "folder")   # a FIFO is named so (issue 22)
    found = sorted(root.rglob("*"))
    files = [describe(p) for p in found if is_image_file(p)]
    files += [_contour_case_file(p) for p in found if _is_dicom_contours(p)]   # RTSTRUCT / SEG (issue 23)
    labels = [f for f in files if f.kind == LABEL]
    if not labels:
        raise InputError(f"{role} folder holds no label map (.nii.gz, .nii, .nrrd, .mha) nor RTSTRUCT/SEG (.dcm)", root,
                         "point to the folder of the label files")
    return labels


def _is_dicom_contours(path: Path) -> bool:
    """A ``.dcm`` file holding an RTSTRUCT or a SEG (read by content; image slices are not)."""
    if path.name.startswith(".") or not path.name.lower().endswith(".dcm") or not path.is_file():
        return False
    from .dicom.contours_in import is_contour_file

    return is_contour_file(path)


def _contour_case_file(path: Path) -> CaseFile:
    """``12_midRT_mask.dcm`` / ``12.dcm``: the case id and timepoint as for a label map's name."""
    case_id, timepoint, _ = parse_case_filename(path.name[:-len(".dcm")])
    return CaseFile(path, case_id, timepoint, LABEL)


def _single_file(path: Path, role: str) -> CaseFile:
    check_path_kind(path, f"{role} file", "file")
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        from .dicom.contours_in import is_contour_file   # read by content, whatever its name (issue 23)

        if is_contour_file(path):
            return CaseFile(path, strip_image_suffix(path.name), None, LABEL)
        raise InputError(f"{role} is not a NIfTI, NRRD or MetaImage file, nor a DICOM RTSTRUCT or SEG", path,
                         "give a label map (.nii.gz, .nii, .nrrd, .mha), an RTSTRUCT or a SEG file")
    info = describe(path)
    if info.kind == IMAGE:
        raise InputError(f"{role} file is named as an image (CT, PET or T2), not a label map", path,
                         "give the mask file (e.g. <ID>_midRT_mask.nii.gz or <ID>.nii.gz)")
    return info


def _index_references(refs: list[CaseFile], timepoint: str | None) -> dict[str, list[CaseFile]]:
    by_id: dict[str, list[CaseFile]] = {}
    seen: dict[tuple[str, str | None], CaseFile] = {}
    for ref in refs:
        if timepoint and ref.timepoint not in (None, timepoint):
            continue
        key = (ref.case_id, ref.timepoint)
        if key in seen:
            raise InputError(f"two reference files for case {ref.display}: {seen[key].path} and {ref.path}",
                             ref.path.parent, "keep one reference label per case")
        seen[key] = ref
        by_id.setdefault(ref.case_id, []).append(ref)
    return by_id


def _pick_reference(pred: CaseFile, by_id: dict[str, list[CaseFile]], timepoint: str | None) -> CaseFile | None:
    candidates = by_id.get(pred.case_id, [])
    wanted = pred.timepoint or timepoint
    if wanted:
        candidates = [r for r in candidates if r.timepoint in (None, wanted)]
    if len(candidates) > 1:
        raise InputError(
            f"case {pred.case_id} has references at several timepoints "
            f"({', '.join(sorted(str(r.timepoint) for r in candidates))}) and the prediction does not say which",
            pred.path, "add --timepoint midRT or --timepoint preRT (or name the prediction <ID>_midRT.nii.gz)")
    return candidates[0] if candidates else None


def match_cases(pred: str | os.PathLike, ref: str | os.PathLike, timepoint: str | None = None) -> MatchResult:
    """Pair prediction file(s) with reference file(s) by case id.

    ``pred`` and ``ref`` are each a label file or a folder (searched recursively).
    Two files are paired whatever their names (the case id is the reference's); a file and a
    folder, or two folders, are paired by case id. Raises :class:`InputError` for a missing
    path, a file named as an image, duplicates, an ambiguous timepoint, or no pair at all.
    """
    if timepoint is not None and timepoint not in TIMEPOINTS:
        raise InputError(f"unknown timepoint {timepoint!r}", fix="use preRT or midRT")
    pred_path, ref_path = Path(pred), Path(ref)
    check_path_kind(pred_path, "prediction path", "file or folder")
    check_path_kind(ref_path, "reference path", "file or folder")

    if pred_path.is_file() and ref_path.is_file():
        p, r = _single_file(pred_path, "prediction"), _single_file(ref_path, "reference")
        return MatchResult(pairs=[CasePair(r.case_id, p, r)])

    preds = [_single_file(pred_path, "prediction")] if pred_path.is_file() else find_label_files(pred_path, "prediction")
    refs = [_single_file(ref_path, "reference")] if ref_path.is_file() else find_label_files(ref_path, "reference")
    if timepoint:
        preds = [p for p in preds if p.timepoint in (None, timepoint)]
    by_id = _index_references(refs, timepoint)

    result = MatchResult()
    used: dict[Path, CaseFile] = {}
    for p in preds:
        r = _pick_reference(p, by_id, timepoint)
        if r is None:
            result.unmatched_pred.append(p)
            continue
        if r.path in used:
            raise InputError(f"two predictions for case {r.display}: {used[r.path].path} and {p.path}",
                             p.path.parent, "keep one prediction per case")
        used[r.path] = p
        result.pairs.append(CasePair(r.case_id, p, r))
    result.unmatched_ref = [r for refs_of_id in by_id.values() for r in refs_of_id if r.path not in used]

    if not result.pairs:
        some = ", ".join(sorted({p.case_id for p in preds})[:5]) or "none"
        raise InputError(f"no prediction matches a reference case id (prediction ids: {some})", pred_path,
                         "name predictions <ID>.nii.gz or <ID>_midRT_mask.nii.gz after the reference cases")
    # the same id at two timepoints (both scored): keep the keys of the result distinct
    counts: dict[str, int] = {}
    for pair in result.pairs:
        counts[pair.case_id] = counts.get(pair.case_id, 0) + 1
    result.pairs = [CasePair(pair.ref.display if counts[pair.case_id] > 1 else pair.case_id, pair.pred, pair.ref)
                    for pair in result.pairs]
    result.pairs.sort(key=lambda pair: natural_key(pair.case_id))
    return result


def natural_key(text: str) -> list:
    """Sort "2" before "10" (HNTS-MRG ids are numbers)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]
