"""One segment as voxels: whole-segment arrays, a box region read and written in place, and a
refinement's compact undo record (issue 26, item 7).

Why a module of its own: a refinement (:mod:`.refinement`) changes a lesion's box, not the
volume. Exporting and re-importing whole segments (:func:`segment_mask`, :func:`set_segment_mask`:
Slicer's label-map export / import on the full grid, about 1.2 s at 300x512x512) held Slicer's GUI
thread and made undo restore whole segments. Here:

* :func:`read_segment_box` reads only the box of a segment, straight from its binary labelmap
  (a copy of the box, no export); :func:`write_segment_box` changes only the box, through the
  Segment Editor's own Remove and Add with the box's extent (``SetBinaryLabelmapToSegment`` was
  tried: ``MODE_REPLACE`` with an extent drops the voxels outside it, and ``MODE_MERGE_MAX`` into
  a layer shared with another segment wrote the other segment's label). :func:`change_box`
  writes several segments' boxes, removals first, so no two segments hold a voxel at once.
* :class:`BoxEdit`: what one refinement did - each segment's box after it, and before it where
  it changed, one bit a voxel (``np.packbits``), so its memory follows the box, not the volume.
  :meth:`BoxEdit.undo` puts a voxel back only where every segment still holds the refinement's
  value: a voxel the user painted or erased after the refinement (in any segment, a new one
  included) keeps the user's edit, and no voxel ends up in two segments.
* :class:`ResultReader`: a finished refinement's result read in a thread, only its box
  (:func:`read_label_box`; a box-only refinement's crop, issue 27), so the GUI thread only writes the box.

A segmentation not stored as binary labelmaps on the reference's grid (another grid, a parent
transform) falls back to the whole-segment export for reading (slow, but right).

Example (a box of GTVn changed and undone; a voxel outside the box is never touched):
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> from HNTumorSegLib.scene.segmentation_io import import_label_map, segment_ids_by_label
    >>> scene, case = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2 = volume_node_from_image(scene, case["midRT_T2"], "T2")
    >>> seg = import_label_map(scene, case["midRT_mask"], t2)
    >>> gtvn = segment_ids_by_label(seg)[2][0]
    >>> box = (slice(0, 8), slice(0, 16), slice(0, 16))
    >>> old = read_segment_box(seg, gtvn, t2, box)
    >>> edit = change_box(seg, t2, box, {gtvn: ~old})          # invert GTVn inside the box
    >>> bool((read_segment_box(seg, gtvn, t2, box) == ~old).all()), edit.nbytes <= 3 * 8 * 16 * 16 // 8
    (True, True)
    >>> edit.undo(seg, t2)
    >>> bool((read_segment_box(seg, gtvn, t2, box) == old).all())
    True
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..image import Image, read_image
from .mrml import ijk_to_world_matrix, image_from_volume_node, numpy_matrix, vtk_matrix, volume_node_from_image

Box = tuple[slice, slice, slice]   # (z, y, x) slices of the reference grid, steps of 1


# ---- whole segments (export / import on the full grid: slow, general) ----------------------------
def segment_mask(seg_node, segment_id: str, reference_node) -> np.ndarray:
    """The segment's voxels (bool, z y x) on ``reference_node``'s grid."""
    from slicer import vtkSlicerSegmentationsModuleLogic as SegLogic
    from vtkmodules.vtkCommonCore import vtkStringArray

    scene = seg_node.GetScene()
    ref = image_from_volume_node(reference_node)
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__hntumorseg_segment")
    try:
        ids = vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not SegLogic.ExportSegmentsToLabelmapNode(seg_node, ids, temp, reference_node):
            raise RuntimeError(f"Slicer could not export segment {segment_id}")
        img = image_from_volume_node(temp)
    finally:
        scene.RemoveNode(temp)
    if not img.same_grid(ref):
        from ..image import resample_to

        img = resample_to(img, ref, label=True)
    return img.array > 0


def set_segment_mask(seg_node, segment_id: str, mask_zyx: np.ndarray, reference_node) -> None:
    """Replace the segment's voxels by ``mask_zyx`` (bool on ``reference_node``'s grid)."""
    from slicer import vtkSlicerSegmentationsModuleLogic as SegLogic
    from vtkmodules.vtkCommonCore import vtkStringArray

    scene = seg_node.GetScene()
    ref = image_from_volume_node(reference_node)
    temp = volume_node_from_image(scene, ref.with_array(np.asarray(mask_zyx, np.uint8)), "__hntumorseg_segment",
                                  label=True)
    try:
        ids = vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not SegLogic.ImportLabelmapToSegmentationNode(temp, seg_node, ids):
            raise RuntimeError(f"Slicer could not update segment {segment_id}")
    finally:
        scene.RemoveNode(temp)


# ---- a segment's binary labelmap layer, read in place --------------------------------------------
class OffGrid(Exception):
    """The segment is not a binary labelmap on the reference's grid (take the general path)."""


def segment_layer(seg_node, segment_id: str, grid: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int], int] | None:
    """(layer voxels as a read-only view z y x, the layer's start index z y x, the segment's value in
    it) of a segment stored as a binary labelmap on ``grid`` (4x4 IJK -> world); None for an empty
    segment. Raises :class:`OffGrid` where the layer is not on that grid."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    segmentation = seg_node.GetSegmentation()
    source = getattr(segmentation, "GetSourceRepresentationName", None) or segmentation.GetMasterRepresentationName
    segment = segmentation.GetSegment(segment_id)
    data = segment.GetRepresentation("Binary labelmap") if source() == "Binary labelmap" else None
    if data is None or seg_node.GetParentTransformNode() is not None:
        raise OffGrid(segment_id)
    m = vtkMatrix4x4()
    data.GetImageToWorldMatrix(m)
    if not np.allclose(numpy_matrix(m), grid, atol=1e-6):
        raise OffGrid(segment_id)
    x0, x1, y0, y1, z0, z1 = data.GetExtent()
    if x1 < x0 or y1 < y0 or z1 < z0 or data.GetPointData().GetScalars() is None:
        return None
    view = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape(z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1)
    return view, (z0, y0, x0), int(segment.GetLabelValue())


def _overlap(start: tuple[int, ...], shape: tuple[int, ...], box: Box) -> tuple[Box, Box] | None:
    """(slices into the layer, slices into the box) of the layer's part inside ``box``; None if none."""
    lo = [max(b.start, s) for b, s in zip(box, start)]
    hi = [min(b.stop, s + n) for b, s, n in zip(box, start, shape)]
    if any(h <= low for low, h in zip(lo, hi)):
        return None
    layer = tuple(slice(low - s, h - s) for low, h, s in zip(lo, hi, start))
    inner = tuple(slice(low - b.start, h - b.start) for low, h, b in zip(lo, hi, box))
    return layer, inner   # type: ignore[return-value]


def read_segment_box(seg_node, segment_id: str, reference_node, box: Box) -> np.ndarray:
    """The segment's voxels inside ``box`` (bool, the box's shape): a copy of the box only."""
    shape = tuple(b.stop - b.start for b in box)
    out = np.zeros(shape, bool)
    try:
        found = segment_layer(seg_node, segment_id, ijk_to_world_matrix(reference_node))
    except OffGrid:
        return segment_mask(seg_node, segment_id, reference_node)[box].copy()   # the general (slow) path
    if found is None:
        return out
    view, start, value = found
    parts = _overlap(start, view.shape, box)
    if parts is not None:
        out[parts[1]] = view[parts[0]] == value
    return out


def _box_image(mask: np.ndarray, box: Box, grid: np.ndarray):
    """``mask`` (bool, the box's shape) as a ``vtkOrientedImageData`` over the box's extent on ``grid``."""
    from slicer import vtkOrientedImageData
    from vtkmodules.util import numpy_support
    from vtkmodules.util.vtkConstants import VTK_UNSIGNED_CHAR

    image = vtkOrientedImageData()
    image.SetExtent(box[2].start, box[2].stop - 1, box[1].start, box[1].stop - 1, box[0].start, box[0].stop - 1)
    image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = np.asarray(mask, np.uint8).ravel()
    image.SetImageToWorldMatrix(vtk_matrix(grid))
    return image


def _editor_logic(seg_node):
    """The Segment Editor's own logic on ``seg_node`` (its node kept out of the scene: nothing for
    the user to see); the editor node's default overwrite mode lets an added voxel leave other segments."""
    from slicer import vtkMRMLSegmentEditorNode, vtkSlicerSegmentEditorLogic

    logic = vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(seg_node.GetScene())
    node = vtkMRMLSegmentEditorNode()
    logic.SetSegmentEditorNode(node)
    logic.SetSegmentationNode(seg_node)
    logic._hntumorseg_node = node   # keep it alive as long as the logic
    return logic


def write_segment_box(seg_node, segment_id: str, reference_node, box: Box, mask: np.ndarray,
                      remove: bool = True, add: bool = True) -> None:
    """Make the segment equal ``mask`` inside ``box`` (outside untouched): ``remove`` clears the voxels
    ``mask`` leaves out, ``add`` sets those it holds - the Segment Editor's own Remove and Add
    (``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap`` with the box's extent, no masking)."""
    grid = ijk_to_world_matrix(reference_node)
    mask = np.asarray(mask, bool)
    logic = _editor_logic(seg_node)
    for wanted, modifier, mode in ((remove, ~mask, logic.ModificationModeRemove),
                                   (add, mask, logic.ModificationModeAdd)):
        if wanted:
            image = _box_image(modifier, box, grid)
            logic.ModifySegmentByLabelmap(seg_node, segment_id, image, mode, image.GetExtent(), False, True)


# ---- one refinement's change, and its undo ------------------------------------------------------
@dataclass
class BoxEdit:
    """What one box edit did: segment id -> (before or None when unchanged, after) of its box,
    packed one bit a voxel; every segment of the segmentation at the time is recorded."""

    box: Box
    changes: dict = field(default_factory=dict)
    name: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b.stop - b.start for b in self.box)

    @property
    def nbytes(self) -> int:
        """The record's voxel memory: at most 2 bits per box voxel and segment (module docstring)."""
        return sum(after.nbytes + (before.nbytes if before is not None else 0)
                   for before, after in self.changes.values())

    def _unpack(self, bits: np.ndarray) -> np.ndarray:
        return np.unpackbits(bits, count=int(np.prod(self.shape))).astype(bool).reshape(self.shape)

    def record(self, segment_id: str, before: np.ndarray, after: np.ndarray) -> None:
        changed = bool((before != after).any())
        self.changes[segment_id] = (np.packbits(before.ravel()) if changed else None, np.packbits(after.ravel()))

    def undo(self, seg_node, reference_node) -> None:
        """Put back the box's voxels that no segment has changed since this edit; a voxel the user
        painted or erased since (in any segment, a new one included) keeps the user's edit."""
        segmentation = seg_node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        now = {sid: read_segment_box(seg_node, sid, reference_node, self.box) for sid in ids}
        edited = np.zeros(self.shape, bool)
        for sid, mask in now.items():
            recorded = self.changes.get(sid)
            edited |= mask if recorded is None else mask != self._unpack(recorded[1])
        wanted = {sid: (now[sid], np.where(edited, now[sid], self._unpack(before)))
                  for sid, (before, _) in self.changes.items() if before is not None and sid in now}
        _write_changes(seg_node, reference_node, self.box, wanted)


def _write_changes(seg_node, reference_node, box: Box, wanted: dict) -> None:
    """Segment id -> (now, new) inside ``box``: removals in every segment first, then additions."""
    for sid, (now, new) in wanted.items():
        if (now & ~new).any():
            write_segment_box(seg_node, sid, reference_node, box, new, add=False)
    for sid, (now, new) in wanted.items():
        if (new & ~now).any():
            write_segment_box(seg_node, sid, reference_node, box, new, remove=False)


def change_box(seg_node, reference_node, box: Box, new: dict, name: str = "") -> BoxEdit:
    """Set the segments of ``new`` (segment id -> bool mask of the box's shape) inside ``box``;
    the :class:`BoxEdit` that undoes it (every segment's box recorded, the unchanged ones once)."""
    edit = BoxEdit(box, name=name)
    segmentation = seg_node.GetSegmentation()
    wanted = {}
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        now = read_segment_box(seg_node, sid, reference_node, box)
        mask = np.asarray(new[sid], bool) if sid in new else now
        edit.record(sid, now, mask)
        if sid in new and (now != mask).any():
            wanted[sid] = (now, mask)
    _write_changes(seg_node, reference_node, box, wanted)
    return edit


# ---- a refinement's result, read off the GUI thread ---------------------------------------------
def read_label_box(path: Path, box: tuple, shape: tuple) -> np.ndarray | None:
    """The voxels inside ``box`` (z y x slices) of a plain NIfTI-1 map on a grid of ``shape``, read in
    1 MB chunks and only up to the box's last slice: Python's file and zlib reads let go of the GIL
    between chunks, where a whole-file read held Slicer's GUI thread 0.1-0.17 s at 300x512x512 on a
    busy machine. None for any other file (the caller reads it whole). The gzip CRC at the file's
    end is not reached: this is the worker's own output, just written."""
    from ..image_checks import NIFTI_DTYPES, nifti_layout, open_decompressed

    chunk = 1 << 20
    with open_decompressed(Path(path)) as fh:
        head = fh.read(348)
        layout = nifti_layout(head)
        dtype = NIFTI_DTYPES.get(layout.datatype) if layout is not None else None
        if (layout is None or dtype is None or not layout.plain or layout.offset < len(head)
                or tuple(layout.dims[::-1]) != tuple(shape)):
            return None
        row = int(shape[1]) * int(shape[2]) * np.dtype(dtype).itemsize
        skip = layout.offset - len(head) + box[0].start * row
        while skip > 0:
            skip -= len(fh.read(min(chunk, skip)) or b"\0" * skip)
        body = bytearray((box[0].stop - box[0].start) * row)
        view, got = memoryview(body), 0
        while got < len(body):
            n: int = fh.readinto(view[got:got + chunk]) or 0
            if not n:
                return None       # short: let the whole read report it
            got += n
    slab = np.frombuffer(body, f"{layout.endian}{dtype}").reshape(-1, int(shape[1]), int(shape[2]))
    return slab[:, box[1], box[2]]


class ResultReader:
    """A finished refinement's ``label`` read (its box only) in a thread (issue 26): Slicer's GUI
    thread then only writes that box into the segments. ``slices`` (z y x) and ``shape`` are the box
    and the reference grid's shape; ``out`` (the result folder) is removed when the thread ends.
    Read :attr:`region` and :attr:`error` once :attr:`done`.

    The file is either the whole map (read up to the box, :func:`read_label_box`) or a box-only
    refinement's crop (issue 27), placed on the reference ``grid`` (its geometry) by its origin; the
    crop must cover the box.

    Example (a 2x3x4 crop at voxel (1, 2, 3) of a 4x8x8 grid; the box is that crop):
        >>> from HNTumorSegLib.image import write_image
        >>> grid = Image(np.zeros((4, 8, 8), np.uint8), (0.5, 0.5, 2.0), (10.0, 20.0, 30.0))
        >>> crop = np.zeros((2, 3, 4), np.uint8); crop[1, 1, 1:3] = 2
        >>> cropped = Image(crop, grid.spacing, tuple(grid.index_to_physical(np.array([3.0, 2.0, 1.0]))))
        >>> _ = write_image(cropped, "crop.nii.gz")
        >>> box = (slice(1, 3), slice(2, 5), slice(3, 7))
        >>> reader = ResultReader("crop.nii.gz", 2, box, grid.array.shape, grid=grid).join(60)
        >>> int(reader.region.sum()), reader.region.shape
        (2, (2, 3, 4))
    """

    def __init__(self, labels_path: str | Path, label: int, slices: tuple, shape: tuple,
                 out: Path | None = None, name: str = "", grid: Image | None = None):
        self.path, self.label, self.slices, self.shape, self.out = Path(labels_path), label, slices, shape, out
        self.name = name                         # the box's name (messages)
        self.grid = grid                         # the reference's geometry: where a crop lies
        self.region: np.ndarray | None = None    # bool, the box's shape: the refined lesion's voxels
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name="hntumorseg-refine-result", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            values = read_label_box(self.path, self.slices, self.shape)
            if values is None:                 # a crop, or not a plain NIfTI of this grid: read whole, checked
                values = self._box_of(read_image(self.path, label=True))
            self.region = np.ascontiguousarray(values == self.label)
        except BaseException as exc:   # reported by tick, on the GUI thread
            self.error = exc
        finally:
            if self.out is not None:
                shutil.rmtree(self.out, ignore_errors=True)
            self._done.set()

    def _box_of(self, labels: Image) -> np.ndarray:
        """The box's voxels of a whole map, or of a crop that covers the box (placed by its origin)."""
        if labels.array.shape == tuple(self.shape):
            return labels.array[self.slices]
        grid = self.grid
        if grid is not None and np.allclose(labels.spacing, grid.spacing, atol=1e-4) \
                and np.allclose(labels.direction, grid.direction, atol=1e-4):
            at = grid.physical_to_index(np.asarray(labels.origin, float))[::-1]     # z y x
            start = np.rint(at).astype(int)
            inside = tuple(slice(s.start - int(o), s.stop - int(o)) for s, o in zip(self.slices, start))
            if np.allclose(at, start, atol=1e-3) and all(
                    r.start >= 0 and r.stop <= n for r, n in zip(inside, labels.array.shape)):
                return labels.array[inside]
        raise InputError("the refinement's result is not on the volume's grid or misses the box", self.path,
                         "press Apply again")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout_s: float | None = None) -> "ResultReader":
        self._done.wait(timeout_s)
        return self
