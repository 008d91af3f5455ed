"""Label map <-> ``vtkMRMLSegmentationNode``: segments GTVp / GTVn with terminology, colours, geometry.

Import (:func:`import_label_map`): the label map (on the input's grid, labels {0, 1, 2}) becomes a
segmentation node with one segment per label, named ``GTVp`` / ``GTVn``, coloured like the
boxes, carrying a standard terminology entry (:data:`TERMINOLOGY`) and the tag
``HNTumorSeg.Label``; the input volume is its reference geometry, and in subject hierarchy the
segmentation goes into the input's study (DICOM export needs the segmentation beside its source
series). A label absent from the map still gets an (empty) segment, so the user can paint it.

Export (:func:`export_label_map`): each segment is exported on the reference volume's grid and
the challenge label map is put together by *label* (tag, else name, else terminology type), so
segments the user renamed, reordered or added in the Segment Editor come back right. Where two
segments overlap, GTVp wins (a voxel cannot be both in the challenges' label maps).

Terminology codes: :mod:`HNTumorSegLib.export.codes` (category SCT 49755003, types SCT
372087000 GTVp / 14799000 GTVn, region SCT 774007), the same as
``SegmentationCategoryTypeModifier-HNTumorSeg.term.json``.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> scene, phantom = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2_node = volume_node_from_image(scene, phantom["midRT_T2"], "T2")
    >>> labels = phantom["midRT_mask"]                           # labels 0/1/2, e.g. a result
    >>> seg = import_label_map(scene, labels, t2_node, name="HNTumorSeg result")
    >>> int(export_label_map(seg, t2_node).array.max())
    2
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..export.codes import CATEGORY, REGION, TYPES, type_code_to_label
from ..image import Image, check_labels
from ..prompts.boxes import LABEL_NAMES
from .mrml import image_from_volume_node, sh_item, volume_node_from_image
from .roi_boxes import LABEL_ATTRIBUTE, LABEL_COLOURS

TERMINOLOGY_CONTEXT = "Segmentation category and type - HNTumorSeg"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def _code(c: tuple[str, str, str] | None) -> str:
    return "^".join(c) if c else "^^"


def terminology_string(label: int) -> str:
    """Slicer's serialised terminology entry for ``label`` (context~category~type~modifier~...)."""
    return "~".join([TERMINOLOGY_CONTEXT, _code(CATEGORY), _code(TYPES[label]), _code(None),
                     ANATOMIC_CONTEXT, _code(REGION), _code(None)])


TERMINOLOGY = {label: terminology_string(label) for label in TYPES}


def _segments(seg_node):
    s = seg_node.GetSegmentation()
    return [(s.GetNthSegmentID(i), s.GetNthSegment(i)) for i in range(s.GetNumberOfSegments())]


def label_of_segment(segment) -> int | None:
    """1 (GTVp), 2 (GTVn) or None: from our tag, else the name (the command line's name rules,
    :func:`HNTumorSegLib.dicom.structures.label_of_name`: ``GTV_P``, ``GTVn_L2``, ``GTV node`` ...;
    or a name starting with GTVp / GTVn, as the Segment Editor's copies are called), else the
    terminology type code."""
    from ..dicom.structures import label_of_name

    tag = get_tag(segment, LABEL_ATTRIBUTE)
    if tag in ("1", "2"):
        return int(tag)
    by_name = label_of_name(segment.GetName() or "")
    if by_name is not None:
        return by_name
    name = (segment.GetName() or "").strip().lower()
    if name.startswith("gtvp"):
        return 1
    if name.startswith("gtvn"):
        return 2
    term = segment.GetTerminology() or ""
    parts = term.split("~")
    if len(parts) > 2:
        code = parts[2].split("^")
        if len(code) > 1 and type_code_to_label(code[1]) is not None:
            return type_code_to_label(code[1])
    return None


def get_tag(segment, key: str) -> str | None:
    """A segment tag's value (VTK wraps ``GetTag(key, std::string&)`` with an output reference)."""
    from vtkmodules.vtkCommonCore import reference

    if not segment.HasTag(key):
        return None
    out = reference("")
    segment.GetTag(key, out)
    return str(out)


def style_segment(segment, label: int) -> None:
    """Name, colour, terminology and label tag of a GTVp / GTVn segment."""
    segment.SetName(LABEL_NAMES[label])
    segment.SetColor(*LABEL_COLOURS[label])
    segment.SetTerminology(TERMINOLOGY[label])
    segment.SetTag(LABEL_ATTRIBUTE, str(label))


def place_in_study(scene, node, reference_node) -> int:
    """Put ``node`` under ``reference_node``'s parent item in subject hierarchy; returns the parent item ID."""
    sh = scene.GetSubjectHierarchyNode()
    parent = sh.GetItemParent(sh_item(scene, reference_node)) or sh.GetSceneItemID()
    sh.SetItemParent(sh_item(scene, node), parent)
    return parent


def import_label_map(scene, labels: Image, reference_node, name: str = "HNTumorSeg segmentation", node=None):
    """A segmentation node (new, or ``node`` emptied) holding ``labels`` as GTVp / GTVn segments.

    ``labels`` must lie on ``reference_node``'s grid (the worker writes it there); a different
    grid raises ``InputError`` rather than silently shifting the contours.
    """
    check_labels(labels, path=None)
    ref = image_from_volume_node(reference_node)
    if not labels.same_grid(ref):
        raise InputError(f"the label map's grid differs from the reference volume {reference_node.GetName()!r}",
                         None, "resample the label map onto the input volume first (image.resample_to, label=True)")
    from slicer import vtkSlicerSegmentationsModuleLogic as SegLogic

    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    else:
        node.GetSegmentation().RemoveAllSegments()
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    temp = volume_node_from_image(scene, labels.with_array(labels.array.astype(np.uint8)), "__hntumorseg_import",
                                  label=True)
    try:
        if not SegLogic.ImportLabelmapToSegmentationNode(temp, node, ""):
            raise RuntimeError("Slicer could not import the label map into the segmentation")
    finally:
        scene.RemoveNode(temp)
    segmentation = node.GetSegmentation()
    present = {}
    for sid, segment in _segments(node):
        value = segment.GetLabelValue()
        if value in LABEL_NAMES:
            style_segment(segment, value)
            present[value] = sid
    for label in (1, 2):
        if label not in present:
            sid = segmentation.AddEmptySegment(LABEL_NAMES[label], LABEL_NAMES[label], LABEL_COLOURS[label])
            style_segment(segmentation.GetSegment(sid), label)
    # keep GTVp first, as in the challenges' label order
    order = [sid for sid, seg in _segments(node)]
    by_label = {label_of_segment(seg): sid for sid, seg in _segments(node)}
    if order and by_label.get(1) != order[0]:
        segmentation.SetSegmentIndex(by_label[1], 0)
    place_in_study(scene, node, reference_node)
    return node


def segment_ids_by_label(seg_node) -> dict[int, list[str]]:
    """Segment IDs grouped by label (1, 2); segments of unknown meaning are left out."""
    out: dict[int, list[str]] = {1: [], 2: []}
    for sid, segment in _segments(seg_node):
        label = label_of_segment(segment)
        if label in out:
            out[label].append(sid)
    return out


def export_label_map(seg_node, reference_node, groups: dict[int, list[str]] | None = None) -> Image:
    """The segmentation as a challenge label map (0, 1 GTVp, 2 GTVn, uint8) on ``reference_node``'s grid.

    ``groups``: label -> segment IDs (the prior's structure table, :mod:`.prior_table`); default
    :func:`segment_ids_by_label`."""
    from slicer import vtkSlicerSegmentationsModuleLogic as SegLogic
    from vtkmodules.vtkCommonCore import vtkStringArray

    ref = image_from_volume_node(reference_node)
    out = np.zeros(ref.array.shape, dtype=np.uint8)
    groups = groups if groups is not None else segment_ids_by_label(seg_node)
    if not groups[1] and not groups[2]:
        raise InputError(f"segmentation {seg_node.GetName()!r} has no GTVp or GTVn segment", None,
                         "name the segments GTVp and GTVn (Segment Editor) or import a result first")
    scene = seg_node.GetScene()
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__hntumorseg_export")
    try:
        for label in (2, 1):  # GTVp last: it wins where segments overlap
            for sid in groups[label]:
                ids = vtkStringArray()
                ids.InsertNextValue(sid)
                if not SegLogic.ExportSegmentsToLabelmapNode(seg_node, ids, temp, reference_node):
                    raise RuntimeError(f"Slicer could not export segment {sid}")
                img = image_from_volume_node(temp)
                if not img.same_grid(ref):  # Slicer exports on the reference grid; guard anyway
                    from ..image import resample_to

                    img = resample_to(img, ref, label=True)
                out[img.array > 0] = label
    finally:
        scene.RemoveNode(temp)
    return ref.with_array(out)


def add_uncertainty_volume(scene, image: Image, reference_node, name: str = "HNTumorSeg uncertainty"):
    """The optional uncertainty map (e.g. voxel-wise entropy, 0..1) as a volume in the input's study."""
    node = volume_node_from_image(scene, image.with_array(image.array.astype(np.float32)), name)
    place_in_study(scene, node, reference_node)
    return node
