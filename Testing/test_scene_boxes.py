"""Boxes <-> ROI markups on a real vtkMRMLScene (slicer-core): round trip, rotated ROI, flipped volume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.roi_boxes import (LABEL_ATTRIBUTE, LABEL_COLOURS, add_box_at, box_from_roi_node,  # noqa: E402
                                           boxes_from_roi_nodes, label_of_roi, lesion_roi_nodes,
                                           roi_nodes_from_boxes, update_gradient_preview)
from HNTumorSegLib.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return make_scene()


def _mask_image(direction) -> Image:
    arr = np.zeros((10, 20, 24), np.uint8)
    arr[3:6, 4:9, 5:12] = 1
    arr[7:9, 14:18, 2:5] = 2
    arr[1:2, 15:17, 18:22] = 2
    return Image(arr, (0.9, 1.1, 3.0), (12.0, -30.0, 7.5), direction)


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, 1.0, -1.0])], ids=["identity", "flipped"])
def test_boxes_roundtrip_through_roi_nodes(app, direction):
    mask = _mask_image(direction)
    boxes = boxes_from_mask(mask, margin_vox=1)
    nodes = roi_nodes_from_boxes(app.scene, boxes)
    assert [n.GetName() for n in nodes] == ["GTVp-1", "GTVn-1", "GTVn-2"]
    back = boxes_from_roi_nodes(nodes)
    for a, b in zip(boxes, back):
        assert (a.label, a.name) == (b.label, b.name)
        np.testing.assert_allclose(a.min_ras, b.min_ras, atol=1e-6)
        np.testing.assert_allclose(a.max_ras, b.max_ras, atol=1e-6)
        # the voxels each box covers are the same lesion voxels (+1 voxel margin) on the flipped grid too
        assert box_to_index_slices(a, mask) == box_to_index_slices(b, mask)
    for n in nodes:
        assert n.GetAttribute(LABEL_ATTRIBUTE) in ("1", "2")
        np.testing.assert_allclose(n.GetDisplayNode().GetColor(), LABEL_COLOURS[label_of_roi(n)])
        app.scene.RemoveNode(n)


def test_rotated_roi_gives_axis_aligned_bounds_of_its_8_corners(app):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    node = roi_nodes_from_boxes(app.scene, [LesionBox(1, "GTVp-1", (-10, -5, 0), (10, 5, 4))])[0]
    # rotate the ROI 30 degrees about S in its own (object-to-node) matrix, about its centre (0, 0, 2)
    a = math.radians(30)
    m = vtkMatrix4x4()
    rot = [[math.cos(a), -math.sin(a), 0, 0], [math.sin(a), math.cos(a), 0, 0], [0, 0, 1, 2.0], [0, 0, 0, 1]]
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, rot[r][c])
    node.GetObjectToNodeMatrix().DeepCopy(m)
    node.Modified()
    box = box_from_roi_node(node)
    # half sizes 10, 5 rotated 30 degrees: |x| <= 10 cos30 + 5 sin30, |y| <= 10 sin30 + 5 cos30
    hx = 10 * math.cos(a) + 5 * math.sin(a)
    hy = 10 * math.sin(a) + 5 * math.cos(a)
    np.testing.assert_allclose(box.min_ras, (-hx, -hy, 0.0), atol=1e-6)
    np.testing.assert_allclose(box.max_ras, (hx, hy, 4.0), atol=1e-6)
    # Slicer's own world bounds of the ROI agree
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    np.testing.assert_allclose(bounds[0::2], box.min_ras, atol=1e-6)
    np.testing.assert_allclose(bounds[1::2], box.max_ras, atol=1e-6)
    app.scene.RemoveNode(node)


def test_parent_transform_moves_the_box(app):
    node = roi_nodes_from_boxes(app.scene, [LesionBox(2, "GTVn-1", (0, 0, 0), (4, 6, 8))])[0]
    tnode = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    m.SetElement(0, 3, 5.0)
    m.SetElement(2, 3, -2.0)
    tnode.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(tnode.GetID())
    box = box_from_roi_node(node)
    np.testing.assert_allclose(box.min_ras, (5, 0, -2), atol=1e-6)
    np.testing.assert_allclose(box.max_ras, (9, 6, 6), atol=1e-6)
    app.scene.RemoveNode(node)
    app.scene.RemoveNode(tnode)


def test_user_roi_label_from_name_and_refusal(app):
    node = app.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "gtvn extra")
    node.SetSize(2, 2, 2)
    assert label_of_roi(node) == 2
    assert node in lesion_roi_nodes(app.scene)
    other = app.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "R")
    other.SetSize(2, 2, 2)
    with pytest.raises(InputError, match="not marked GTVp or GTVn"):
        box_from_roi_node(other)
    added = add_box_at(app.scene, 1, (0, 0, 0))
    assert added.GetName() == "GTVp-1" and label_of_roi(added) == 1
    for n in (node, other, added):
        app.scene.RemoveNode(n)


def test_gradient_preview_follows_a_moved_box(app):
    from HNTumorSegLib.prompts.gradient_map import gradient_map

    rng = np.random.default_rng(0)
    t2 = Image(rng.normal(100, 20, (10, 20, 24)).astype(np.float32), (0.9, 1.1, 3.0), (12.0, -30.0, 7.5))
    t2_node = volume_node_from_image(app.scene, t2, "midRT_T2")
    mask = _mask_image(np.eye(3))
    nodes = roi_nodes_from_boxes(app.scene, boxes_from_mask(mask)[:1])
    preview = update_gradient_preview(app.scene, t2_node, nodes)
    from HNTumorSegLib.scene.mrml import image_from_volume_node

    got = image_from_volume_node(preview)
    expected = gradient_map(t2, boxes_from_roi_nodes(nodes))
    np.testing.assert_allclose(got.array, expected.array)
    before = got.array > 0
    nodes[0].SetCenter(*(np.array(nodes[0].GetCenter()) + [0.0, 5.5, 0.0]))  # the user drags the box
    again = image_from_volume_node(update_gradient_preview(app.scene, t2_node, nodes, preview_node=preview))
    assert not np.array_equal(again.array > 0, before)
    np.testing.assert_allclose(again.array, gradient_map(t2, boxes_from_roi_nodes(nodes)).array)
    for n in nodes + [t2_node, preview]:
        app.scene.RemoveNode(n)
