"""Undo of a refinement keeps the user's later edits (issue 26, item 7), on slicer-core.

Before, ``SceneSession.undo`` put back whole segments as they were before the refinement: a voxel
painted anywhere after it was lost. Now a refinement records only its box (each segment's box
after it, and before it where it changed, one bit a voxel) and undo puts back only the voxels that
still hold the refinement's labels. Checked here with refinements applied from label maps (the
part a finished job ends with), edits made like the Segment Editor's (whole-segment writes
through Slicer's import), and the segments read back through Slicer's export.
"""

from __future__ import annotations

import numpy as np
from conftest import require_module

require_module("slicer", "pip install slicer-core")

from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.prompts.boxes import boxes_from_mask, box_to_index_slices  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.refinement import SceneSession  # noqa: E402
from HNTumorSegLib.scene.segment_arrays import segment_mask, set_segment_mask  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map, segment_ids_by_label  # noqa: E402

SHAPE = (20, 48, 48)


def _grid(shape=SHAPE) -> Image:
    direction = np.eye(3)
    return Image(np.zeros(shape, np.int16), (0.8, 0.8, 2.0), (-10.0, 5.0, 30.0), direction)


def _box(ref: Image, zyx: tuple[slice, slice, slice], label: int = 2):
    """The LesionBox covering exactly ``zyx`` (as Slicer's ROI of a lesion there would)."""
    block = np.zeros(ref.array.shape, np.uint8)
    block[zyx] = label
    (box,) = boxes_from_mask(ref.with_array(block))
    assert box_to_index_slices(box, ref) == zyx
    return box


def _case(shape=SHAPE):
    """A scene with a GTVp and a GTVn block, tracked by a SceneSession (no session process needed)."""
    scene = make_scene().scene
    ref = _grid(shape)
    labels = np.zeros(shape, np.uint8)
    labels[4:10, 5:15, 5:15] = 1
    labels[6:8, 21:23, 21:23] = 1          # a bit of GTVp inside the GTVn box: the refinement takes it
    labels[4:10, 25:35, 25:35] = 2
    t2 = volume_node_from_image(scene, ref, "T2")
    seg = import_label_map(scene, ref.with_array(labels), t2)
    ss = SceneSession(scene, SegmentationSceneLogic(scene))
    ss.track(seg, Parameters(task="prert", inputs={"T2": t2.GetID()}, model="demo-prert", device="cpu"))
    groups = segment_ids_by_label(seg)
    return ss, ref, labels, seg, t2, groups[1][0], groups[2][0]


def _masks(seg, t2, *sids):
    return [segment_mask(seg, sid, t2) for sid in sids]


def _set_voxel(seg, t2, sid, zyx, on: bool, *others):
    """A Segment Editor stroke of one voxel: into ``sid`` (out of ``others``: its overwrite), or erased."""
    mask = segment_mask(seg, sid, t2)
    mask[zyx] = on
    set_segment_mask(seg, sid, mask, t2)
    for other in others:
        m = segment_mask(seg, other, t2)
        if m[zyx]:
            m[zyx] = False
            set_segment_mask(seg, other, m, t2)


def test_undo_restores_only_what_the_refinement_changed_and_keeps_later_edits():
    ss, ref, labels, seg, t2, gtvp, gtvn = _case()
    try:
        box_zyx = (slice(2, 12), slice(20, 40), slice(20, 40))
        box = _box(ref, box_zyx)
        before_p, before_n = _masks(seg, t2, gtvp, gtvn)
        refined = labels.copy()
        refined[box_zyx] = np.where(refined[box_zyx] == 2, 0, refined[box_zyx])
        refined[3:11, 22:38, 22:38] = 2       # the lesion grown, over GTVp's bit in the box
        refined[4:10, 25:27, 25:35] = 0       # and shrunk at one side
        ss._apply(ref.with_array(refined), box)
        after_p, after_n = _masks(seg, t2, gtvp, gtvn)
        inside = np.zeros(SHAPE, bool)
        inside[box_zyx] = True
        np.testing.assert_array_equal(after_n[inside], refined[inside] == 2)
        np.testing.assert_array_equal(after_n[~inside], before_n[~inside])
        np.testing.assert_array_equal(after_p, before_p & ~(refined == 2))
        assert not (after_p & after_n).any()

        # later edits: one outside the box, three inside it
        elsewhere = (15, 40, 5)
        _set_voxel(seg, t2, gtvp, elsewhere, True)
        painted_p = (3, 30, 30)                # the refinement made it GTVn; the user paints GTVp there
        assert after_n[painted_p] and not before_n[painted_p] and not before_p[painted_p]
        _set_voxel(seg, t2, gtvp, painted_p, True, gtvn)
        erased_n = (3, 36, 36)                 # the refinement added it to GTVn; the user erases it
        assert after_n[erased_n] and not before_n[erased_n]
        _set_voxel(seg, t2, gtvn, erased_n, False)
        kept_n = (5, 25, 30)                   # the refinement removed it from GTVn; the user paints it back
        assert before_n[kept_n] and not after_n[kept_n]
        _set_voxel(seg, t2, gtvn, kept_n, True)
        edited = {elsewhere, painted_p, erased_n, kept_n}
        now_p, now_n = _masks(seg, t2, gtvp, gtvn)

        assert ss.undo() and not ss.undo()
        undone_p, undone_n = _masks(seg, t2, gtvp, gtvn)
        for v in edited:                                            # every later edit stays
            assert (undone_p[v], undone_n[v]) == (now_p[v], now_n[v]), v
        untouched = np.ones(SHAPE, bool)
        for v in edited:
            untouched[v] = False
        np.testing.assert_array_equal(undone_p[untouched], before_p[untouched])   # the rest as before
        np.testing.assert_array_equal(undone_n[untouched], before_n[untouched])
        assert not (undone_p & undone_n).any()
    finally:
        ss.cleanup()


def test_two_refinements_are_undone_in_order():
    ss, ref, labels, seg, t2, gtvp, gtvn = _case()
    try:
        first = _box(ref, (slice(2, 12), slice(20, 40), slice(20, 40)))
        second = _box(ref, (slice(2, 12), slice(3, 17), slice(3, 17)), label=1)
        states = [_masks(seg, t2, gtvp, gtvn)]
        one = labels.copy()
        one[2:12, 20:40, 20:40] = 0
        one[3:11, 24:36, 24:36] = 2
        ss._apply(ref.with_array(one), first)
        states.append(_masks(seg, t2, gtvp, gtvn))
        two = one.copy()
        two[2:12, 3:17, 3:17] = 0
        two[5:9, 4:16, 6:12] = 1
        ss._apply(ref.with_array(two), second)
        assert len(ss.undo_stack) == 2
        for expected in (states[1], states[0]):
            assert ss.undo()
            for got, want in zip(_masks(seg, t2, gtvp, gtvn), expected):
                np.testing.assert_array_equal(got, want)
        assert not ss.undo() and ss.undo_state is None
    finally:
        ss.cleanup()


def test_the_undo_record_follows_the_box_not_the_volume():
    sizes = {}
    for shape in (SHAPE, (40, 96, 96)):
        ss, ref, labels, seg, t2, gtvp, gtvn = _case(shape)
        try:
            box_zyx = (slice(2, 12), slice(20, 40), slice(20, 40))
            refined = labels.copy()
            refined[box_zyx] = 0
            refined[3:11, 22:38, 22:38] = 2
            ss._apply(ref.with_array(refined), _box(ref, box_zyx))
            edit = ss.undo_state.edit
            sizes[shape] = edit.nbytes
            box_voxels = 10 * 20 * 20
            # two segments: each one bit a voxel after, and before where it changed (both did here)
            assert edit.nbytes == 2 * 2 * -(-box_voxels // 8), edit.nbytes
        finally:
            ss.cleanup()
    assert len(set(sizes.values())) == 1, sizes
