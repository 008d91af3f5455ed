"""A task's inputs: pick them from the scene's volumes by name, or load a whole case folder.

Tasks and their inputs (docs/design.md): ``prert`` T2; ``midrt`` T2 (mid-RT) + prior (registered
pre-RT mask, a label map volume or a segmentation); ``petct`` CT + PET.

Auto-assignment (:func:`auto_assign`) scores every volume's name against each role's patterns
(case-insensitive, on word pieces split at ``_``, ``-``, space, ``.``): e.g. ``12_midRT_T2``
is the mid-RT T2, ``12_preRT_T2_registered`` is *not* (registered images are priors' companions),
``CHUM-001__PT`` is the PET, ``CT`` or ``..._CT`` the CT. Label map volumes are only considered
for the prior. Roles without a candidate stay unassigned (the widget shows an empty selector).

Loading a folder (:func:`load_case_folder`): an HNTS-MRG case (``<ID>/preRT``, ``<ID>/midRT``)
or a HECKTOR case (``<ID>__CT`` + ``<ID>__PT`` [+ ``<ID>`` label]) is read with
:mod:`HNTumorSegLib.datasets` and every image becomes a node under a subject-hierarchy patient
``<ID>`` and study (``preRT``, ``midRT``, ``PET/CT``), masks as label map volumes.

Example:
    >>> from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene = make_scene().scene
    >>> _ = write_hntsmrg_cohort("HNTSMRG24", 1, shape=(8, 24, 24))    # a phantom case "1"
    >>> nodes = load_case_folder(scene, "HNTSMRG24/1")
    >>> {role: node.GetName() for role, node in auto_assign(scene, "midrt").items()}
    {'T2': '1_midRT_T2', 'prior': '1_preRT_mask_registered'}
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError
from ..vocab import Task
from .mrml import image_from_volume_node, sh_item, study_item, volume_node_from_image

TASK_TITLES = {Task.PRERT: "Pre-RT MRI (T2)", Task.MIDRT: "Mid-RT MRI (T2 + pre-RT prior)", Task.PETCT: "PET/CT"}
TASK_INPUTS = {Task.PRERT: ("T2",), Task.MIDRT: ("T2",), Task.PETCT: ("CT", "PET")}
TASK_PRIOR = {Task.PRERT: False, Task.MIDRT: True, Task.PETCT: False}

# role -> (required word pieces (any), boosting pieces, excluded pieces)
_PATTERNS = {
    ("prert", "T2"): ({"t2", "t2w"}, {"prert", "pre"}, {"registered", "reg", "mask", "midrt", "mid"}),
    ("midrt", "T2"): ({"t2", "t2w"}, {"midrt", "mid"}, {"registered", "reg", "mask", "prert"}),
    ("petct", "CT"): ({"ct"}, set(), {"mask", "pt", "pet"}),
    ("petct", "PET"): ({"pt", "pet", "suv", "fdg"}, set(), {"mask", "ct"}),
    ("midrt", "prior"): ({"mask", "label", "seg", "segmentation", "gtv"}, {"registered", "reg", "prert", "pre"},
                         {"midrt"}),
}


def _pieces(name: str) -> set[str]:
    return {p for p in re.split(r"[_\-\s\.]+", (name or "").lower()) if p}


def score_name(name: str, task: str, role: str) -> int:
    """0 when ``name`` does not fit the role, else higher for a better fit."""
    need, boost, exclude = _PATTERNS[(task, role)]
    pieces = _pieces(name)
    if not pieces & need or pieces & exclude:
        return 0
    return 1 + len(pieces & boost)


def _volumes(scene, label: bool | None) -> list:
    out = []
    for cls in ("vtkMRMLScalarVolumeNode",):  # label maps are a subclass: filter below
        for i in range(scene.GetNumberOfNodesByClass(cls)):
            node = scene.GetNthNodeByClass(i, cls)
            is_label = node.IsA("vtkMRMLLabelMapVolumeNode")
            if node.GetAttribute("HNTumorSeg.Role") or node.GetHideFromEditors():
                continue  # our own previews and results are never inputs
            if label is None or is_label == label:
                out.append(node)
    return out


def auto_assign(scene, task: str) -> dict:
    """``{role: node}`` for the task's inputs (and ``prior`` for midrt) by name; best score wins."""
    task = Task.parse(task)
    roles = list(TASK_INPUTS[task]) + (["prior"] if TASK_PRIOR[task] else [])
    out = {}
    for role in roles:
        if role == "prior":
            candidates = _volumes(scene, label=True) + [
                scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
                if not scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetAttribute("HNTumorSeg.Role")]
        else:
            candidates = _volumes(scene, label=False)
        scored = [(score_name(n.GetName(), task, role), -k, n) for k, n in enumerate(candidates)]
        scored = [s for s in scored if s[0] > 0 and s[2] not in out.values()]
        if scored:
            out[role] = max(scored, key=lambda s: (s[0], s[1]))[2]
    return out


def load_image_node(scene, path: str | os.PathLike, label: bool = False, name: str | None = None, study: int = 0):
    """Read one image file (NIfTI, NRRD, DICOM folder) into a new volume node (label map when ``label``)."""
    from ..image import strip_image_suffix

    p = Path(path)
    geometry = None
    if p.is_dir():  # a DICOM folder: its one image series (never "every file of the folder"); PET in SUV
        from ..dicom.select import select_series

        geometry = select_series(p, need_frame_of_reference=False)  # export checks it, with its own line
    from ..dicom.read import read_volume

    img = read_volume(p, label=label, series=geometry.uid if geometry else None)
    node = volume_node_from_image(scene, img, name or strip_image_suffix(p.name), label=label)
    node.SetAttribute("HNTumorSeg.SourcePath", str(p))
    if geometry is not None:  # the series' own files, for DICOM SEG / RTSTRUCT export
        node.SetAttribute("HNTumorSeg.SourceFiles", "|".join(str(f) for f in geometry.files))
    if study:
        scene.GetSubjectHierarchyNode().SetItemParent(sh_item(scene, node), study)
    return node


def request_input_image(node, role: str, file_for_instance=None):
    """The image a task input's volume node sends to the worker (Apply): its voxels on their world
    geometry; the PET through the one PET path in SUVbw (:func:`.dicom_source.pet_suv_image`: a
    PET loaded from DICOM converted by its files' headers, Slicer's node holding Bq/mL; issue 24).
    ``file_for_instance``: Slicer's ``slicer.dicomDatabase.fileForInstance`` (None: no database)."""
    if role == "PET":
        from .dicom_source import pet_suv_image

        return pet_suv_image(node, file_for_instance)
    return image_from_volume_node(node)


def load_case_folder(scene, folder: str | os.PathLike) -> dict:
    """Load an HNTS-MRG or a HECKTOR case folder; returns ``{key: node}`` (keys as the datasets module's)."""
    from .. import datasets

    root = Path(folder)
    if not root.is_dir():
        raise InputError("is not a folder", root, "choose the folder of one case")
    nodes = {}
    if (root / "preRT").is_dir() or (root / "midRT").is_dir():
        case = datasets.read_hntsmrg_case(root)
        for key in case.FILES:
            path = getattr(case, key)
            if path is None:
                continue
            study = study_item(scene, case.case_id, "preRT" if key.startswith("preRT") and "registered" not in key
                               else "midRT")
            nodes[key] = load_image_node(scene, path, label="mask" in key, study=study)
        return nodes
    cases = datasets.find_hecktor_cases(root)
    if len(cases) != 1:
        raise InputError(f"holds {len(cases)} HECKTOR cases (<ID>__CT / <ID>__PT pairs)", root,
                         "choose a folder with exactly one case, or an HNTS-MRG case folder (<ID>/preRT, <ID>/midRT)")
    case = cases[0]
    study = study_item(scene, case.case_id, "PET/CT")
    nodes["CT"] = load_image_node(scene, case.ct, study=study)
    nodes["PET"] = load_image_node(scene, case.pet, study=study)
    if case.label is not None:
        nodes["label"] = load_image_node(scene, case.label, label=True, study=study)
    return nodes
