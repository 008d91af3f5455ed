"""The prior selector's structure table: which segment of a loaded RTSTRUCT / SEG is GTVp, GTVn or ignored.

Why: a clinic's prior is the planning system's RTSTRUCT (or a SEG), loaded by Slicer's DICOM
module as a segmentation whose segments carry the planning names (``GTV_P``, ``GTVn_L2``,
``GTV node``, ``Brainstem`` ...), not ours. The panel shows one row per segment with a choice
GTVp / GTVn / ignore (:class:`~HNTumorSegLib.vocab.StructureRole`), **auto-filled by the same rules
as the command line** (:mod:`HNTumorSegLib.dicom.structures`: names, SEG type codes, our own
``HNTumorSeg.Label`` tag), and editable. The table is kept in the module's parameter node as
one string in the command line's ``--structures`` syntax, ``"GTVp=GTV_P;GTVn=GTVn_L2,GTV node"``
(:attr:`~HNTumorSegLib.scene.panel_params.PanelParameters.prior_structures`): every segment it does
not name is ignored; an empty string means "automatic". The prior label map handed to the worker
(:func:`prior_label_map`) is built from that table, several segments per label merged, GTVp
winning where two overlap.

Nothing recognised, or one segment matching both labels (its name and its code disagree, or the
table gives it twice), is one message listing the segments (:func:`table_message`, the panel's
label; :func:`prior_label_map` raises the same text as an :class:`~HNTumorSegLib.errors.InputError`).

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> scene, case = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2 = volume_node_from_image(scene, case["midRT_T2"], "T2")
    >>> seg = segmentation_from_label_map(scene, case["preRT_mask_registered"], t2,
    ...                                   {1: ["GTV_P"], 2: ["GTVn_L2"]}, extra=["Brainstem"])
    >>> auto_table_text(seg)
    'GTVp=GTV_P;GTVn=GTVn_L2'
    >>> table_rows(seg, "GTVp=GTV_P")
    [('GTV_P', <StructureRole.GTVP: 'GTVp'>), ('GTVn_L2', <StructureRole.IGNORE: 'ignore'>), ('Brainstem', <StructureRole.IGNORE: 'ignore'>)]
    >>> int(prior_label_map(seg, t2, "").array.max())
    2
"""

from __future__ import annotations

from ..dicom.structures import Structure, assign_labels, parse_structures
from ..errors import InputError
from ..export.codes import TYPES
from ..image import Image
from ..vocab import StructureRole
from .roi_boxes import LABEL_ATTRIBUTE

#: label number <-> table role (the labels' names are :data:`HNTumorSegLib.LABEL_NAMES`)
ROLE_OF_LABEL = {1: StructureRole.GTVP, 2: StructureRole.GTVN}
LABEL_OF_ROLE = {role: label for label, role in ROLE_OF_LABEL.items()}
TABLE_FIX = "set each segment to GTVp, GTVn or ignore in the prior's structure table"


def _segments(seg_node) -> list:
    s = seg_node.GetSegmentation()
    return [(s.GetNthSegmentID(i), s.GetNthSegment(i)) for i in range(s.GetNumberOfSegments())]


def segment_structures(seg_node) -> list[Structure]:
    """The segments as :class:`~HNTumorSegLib.dicom.structures.Structure` (key = segment index):
    name, and as codes the terminology's type code and our label tag's type code."""
    from .segmentation_io import get_tag

    out = []
    for i, (_sid, segment) in enumerate(_segments(seg_node)):
        codes = []
        parts = (segment.GetTerminology() or "").split("~")
        if len(parts) > 2 and len(parts[2].split("^")) > 1 and parts[2].split("^")[1]:
            codes.append(parts[2].split("^")[1])
        tag = get_tag(segment, LABEL_ATTRIBUTE)
        if tag in ("1", "2"):
            codes.append(TYPES[int(tag)][1])
        out.append(Structure(i, segment.GetName() or "", codes))
    return out


def _assign(seg_node, text: str) -> dict[int, int]:
    """Segment index -> label by the table ``text`` (empty: automatic); InputError as the panel says it."""
    structures = segment_structures(seg_node)
    what = f"segmentation {seg_node.GetName()!r}"
    try:
        chosen = parse_structures(text)
        found = assign_labels(structures, chosen, None, what)
    except InputError as exc:
        raise InputError(exc.problem.replace("--structures", "the structure table"), None, TABLE_FIX) from None
    if chosen:   # an explicit table: what it names, nothing else
        named = {n.lower() for names in chosen.values() for n in names}
        found = {k: v for k, v in found.items() if structures[k].name.strip().lower() in named}
    return found


def table_rows(seg_node, text: str = "") -> list[tuple[str, StructureRole]]:
    """``[(segment name, role)]`` in segment order, as the panel's table shows them. A table that
    cannot be applied (nothing recognised ...) shows every row as ignore; :func:`table_message` says why."""
    try:
        found = _assign(seg_node, text)
    except InputError:
        found = {}
    return [(s.name, ROLE_OF_LABEL.get(found.get(s.key, 0), StructureRole.IGNORE)) for s in segment_structures(seg_node)]


def table_text(rows) -> str:
    """``[(name, role)]`` -> the stored string ``"GTVp=A,B;GTVn=C"`` (``""`` when every row is ignored)."""
    parts = []
    for role in (StructureRole.GTVP, StructureRole.GTVN):
        names = [name for name, r in rows if StructureRole.parse(r) is role]
        if names:
            parts.append(f"{role.value}={','.join(names)}")
    return ";".join(parts)


def auto_table_text(seg_node) -> str:
    """The automatic table as its stored string; ``""`` when nothing is recognised (see :func:`table_message`)."""
    return table_text(table_rows(seg_node, ""))


def table_message(seg_node, text: str = "") -> str:
    """``""`` when the table gives a usable prior, else the one line the panel shows (segments listed)."""
    try:
        _assign(seg_node, text)
    except InputError as exc:
        return exc.one_line()
    return ""


def prior_label_map(seg_node, reference_node, text: str = "") -> Image:
    """The prior as a {0, 1, 2} label map on ``reference_node``'s grid, by the table ``text``
    (empty: automatic). Nothing recognised or a double match: InputError (one line)."""
    from .segmentation_io import export_label_map

    found = _assign(seg_node, text)
    ids = [sid for sid, _segment in _segments(seg_node)]
    groups: dict[int, list[str]] = {1: [], 2: []}
    for index, label in sorted(found.items()):
        groups[label].append(ids[index])
    return export_label_map(seg_node, reference_node, groups=groups)


def segmentation_from_label_map(scene, labels: Image, reference_node, names: dict[int, list[str]],
                                extra=(), name: str = "RTSTRUCT"):
    """A segmentation node as Slicer's DICOM import makes one from a planning system's RTSTRUCT:
    label ``v``'s connected parts become the segments ``names[v]`` in order (the last name takes
    what is left), plus empty ``extra`` segments (organs); no terminology, no label tag.
    For tests and the documentation; the real one comes from Slicer's DICOM module."""
    import numpy as np
    from scipy import ndimage
    from slicer import vtkSlicerSegmentationsModuleLogic as SegLogic

    from .mrml import volume_node_from_image

    split = np.zeros(labels.array.shape, np.uint8)
    seg_names: list[str] = []
    for value in (1, 2):
        parts, _n = ndimage.label(labels.array == value)
        wanted = list(names.get(value, []))
        for i, seg_name in enumerate(wanted):
            seg_names.append(seg_name)
            split[(parts == i + 1) if i < len(wanted) - 1 else (parts > i)] = len(seg_names)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    temp = volume_node_from_image(scene, labels.with_array(split), "__hntumorseg_rtstruct", label=True)
    try:
        SegLogic.ImportLabelmapToSegmentationNode(temp, node, "")
    finally:
        scene.RemoveNode(temp)
    for _sid, segment in _segments(node):
        segment.SetName(seg_names[segment.GetLabelValue() - 1])
        segment.SetTerminology("")
    for seg_name in extra:
        node.GetSegmentation().AddEmptySegment("", seg_name)
    return node
