"""Challenge data layouts: find the cases under a folder, load them, name the predictions.

HNTS-MRG 2024 (MRI, one folder per patient, numeric ids)::

    <root>/<ID>/preRT/<ID>_preRT_T2.nii.gz      <ID>_preRT_mask.nii.gz
    <root>/<ID>/midRT/<ID>_midRT_T2.nii.gz      <ID>_midRT_mask.nii.gz
                      <ID>_preRT_T2_registered.nii.gz  <ID>_preRT_mask_registered.nii.gz

HECKTOR 2025 task 1 (PET/CT): ``<ID>__CT.nii.gz``, ``<ID>__PT.nii.gz`` and the label
``<ID>.nii.gz``, found anywhere below the root (the 2025 release keeps one folder per
patient; the label may also sit in another folder, as ``labelsTr/`` in HECKTOR 2022).

Plain folders: ``<ID>.nii.gz`` (one image per case) or nnU-Net style ``<ID>_0000.nii.gz``,
``<ID>_0001.nii.gz`` ... (one file per channel), labels optionally in a second folder.

Masks are optional everywhere (a test set has none); missing *inputs* raise
:class:`InputError` naming the file that was expected.

Predictions (:func:`prediction_path`): both challenges scored containers on grand-challenge
that wrote one ``.mha`` label map per case; offline we write NIfTI named so that the
challenge's case id, and for HNTS-MRG the timepoint, can be read back from the name:
HNTS-MRG ``<out>/<ID>_preRT_pred.nii.gz`` (task 1) / ``<out>/<ID>_midRT_pred.nii.gz``
(task 2); HECKTOR ``<out>/<ID>.nii.gz`` (the name of its reference labels); plain
folders ``<out>/<ID>.nii.gz``. All on the grid of the task's first input, labels 0/1/2.

Example:
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> write_hntsmrg_cohort("HNTSMRG24_train", 2, shape=(8, 24, 24))    # two tiny phantom cases
    ['1', '2']
    >>> cases = find_hntsmrg_cases("HNTSMRG24_train")
    >>> t2 = cases[1].load("midRT_T2"); prior = cases[1].load("preRT_mask_registered")
    >>> t2.array.shape, prior.array.shape
    ((8, 24, 24), (8, 24, 24))
    >>> prediction_path("hntsmrg", "out", cases[1].case_id, "midrt")
    PosixPath('out/2_midRT_pred.nii.gz')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .caseids import case_id_from_filename, is_image_file, natural_key
from .errors import InputError
from .protect import check_path_kind
from .image import IMAGE_SUFFIXES, Image, read_image, strip_image_suffix
from .vocab import InputRole, Layout, Task

#: The layout names as strings (kept for callers that test ``layout in LAYOUTS``); the words are :class:`~HNTumorSegLib.vocab.Layout`.
LAYOUTS = Layout.values()
_CHANNEL = re.compile(r"^(?P<id>.+)_(?P<ch>\d{4})$")


def _find_named(folder: Path, stem: str) -> Path | None:
    """``folder/<stem>`` with any image suffix (.nii.gz preferred), or None."""
    for suffix in IMAGE_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _check_root(root: str | os.PathLike, what: str) -> Path:
    p = Path(root)
    check_path_kind(p, f"{what} data folder", "folder")   # a FIFO is named so (issue 22)
    return p


# ---- HNTS-MRG 2024 -----------------------------------------------------------------------

@dataclass
class HNTSMRGCase:
    """Paths of one HNTS-MRG 2024 case; any file may be None (e.g. masks in a test set)."""

    case_id: str
    folder: Path
    preRT_T2: Path | None = None
    preRT_mask: Path | None = None
    midRT_T2: Path | None = None
    midRT_mask: Path | None = None
    preRT_T2_registered: Path | None = None
    preRT_mask_registered: Path | None = None

    FILES = ("preRT_T2", "preRT_mask", "midRT_T2", "midRT_mask", "preRT_T2_registered",
             "preRT_mask_registered")

    def expected_path(self, key: str) -> Path:
        """Where ``key`` (e.g. ``"midRT_T2"``) should be: ``<ID>/midRT/<ID>_midRT_T2.nii.gz``."""
        sub = "preRT" if key.startswith("preRT") and "registered" not in key else "midRT"
        return self.folder / sub / f"{self.case_id}_{key}.nii.gz"

    def path(self, key: str) -> Path:
        """The file for ``key``, or :class:`InputError` naming the file that is missing."""
        if key not in self.FILES:
            raise ValueError(f"unknown HNTS-MRG file {key!r}; one of {self.FILES}")
        p = getattr(self, key)
        if p is None:
            raise InputError(f"HNTS-MRG case {self.case_id} has no {key}", self.expected_path(key),
                             f"add {self.expected_path(key).name} to the case folder")
        return p

    def load(self, key: str) -> Image:
        """Read one file: masks (``*_mask*``) as label maps."""
        return read_image(self.path(key), label="mask" in key, name=f"{key} of case {self.case_id}")

    def inputs(self, task: str) -> dict[str, Path]:
        """Input files of a task: ``prert`` -> ``{"T2"}``, ``midrt`` -> ``{"T2", "prior"}``."""
        if task == Task.PRERT:
            return {InputRole.T2: self.path("preRT_T2")}
        if task == Task.MIDRT:
            return {InputRole.T2: self.path("midRT_T2"), "prior": self.path("preRT_mask_registered")}
        raise InputError(f"task {task!r} does not use HNTS-MRG data", self.folder, "use --task prert or midrt")

    def reference(self, task: str) -> Path | None:
        """The reference mask of a task, or None when the case has none."""
        return self.preRT_mask if task == "prert" else self.midRT_mask


def _is_hntsmrg_case(folder: Path) -> bool:
    return (folder / "preRT").is_dir() or (folder / "midRT").is_dir()


def _hntsmrg_id(folder: Path) -> str:
    """The case id: the folder name, unless the T2 files inside carry another single id
    (a renamed copy such as ``case_12/`` holding ``12_preRT_T2.nii.gz``)."""
    ids = set()
    for sub, key in (("preRT", "preRT_T2"), ("midRT", "midRT_T2")):
        if _find_named(folder / sub, f"{folder.name}_{key}") is not None:
            return folder.name
        if (folder / sub).is_dir():
            ids |= {case_id_from_filename(p.name) for p in (folder / sub).iterdir()
                    if is_image_file(p) and strip_image_suffix(p.name).endswith(f"_{key}")}
    return ids.pop() if len(ids) == 1 else folder.name


def read_hntsmrg_case(folder: str | os.PathLike) -> HNTSMRGCase:
    """Read one case folder ``<ID>/`` (with ``preRT/`` and/or ``midRT/``)."""
    folder = Path(folder)
    if not _is_hntsmrg_case(folder):
        raise InputError("folder is not an HNTS-MRG case (no preRT/ or midRT/ inside)", folder,
                         "give <ID>/ holding preRT/<ID>_preRT_T2.nii.gz and/or midRT/<ID>_midRT_T2.nii.gz")
    cid = _hntsmrg_id(folder)
    case = HNTSMRGCase(cid, folder)
    for key in HNTSMRGCase.FILES:
        setattr(case, key, _find_named(case.expected_path(key).parent, f"{cid}_{key}"))
    if case.preRT_T2 is None and case.midRT_T2 is None:
        raise InputError(f"HNTS-MRG case {cid} has neither a pre-RT nor a mid-RT T2 image",
                         case.expected_path("preRT_T2"),
                         f"name the images {cid}_preRT_T2.nii.gz / {cid}_midRT_T2.nii.gz (the folder name is the id)")
    return case


def find_hntsmrg_cases(root: str | os.PathLike, task: str | None = None) -> list[HNTSMRGCase]:
    """All HNTS-MRG cases under ``root`` (``root`` itself may be one case), sorted by id.

    With ``task`` (``prert`` / ``midrt``) each case must hold that task's inputs, else
    :class:`InputError` names the first missing file.
    """
    root = _check_root(root, "HNTS-MRG")
    folders = [root] if _is_hntsmrg_case(root) else sorted(
        (p for p in root.iterdir() if p.is_dir() and _is_hntsmrg_case(p)), key=lambda p: natural_key(p.name))
    if not folders:
        raise InputError("no HNTS-MRG case folder found (expected <ID>/preRT/ or <ID>/midRT/)", root,
                         "point to the folder that holds the numbered case folders")
    cases = [read_hntsmrg_case(f) for f in folders]
    if task is not None:
        for c in cases:
            c.inputs(task)
    return cases


# ---- HECKTOR 2025 ------------------------------------------------------------------------

@dataclass
class HecktorCase:
    """Paths of one HECKTOR case: CT, PET and (optional) label map ``<ID>.nii.gz``."""

    case_id: str
    ct: Path
    pet: Path
    label: Path | None = None

    def load(self, key: str) -> Image:
        """``"CT"``, ``"PET"`` or ``"label"``."""
        if key == "label":
            if self.label is None:
                raise InputError(f"HECKTOR case {self.case_id} has no label map", self.ct.parent / f"{self.case_id}.nii.gz",
                                 "add the label file <ID>.nii.gz or evaluate without a reference")
            return read_image(self.label, label=True, name=f"label of case {self.case_id}")
        paths = {InputRole.CT: self.ct, InputRole.PET: self.pet}
        if key not in paths:
            raise ValueError(f"unknown HECKTOR file {key!r}; one of CT, PET, label")
        return read_image(paths[key], name=f"{key} of case {self.case_id}")

    def inputs(self, task: str = "petct") -> dict[str, Path]:
        if task != Task.PETCT:
            raise InputError(f"task {task!r} does not use HECKTOR data", self.ct.parent, "use --task petct")
        return {InputRole.CT: self.ct, InputRole.PET: self.pet}

    def reference(self, task: str = "petct") -> Path | None:
        return self.label


def find_hecktor_cases(root: str | os.PathLike) -> list[HecktorCase]:
    """All ``<ID>__CT`` images under ``root`` (recursive) with their ``<ID>__PT`` and label.

    The PET must sit beside the CT (else :class:`InputError` naming it); the label is
    looked for beside the CT, then anywhere under ``root``.
    """
    root = _check_root(root, "HECKTOR")
    files = [p for p in sorted(root.rglob("*")) if is_image_file(p)]
    cts = [p for p in files if strip_image_suffix(p.name).upper().endswith("__CT")]
    if not cts:
        raise InputError("no HECKTOR CT image (<ID>__CT.nii.gz) found", root,
                         "point to the folder holding <ID>__CT.nii.gz, <ID>__PT.nii.gz and <ID>.nii.gz")
    labels: dict[str, list[Path]] = {}
    for p in files:
        stem = strip_image_suffix(p.name)
        if "__" not in stem:
            labels.setdefault(stem, []).append(p)
    cases: list[HecktorCase] = []
    seen: dict[str, Path] = {}
    for ct in cts:
        cid = case_id_from_filename(ct.name)
        if cid in seen:
            raise InputError(f"two CT images for HECKTOR case {cid}: {seen[cid]} and {ct}", root,
                             "keep one copy of each case, or point to one task's folder (e.g. 'Task 1')")
        seen[cid] = ct
        pet = _find_named(ct.parent, f"{cid}__PT") or _find_named(ct.parent, f"{cid}__PET")
        if pet is None:
            raise InputError(f"HECKTOR case {cid} has a CT but no PET", ct.parent / f"{cid}__PT.nii.gz",
                             "put the PET beside the CT, named <ID>__PT.nii.gz")
        label = _find_named(ct.parent, cid)
        if label is None and labels.get(cid):
            if len(labels[cid]) > 1:
                raise InputError(f"several label files for HECKTOR case {cid}: "
                                 f"{', '.join(map(str, labels[cid]))}", root, "keep one label per case")
            label = labels[cid][0]
        cases.append(HecktorCase(cid, ct, pet, label))
    return sorted(cases, key=lambda c: natural_key(c.case_id))


# ---- plain folders -----------------------------------------------------------------------

@dataclass
class PlainCase:
    """A case of a plain folder: its channel files (``_0000``, ``_0001`` ... or one file) and label."""

    case_id: str
    channels: list[Path] = field(default_factory=list)
    label: Path | None = None

    def load(self, channel: int = 0) -> Image:
        return read_image(self.channels[channel], name=f"channel {channel} of case {self.case_id}")


def find_plain_cases(root: str | os.PathLike, labels_dir: str | os.PathLike | None = None) -> list[PlainCase]:
    """Cases of a flat folder: ``<ID>.nii.gz`` or nnU-Net style ``<ID>_0000.nii.gz`` (+ ``_0001`` ...).

    Channel numbers must run 0, 1, 2 ... without gap and every case must have the same
    number of channels. Labels ``<ID>.nii.gz`` come from ``labels_dir`` when given.
    """
    root = _check_root(root, "image")
    files = [p for p in sorted(root.iterdir()) if is_image_file(p)]
    if not files:
        raise InputError("folder holds no image (.nii.gz, .nii, .nrrd, .mha)", root,
                         "point to the folder of <ID>.nii.gz or <ID>_0000.nii.gz files")
    by_id: dict[str, dict[int, Path]] = {}
    for p in files:
        stem = strip_image_suffix(p.name)
        m = _CHANNEL.match(stem)
        cid, ch = (m.group("id"), int(m.group("ch"))) if m else (case_id_from_filename(p.name), 0)
        if ch in by_id.setdefault(cid, {}):
            raise InputError(f"two files for channel {ch} of case {cid}: {by_id[cid][ch].name} and {p.name}",
                             root, "keep one file per case and channel")
        by_id[cid][ch] = p
    n_channels = max(len(v) for v in by_id.values())
    cases = []
    for cid in sorted(by_id, key=natural_key):
        chans = by_id[cid]
        for ch in range(n_channels):
            if ch not in chans:
                raise InputError(f"case {cid} lacks channel {ch} ({n_channels} channels expected)",
                                 root / f"{cid}_{ch:04d}.nii.gz", "add the missing channel file")
        cases.append(PlainCase(cid, [chans[ch] for ch in range(n_channels)]))
    if labels_dir is not None:
        ldir = _check_root(labels_dir, "label")
        for c in cases:
            c.label = _find_named(ldir, c.case_id)
    return cases


# ---- where predictions go ----------------------------------------------------------------

def prediction_path(layout: str, out_dir: str | os.PathLike, case_id: str, task: str) -> Path:
    """Where a prediction of ``case_id`` is written for ``layout`` (see the module docstring)."""
    layout = Layout.parse(layout)
    task = Task.parse(task)
    if not case_id or "/" in case_id or "\\" in case_id or case_id in (".", ".."):
        raise InputError(f"case id {case_id!r} cannot be a file name", fix="use ids without path separators")
    out = Path(out_dir)
    if layout is Layout.HNTSMRG:
        if task is Task.PETCT:
            raise InputError("HNTS-MRG layout holds MRI only, not PET/CT", out, "use --task prert or midrt")
        timepoint = "preRT" if task is Task.PRERT else "midRT"
        return out / f"{case_id}_{timepoint}_pred.nii.gz"
    if layout is Layout.HECKTOR and task is not Task.PETCT:
        raise InputError("HECKTOR layout holds PET/CT only", out, "use --task petct")
    return out / f"{case_id}.nii.gz"


__all__ = ["HNTSMRGCase", "HecktorCase", "PlainCase", "read_hntsmrg_case", "find_hntsmrg_cases",
           "find_hecktor_cases", "find_plain_cases", "prediction_path", "case_id_from_filename",
           "LAYOUTS"]
