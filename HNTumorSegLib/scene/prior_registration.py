"""The panel's "Register pre-RT to mid-RT" step: the worker's registration, brought back as Slicer transform nodes.

Why: a clinic's prior is drawn on the pre-RT scan; seed 003 needs it on the mid-RT grid. The
button runs the same registration as ``hntumorseg register`` in the background worker
(:mod:`HNTumorSegLib.prompts.registration_job`, started and polled by
:class:`~HNTumorSegLib.scene.logic.SegmentationSceneLogic` like Apply), then
:func:`import_registration` leaves in the scene:

* a **linear transform node** ``pre-RT -> mid-RT (rigid)`` (adjustable in the Transforms module)
  under a **grid transform node** ``pre-RT -> mid-RT (deformable)`` (a ``vtkOrientedGridTransform``
  the Transforms module can inspect; absent for a rigid or affine registration);
* the pre-RT volume and the pre-RT prior placed under the linear node, so they show on the
  mid-RT scan as registered;
* the **registered prior**, a segmentation on the mid-RT grid (GTVp / GTVn, from the worker's
  label map), from which the boxes come as from any registered prior.

If the user edits the transform, :func:`resample_prior` carries the pre-RT prior through the
edited chain onto the mid-RT grid again (the same per-label 0.5 rule,
:func:`HNTumorSegLib.prompts.registration.warp_labels`).

*Conventions.* ITK's transform maps a **mid-RT (fixed) point to its pre-RT (moving) point**, in
LPS millimetres: ``T(p) = L(B(p))``, the B-spline ``B`` first, then the linear ``L``
(``CompositeTransform([L, B])``). A Slicer transform node's *FromParent* transform maps a point of
its parent (here: the world, i.e. the mid-RT scan) into its children's space (the pre-RT scan):
that is ``T`` - the "resampling transform" Slicer also reads from ITK files. The flip
``F = diag(-1, -1, 1)`` turns LPS into RAS, so ``L``'s matrix becomes ``F A F`` with offset ``F o``,
and ``B``'s displacement ``d(p)`` becomes ``F d(F q)`` sampled on the grid ``F``-flipped. A child of
the linear node, itself under the grid node, is reached from the world by the grid node's
FromParent first, then the linear node's: ``L(B(q))``, as in ITK.
``Testing/test_scene_register.py`` checks that points map where SimpleITK maps them (0.1 mm).

Example:
    >>> import SimpleITK as sitk
    >>> from HNTumorSegLib.scene.mrml import make_scene
    >>> scene = make_scene().scene
    >>> rigid = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.1, (10.0, -5.0, 2.0))   # mid -> pre, LPS
    >>> linear, grid = transform_nodes(scene, rigid, None)
    >>> map_mid_to_pre(linear, [[1.0, 2.0, 3.0]]).round(3).tolist()          # a mid-RT RAS point -> pre-RT RAS
    [[-9.205, 7.09, 5.0]]
    >>> [round(-v if i < 2 else v, 3) for i, v in enumerate(rigid.TransformPoint((-1.0, -2.0, 3.0)))]   # ITK, LPS
    [-9.205, 7.09, 5.0]
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image import Image, write_image
from ..vocab import RegistrationMode
from .mrml import vtk_matrix, image_from_volume_node
from .prior_table import prior_label_map

#: LPS <-> RAS (both ways: its own inverse)
FLIP = np.diag([-1.0, -1.0, 1.0])
#: Most points of the deformable part's displacement grid (the B-spline's control points are 30 mm apart)
GRID_MAX_POINTS = 1_000_000
RIGID_NAME, DEFORMABLE_NAME = "pre-RT -> mid-RT (rigid)", "pre-RT -> mid-RT (deformable)"
REGISTERED_NAME = "pre-RT prior (registered)"
ROLE_ATTRIBUTE = "HNTumorSeg.Registration"   # on the transform nodes: what they are; the nodes they move


@dataclass
class RegisteredPrior:
    """What :func:`import_registration` left in the scene."""

    linear: Any              # vtkMRMLLinearTransformNode (innermost: the pre-RT nodes hang under it)
    grid: Any                # vtkMRMLGridTransformNode or None (rigid / affine registrations)
    segmentation: Any        # the registered prior on the mid-RT grid (vtkMRMLSegmentationNode) or None


@contextlib.contextmanager
def untransformed(*nodes):
    """The nodes with no parent transform for the block (their own grid), put back after it."""
    saved = [(n, n.GetTransformNodeID()) for n in nodes if n is not None]
    try:
        for n, _ in saved:
            n.SetAndObserveTransformNodeID(None)
        yield
    finally:
        for n, tid in saved:
            n.SetAndObserveTransformNodeID(tid)


def pre_rt_images(pre_node, prior_node=None, structures: str = "") -> tuple[Image, Image | None]:
    """The pre-RT T2 and its prior label map (by the structure table), on the pre-RT scan's own grid."""
    with untransformed(pre_node, prior_node):
        pre = image_from_volume_node(pre_node, world=False)
        if prior_node is None:
            return pre, None
        if prior_node.IsA("vtkMRMLSegmentationNode"):
            return pre, prior_label_map(prior_node, pre_node, structures)
        from ..image import check_labels

        labels = image_from_volume_node(prior_node, world=False)
        check_labels(labels, path=None)
        return pre, labels


def register_request(mid_node, pre_node, prior_node, structures: str, mode: str, work: Path, out: Path):
    """Write the mid-RT T2, the pre-RT T2 and prior under ``work``; the worker's
    :class:`~HNTumorSegLib.prompts.registration_job.RegisterRequest` (results into ``out``)."""
    from ..prompts.registration_job import RegisterRequest

    pre, labels = pre_rt_images(pre_node, prior_node, structures)
    # hand-off files for our own worker: uncompressed, not read back (issue 27; the worker checks them)
    fixed = write_image(image_from_volume_node(mid_node), work / "mid_T2.nii", compress=False, verify=False)
    moving = write_image(pre, work / "pre_T2.nii", compress=False, verify=False)
    prior = (str(write_image(labels, work / "pre_prior.nii", compress=False, verify=False))
             if labels is not None else None)
    return RegisterRequest(str(fixed), str(moving), prior, output_dir=str(out), mode=mode)


# ---- ITK (LPS, fixed -> moving) -> Slicer (RAS, FromParent) ----------------------------------------

def linear_from_parent_ras(transform) -> np.ndarray:
    """A linear ITK transform (Euler, affine ...) as the 4 x 4 RAS FromParent matrix (module docstring)."""
    a = np.array(transform.GetMatrix(), float).reshape(3, 3)
    c = np.array(transform.GetCenter(), float)
    offset = np.array(transform.GetTranslation(), float) + c - a @ c
    m = np.eye(4)
    m[:3, :3] = FLIP @ a @ FLIP
    m[:3, 3] = FLIP @ offset
    return m


def split_transform(transform) -> tuple[Any, Any]:
    """``(linear, deformable or None)`` of the registration's transform: ``L`` alone, or
    ``CompositeTransform([L, B, ...])`` whose parts after the linear one (applied before it) are
    returned as one transform (a composite when there are several)."""
    import SimpleITK as sitk

    if transform.GetName() != "CompositeTransform":
        return (transform.Downcast() if hasattr(transform, "Downcast") else transform), None
    comp = sitk.CompositeTransform(transform)
    parts = [comp.GetNthTransform(i).Downcast() for i in range(comp.GetNumberOfTransforms())]
    linear = parts[0] if parts and hasattr(parts[0], "GetMatrix") else sitk.Euler3DTransform()
    rest = parts[1:] if parts and linear is parts[0] else parts
    if not rest:
        return linear, None
    return linear, (rest[0] if len(rest) == 1 else sitk.CompositeTransform(rest))


def _grid_geometry(reference: Image, max_points: int) -> tuple[list[int], list[float], int]:
    """Size and spacing (x, y, z) of a grid covering ``reference`` with at most ``max_points`` points."""
    n = np.array(reference.shape_xyz, float)
    k = max(1, int(np.ceil((n.prod() / max_points) ** (1.0 / 3.0))))
    size = [int(np.ceil((v - 1) / k)) + 1 for v in n]
    return size, [float(s * k) for s in reference.spacing], k


def grid_transform_ras(deformable, reference: Image, max_points: int = GRID_MAX_POINTS):
    """The deformable part sampled as a ``vtkOrientedGridTransform`` (RAS displacements on a grid over ``reference``)."""
    import SimpleITK as sitk
    from slicer import vtkOrientedGridTransform
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    size, spacing, _k = _grid_geometry(reference, max_points)
    direction = np.asarray(reference.direction, float).reshape(3, 3)
    field = sitk.TransformToDisplacementField(deformable, sitk.sitkVectorFloat64, size, reference.origin, spacing,
                                              tuple(direction.flatten()))
    disp = sitk.GetArrayFromImage(field).reshape(-1, 3) @ FLIP          # LPS -> RAS vectors (FLIP symmetric)
    data = vtkImageData()
    data.SetDimensions(*size)
    data.SetSpacing(*spacing)
    data.SetOrigin(*(FLIP @ np.asarray(reference.origin, float)))
    vectors = numpy_support.numpy_to_vtk(np.ascontiguousarray(disp, dtype=np.float64), deep=True)
    vectors.SetNumberOfComponents(3)
    data.GetPointData().SetScalars(vectors)
    grid = vtkOrientedGridTransform()
    grid.SetDisplacementGridData(data)
    grid.SetInterpolationModeToLinear()
    ras_dir = np.eye(4)
    ras_dir[:3, :3] = FLIP @ direction
    grid.SetGridDirectionMatrix(vtk_matrix(ras_dir))
    return grid


def transform_nodes(scene, transform, reference: Image | None, linear_node=None, grid_node=None):
    """The registration's ITK transform as Slicer nodes: ``(linear node, grid node or None)``, the
    linear one under the grid one (module docstring); existing nodes are updated in place."""
    linear, deformable = split_transform(transform)
    if linear_node is None:
        linear_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", RIGID_NAME)
    linear_node.SetMatrixTransformFromParent(vtk_matrix(linear_from_parent_ras(linear)))
    linear_node.SetAttribute(ROLE_ATTRIBUTE, "linear")
    if deformable is None:
        linear_node.SetAndObserveTransformNodeID(None)
        return linear_node, None
    if reference is None:
        raise ValueError("a deformable transform needs the mid-RT reference grid")
    if grid_node is None:
        grid_node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", DEFORMABLE_NAME)
    grid_node.SetAndObserveTransformFromParent(grid_transform_ras(deformable, reference))
    grid_node.SetAttribute(ROLE_ATTRIBUTE, "deformable")
    linear_node.SetAndObserveTransformNodeID(grid_node.GetID())
    return linear_node, grid_node


def map_mid_to_pre(linear_node, points_ras) -> np.ndarray:
    """Mid-RT (world) RAS points -> pre-RT RAS points through ``linear_node`` and its parents (as edited)."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    from_world = vtkGeneralTransform()
    linear_node.GetTransformFromWorld(from_world)
    pts = np.ascontiguousarray(np.asarray(points_ras, np.float64).reshape(-1, 3))
    src, dst = vtkPoints(), vtkPoints()
    src.SetData(numpy_support.numpy_to_vtk(pts, deep=True))
    from_world.TransformPoints(src, dst)
    return numpy_support.vtk_to_numpy(dst.GetData()).astype(np.float64).reshape(-1, 3)


# ---- the scene after the worker, and after an edit ----------------------------------------------

def import_registration(scene, files: dict, mid_node, pre_node, prior_node=None, segmentation=None) -> RegisteredPrior:
    """The worker's result files (``transform``, ``labels``) as transform nodes and the registered prior."""
    import SimpleITK as sitk

    from ..image import read_image
    from .segmentation_io import import_label_map

    mid = image_from_volume_node(mid_node)
    linear, grid = transform_nodes(scene, sitk.ReadTransform(str(files["transform"])), mid)
    for node in (pre_node, prior_node):
        if node is not None:
            node.SetAndObserveTransformNodeID(linear.GetID())
    seg = None
    if files.get("labels"):
        seg = import_label_map(scene, read_image(files["labels"], label=True), mid_node, name=REGISTERED_NAME,
                               node=segmentation)
    return RegisteredPrior(linear, grid, seg)


def resample_prior(scene, linear_node, mid_node, pre_node, prior_node, structures: str = "", segmentation=None):
    """The pre-RT prior carried through the (edited) transform chain onto the mid-RT grid, as a
    segmentation (``segmentation`` refilled, else a new one): the chain is sampled as mid-RT ->
    pre-RT displacements and the labels warped as the worker warps them."""
    import SimpleITK as sitk

    from ..prompts.registration import Registration, warp_labels
    from .segmentation_io import import_label_map

    mid = image_from_volume_node(mid_node)
    _pre, labels = pre_rt_images(pre_node, prior_node, structures)
    size, spacing, k = _grid_geometry(mid, GRID_MAX_POINTS)
    idx = np.stack(np.meshgrid(*[np.arange(n) * k for n in size[::-1]], indexing="ij")[::-1], -1).reshape(-1, 3)
    points_lps = mid.index_to_physical(idx.astype(float))            # x fastest: (z, y, x) order flattened
    pre_lps = map_mid_to_pre(linear_node, points_lps @ FLIP) @ FLIP
    field = sitk.GetImageFromArray((pre_lps - points_lps).reshape(size[2], size[1], size[0], 3), isVector=True)
    field.SetOrigin(mid.origin)
    field.SetSpacing(spacing)
    field.SetDirection(tuple(np.asarray(mid.direction, float).flatten()))
    chain = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    reg = Registration(chain, sitk.Euler3DTransform(), RegistrationMode.DEFORMABLE, field, field, [], (k, k, k))
    assert labels is not None
    moved = warp_labels(labels, reg, mid)
    return import_label_map(scene, moved, mid_node, name=REGISTERED_NAME, node=segmentation)

