"""A standalone MRML scene, and the bridge between :class:`~HNTumorSegLib.image.Image` and volume nodes.

Inside 3D Slicer the scene is ``slicer.mrmlScene`` and the application already registered the
module logics. On the ``slicer-core`` wheel :func:`make_scene` does what Slicer's application
does at start-up for the parts we use: an application logic with colour, Volumes, Markups,
Segmentations and Subject Hierarchy logics registered on the scene. (The Terminologies logic is
left out: the wheel ships none of Slicer's default terminology files, and segments carry their
terminology as a tag string that needs no logic.)

Geometry: an :class:`Image` keeps LPS origin and direction columns; a volume node keeps an
``IJKToRAS`` matrix. :func:`volume_node_from_image` writes ``image.index_to_ras_matrix()``;
:func:`image_from_volume_node` inverts it (column norms are the spacing; the RAS -> LPS flip of
x and y turns the RAS matrix back into LPS). A volume under a *linear* parent transform is read
in world coordinates (the transform is applied, as "harden" would); a non-linear one is refused.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image, image_from_volume_node
    >>> t2 = make_midrt_case(seed=0, shape=(8, 32, 32))["midRT_T2"]
    >>> app = make_scene()
    >>> node = volume_node_from_image(app.scene, t2, "T2")
    >>> image_from_volume_node(node).same_grid(t2)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..image import Image

# vtk scalar types we write (numpy dtype -> VTK type id); others are converted to float32.
_VTK_TYPES = {np.dtype(np.uint8): 3, np.dtype(np.int8): 15, np.dtype(np.int16): 4, np.dtype(np.uint16): 5,
              np.dtype(np.int32): 6, np.dtype(np.uint32): 7, np.dtype(np.float32): 10, np.dtype(np.float64): 11}


@dataclass
class SceneApp:
    """A scene and the logics registered on it (what Slicer's application holds)."""

    scene: Any
    app_logic: Any
    logics: dict


def make_scene() -> SceneApp:
    """A new ``vtkMRMLScene`` with the logics the module needs, as Slicer's start-up registers them.

    Only for use outside Slicer (tests, the bench, the documentation pictures); inside Slicer use
    ``slicer.mrmlScene``.
    """
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.GetColorLogic().SetMRMLScene(scene)
    app.GetColorLogic().AddDefaultColorNodes()
    app.SetSliceLogics(vtkCollection())
    app.SetViewLogics(vtkCollection())
    logics = {}
    for name, cls in (("Volumes", "vtkSlicerVolumesLogic"), ("Markups", "vtkSlicerMarkupsLogic"),
                      ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
                      ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic")):
        logic = getattr(slicer, cls)()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    return SceneApp(scene, app, logics)


def vtk_matrix(m: np.ndarray):
    """A 4x4 numpy array as a ``vtkMatrix4x4`` (volume geometry, transform nodes)."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def numpy_matrix(vtk_matrix) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a 4x4 numpy array."""
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def image_data_from_array(array: np.ndarray):
    """``vtkImageData`` holding ``array[z, y, x]`` (x fastest, as VTK stores it), origin 0, spacing 1."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype not in _VTK_TYPES:
        arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr)
    data = vtkImageData()
    data.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=True, array_type=_VTK_TYPES[arr.dtype])
    data.GetPointData().SetScalars(scalars)
    return data


def set_volume_from_image(node, image: Image) -> None:
    """Replace ``node``'s voxels and geometry with ``image``'s (keeps display nodes)."""
    node.SetAndObserveImageData(image_data_from_array(image.array))
    node.SetIJKToRASMatrix(vtk_matrix(image.index_to_ras_matrix()))
    node.Modified()


def volume_node_from_image(scene, image: Image, name: str, label: bool = False, node=None):
    """Add (or update ``node``) a scalar volume node (``label=True``: a label map volume node)."""
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    set_volume_from_image(node, image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _ijk_to_ras(node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return numpy_matrix(m)


def ijk_to_world_matrix(node) -> np.ndarray:
    """4x4 IJK -> world RAS of a volume node, its linear parent transforms included."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    ijk_to_ras = _ijk_to_ras(node)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"volume {node.GetName()!r} lies under a non-linear transform", None,
                             "harden the transform (Data module) before using it here")
        to_world = vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = numpy_matrix(to_world) @ ijk_to_ras
    return ijk_to_ras


def image_from_volume_node(node, dtype=None, world: bool = True, copy: bool = True) -> Image:
    """The voxels and world geometry of a volume node as an :class:`Image` (array copied).

    ``world=False``: the node's own grid, parent transforms ignored (where its file put it:
    matching a volume to its DICOM series, :mod:`.outcome_review`). ``copy=False``: a read-only
    view of the node's voxels (Apply's hand-off, :mod:`.handoff`: no copy on the GUI thread)."""
    from vtkmodules.util import numpy_support

    data = node.GetImageData() if node is not None else None
    if data is None or data.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "(none)"
        raise InputError(f"volume {name!r} holds no image", None, "load or select a volume with voxels")
    nx, ny, nz = data.GetDimensions()
    scalars = data.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"volume {node.GetName()!r} has {scalars.GetNumberOfComponents()} components per voxel",
                         None, "select a single-component (grey-level) volume")
    arr = numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx)
    if copy:
        arr = arr.copy()
    else:
        arr.flags.writeable = False
    if dtype is not None:
        arr = arr.astype(dtype)
    ras = ijk_to_world_matrix(node) if world else _ijk_to_ras(node)
    lps = np.diag([-1.0, -1.0, 1.0]) @ ras[:3, :]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    direction = lps[:, :3] / spacing
    return Image(arr, tuple(spacing), tuple(lps[:, 3]), direction)


def sh_item(scene, node) -> int:
    """The subject-hierarchy item of ``node``, created under the scene when there is none yet.

    Slicer's Qt subject-hierarchy plugins add an item for every new node; on the wheel nobody
    does, so the scene code asks for the item through here.
    """
    sh = scene.GetSubjectHierarchyNode()
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(sh.GetSceneItemID(), node)
    return item


def study_item(scene, patient: str, study: str) -> int:
    """The subject-hierarchy study item ``study`` of patient ``patient``, created when missing."""
    sh = scene.GetSubjectHierarchyNode()
    scene_item = sh.GetSceneItemID()
    patient_item = sh.GetItemChildWithName(scene_item, patient) or sh.CreateSubjectItem(scene_item, patient)
    return sh.GetItemChildWithName(patient_item, study) or sh.CreateStudyItem(patient_item, study)
