"""Lesion boxes <-> ``vtkMRMLMarkupsROINode``, and seed 003's gradient-map preview volume.

One ROI markup per lesion, named like the box (``GTVp-1``, ``GTVn-2``), coloured by label
(:data:`LABEL_COLOURS`, the same colours as the segments and
``SegmentationCategoryTypeModifier-HNTumorSeg.term.json``), its label stored in the node attribute
``HNTumorSeg.Label``. Reading back goes through the ROI's *object-to-world* transform (its own orientation and any parent transforms): all 8 corners are
mapped to world RAS and their min / max form the box, so a rotated ROI gives the axis-aligned
RAS bounding box of what the user sees (docs/design.md "Boxes").

The label of an ROI the user made himself (Markups toolbar) comes from the attribute, else from
its name (``GTVn...`` -> 2, ``GTVp...`` -> 1); an ROI with neither is refused with a fix.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask, read_boxes, write_boxes
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene, prior = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))["preRT_mask_registered"]
    >>> nodes = roi_nodes_from_boxes(scene, boxes_from_mask(prior, margin_vox=3))
    >>> [node.GetName() for node in nodes]
    ['GTVp-1', 'GTVn-1', 'GTVn-2']
    >>> nodes[0].SetCenter(12.0, 30.0, -4.0)          # the user moves a box
    >>> write_boxes(boxes_from_roi_nodes(nodes), "boxes.json")
    PosixPath('boxes.json')
    >>> read_boxes("boxes.json")[0].centre_ras
    (12.0, 30.0, -4.0)
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..export.codes import RGB
from ..prompts.boxes import LABEL_NAMES, LesionBox
from .mrml import image_from_volume_node, numpy_matrix, volume_node_from_image

LABEL_ATTRIBUTE = "HNTumorSeg.Label"
ROLE_ATTRIBUTE = "HNTumorSeg.Role"
#: RGB in 0..1 per label (export.codes.RGB): GTVp a warm red, GTVn a blue-green.
LABEL_COLOURS = {label: tuple(c / 255.0 for c in rgb) for label, rgb in RGB.items()}
_NAME_LABEL = re.compile(r"^\s*gtv\s*([pn])", re.IGNORECASE)


def _corners(half: np.ndarray) -> np.ndarray:
    return np.array([[sx * half[0], sy * half[1], sz * half[2], 1.0]
                     for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])


def style_roi(node, label: int) -> None:
    """Colour an ROI node by label and tag it (selected and unselected colours alike)."""
    node.SetAttribute(LABEL_ATTRIBUTE, str(int(label)))
    node.SetAttribute(ROLE_ATTRIBUTE, "lesion-box")
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        colour = LABEL_COLOURS.get(int(label), (1.0, 1.0, 0.0))
        display.SetColor(*colour)
        display.SetSelectedColor(*colour)
        display.SetFillOpacity(0.1)


def roi_node_from_box(scene, box: LesionBox, node=None):
    """Add (or update ``node``) an axis-aligned ROI node holding ``box``."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", box.name)
    else:
        node.SetName(box.name)
    # An axis-aligned box: reset any orientation the node had, then centre and size in RAS.
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    node.GetObjectToNodeMatrix().DeepCopy(vtkMatrix4x4())
    node.SetCenter(*box.centre_ras)
    node.SetSize(*box.size_mm)
    style_roi(node, box.label)
    return node


def roi_nodes_from_boxes(scene, boxes: Iterable[LesionBox]) -> list:
    """One new ROI node per box, in order."""
    return [roi_node_from_box(scene, b) for b in boxes]


def label_of_roi(node) -> int:
    """The lesion label (1 GTVp, 2 GTVn) of an ROI node: its attribute, else its name."""
    value = node.GetAttribute(LABEL_ATTRIBUTE)
    if value in ("1", "2"):
        return int(value)
    match = _NAME_LABEL.match(node.GetName() or "")
    if match:
        return 1 if match.group(1).lower() == "p" else 2
    raise InputError(f"box {node.GetName()!r} is not marked GTVp or GTVn", None,
                     "rename it to start with GTVp or GTVn, or add it with the module's Add GTVp / Add GTVn buttons")


def box_from_roi_node(node) -> LesionBox:
    """The world-RAS axis-aligned box holding all 8 corners of an ROI node (object-to-world)."""
    size = np.array(node.GetSize(), dtype=float)
    if np.any(size <= 0):
        raise InputError(f"box {node.GetName()!r} has zero size {size.round(2).tolist()} mm", None,
                         "drag its handles to give it a size on every axis, or delete it")
    to_world = numpy_matrix(node.GetObjectToWorldMatrix())
    corners = (_corners(size / 2.0) @ to_world.T)[:, :3]
    return LesionBox(label_of_roi(node), node.GetName(), tuple(corners.min(axis=0)), tuple(corners.max(axis=0)))


def boxes_from_roi_nodes(nodes: Iterable) -> list[LesionBox]:
    """:func:`box_from_roi_node` for each node, in order."""
    return [box_from_roi_node(n) for n in nodes]


def lesion_roi_nodes(scene) -> list:
    """The scene's ROI nodes that are lesion boxes (made here, or named GTVp... / GTVn...)."""
    out = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLMarkupsROINode")
        if node.GetAttribute(ROLE_ATTRIBUTE) == "lesion-box" or _NAME_LABEL.match(node.GetName() or ""):
            out.append(node)
    return out


def next_box_name(scene, label: int) -> str:
    """The first free ``GTVp-N`` / ``GTVn-N`` name in the scene."""
    prefix = LABEL_NAMES[int(label)]
    used = {n.GetName() for n in lesion_roi_nodes(scene)}
    k = 1
    while f"{prefix}-{k}" in used:
        k += 1
    return f"{prefix}-{k}"


def add_box_at(scene, label: int, centre_ras: Sequence[float], size_mm: Sequence[float] = (20.0, 20.0, 20.0)):
    """A new lesion box of ``label`` centred at ``centre_ras`` (the widget's Add GTVp / Add GTVn)."""
    c, s = np.asarray(centre_ras, float), np.asarray(size_mm, float) / 2
    return roi_node_from_box(scene, LesionBox(int(label), next_box_name(scene, label), tuple(c - s), tuple(c + s)))


def update_gradient_preview(scene, t2_node, roi_nodes: Iterable, preview_node=None, sigma: float = 1.0):
    """Recompute seed 003's gradient map of ``t2_node`` inside the ROI boxes into a preview volume.

    Returns the preview node (created as ``<T2 name> gradient map`` when ``preview_node`` is
    None). The widget calls this from a debounced timer (500 ms after the last box change), so a
    drag does not recompute on every mouse move. Boxes wholly outside the image are skipped here
    (a preview must not fail while the user drags); the run itself refuses them.
    """
    from ..prompts.gradient_map import gradient_map
    from ..prompts.boxes import box_to_index_slices

    t2 = image_from_volume_node(t2_node)
    boxes = []
    for box in boxes_from_roi_nodes(roi_nodes):
        try:
            box_to_index_slices(box, t2)
        except InputError:
            continue
        boxes.append(box)
    grad = gradient_map(t2, boxes, sigma=sigma)
    name = f"{t2_node.GetName()} gradient map"
    node = volume_node_from_image(scene, grad, name, node=preview_node)
    node.SetAttribute(ROLE_ATTRIBUTE, "gradient-preview")
    return node
