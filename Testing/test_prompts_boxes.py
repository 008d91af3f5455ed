"""Lesion boxes: from masks, boxes.json both ways, RAS <-> voxel index ranges (property-based)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, lps_to_ras
from HNTumorSegLib.prompts.boxes import (_EPS, LesionBox, box_to_index_range, box_to_index_slices, boxes_from_mask,
                                         boxes_to_mask, index_box_to_ras, read_boxes, union_region, write_boxes)


def _mask_image(spacing=(0.5, 0.8, 2.0), origin=(10.0, -20.0, 5.0), direction=None) -> Image:
    m = np.zeros((12, 30, 40), np.uint8)
    m[2:6, 4:14, 5:11] = 1           # GTVp, 4*10*6 = 240 voxels
    m[8:10, 20:23, 30:33] = 2        # GTVn, 18 voxels
    m[3, 25, 25] = 2                 # GTVn: two voxels touching only at a corner = two face-connected lesions
    m[4, 26, 26] = 2
    m[10, 2, 38] = 2                 # GTVn, single voxel
    return Image(m, spacing, origin, np.eye(3) if direction is None else direction)


# ---- boxes from a mask -----------------------------------------------------------------------

def test_components_names_and_order():
    img = _mask_image()
    boxes = boxes_from_mask(img)
    assert [b.name for b in boxes] == ["GTVp-1", "GTVn-1", "GTVn-2", "GTVn-3", "GTVn-4"]
    assert [b.label for b in boxes] == [1, 2, 2, 2, 2]
    ranges = [box_to_index_slices(b, img) for b in boxes]
    assert ranges[0] == (slice(2, 6), slice(4, 14), slice(5, 11))
    assert ranges[1] == (slice(8, 10), slice(20, 23), slice(30, 33))       # largest node first
    # the corner-touching pair: two boxes (seed 003's face connectivity), ties ordered by z, y, x
    assert ranges[2] == (slice(3, 4), slice(25, 26), slice(25, 26))
    assert ranges[3] == (slice(4, 5), slice(26, 27), slice(26, 27))
    assert ranges[4] == (slice(10, 11), slice(2, 3), slice(38, 39))


def test_face_connectivity_splits_diagonal_only_neighbours():
    from HNTumorSegLib.prompts.boxes import lesion_components

    m = np.zeros((5, 6, 6), np.uint8)
    m[1, 1, 1] = m[2, 2, 2] = 2          # corner neighbours
    m[1, 4, 1] = m[1, 5, 2] = 2          # edge neighbours (in-plane diagonal)
    m[3, 1, 4] = m[3, 1, 5] = 2          # face neighbours: one lesion whatever the rule
    img = Image(m, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    assert len(boxes_from_mask(img)) == 5
    assert len(lesion_components(m, 2, connectivity=6)) == 5
    assert len(lesion_components(m, 2, connectivity=26)) == 3       # the old rule merges the diagonals
    face = [b for b in boxes_from_mask(img) if box_to_index_slices(b, img)[2] == slice(4, 6)]
    assert len(face) == 1
    with pytest.raises(ValueError):
        lesion_components(m, 2, connectivity=18)


def test_box_covers_voxel_edges_in_ras():
    img = _mask_image()
    box = boxes_from_mask(img)[0]
    # x voxels 5..10 at 0.5 mm from origin 10: edges 10 + 4.5*0.5 .. 10 + 10.5*0.5 in LPS, RAS flips the sign
    assert box.min_ras[0] == pytest.approx(-(10 + 10.5 * 0.5))
    assert box.max_ras[0] == pytest.approx(-(10 + 4.5 * 0.5))
    assert box.size_mm == pytest.approx((6 * 0.5, 10 * 0.8, 4 * 2.0))


def test_fixed_margins_in_voxels_and_mm():
    img = _mask_image()
    b_vox = boxes_from_mask(img, margin_vox=2)[0]
    assert box_to_index_slices(b_vox, img) == (slice(0, 8), slice(2, 16), slice(3, 13))
    b_mm = boxes_from_mask(img, margin_mm=1.0)[0]
    b0 = boxes_from_mask(img)[0]
    assert np.allclose(np.subtract(b0.min_ras, b_mm.min_ras), 1.0)
    assert np.allclose(np.subtract(b_mm.max_ras, b0.max_ras), 1.0)


def test_random_margin_range_per_side_and_seeded():
    img = _mask_image()
    base = [box_to_index_range(b, img) for b in boxes_from_mask(img)]
    seen = set()
    for seed in range(40):
        boxes = boxes_from_mask(img, random_margin_vox=(2, 6), rng=np.random.default_rng(seed))
        lo, hi = box_to_index_range(boxes[1], img)           # GTVn-1, far enough from every edge
        d_lo, d_hi = base[1][0] - lo, hi - base[1][1]
        assert np.all((d_lo >= 2) & (d_lo <= 6)) and np.all((d_hi >= 2) & (d_hi <= 6))
        seen.update(d_lo.tolist() + d_hi.tolist())
    assert seen == {2, 3, 4, 5, 6}                            # both ends of the range are drawn
    a = boxes_from_mask(img, random_margin_vox=(2, 6), rng=3)
    b = boxes_from_mask(img, random_margin_vox=(2, 6), rng=3)
    c = boxes_from_mask(img, random_margin_vox=(2, 6), rng=4)
    assert a == b and a != c


def test_draw_order_is_documented():
    """Row 0 = low sides (i, j, k), row 1 = high sides, one (2, 3) draw per box in box order."""
    img = _mask_image()
    boxes = boxes_from_mask(img, random_margin_vox=(2, 6), rng=np.random.default_rng(11))
    draws = np.random.default_rng(11).integers(2, 7, size=(2, 3))
    lo, hi = box_to_index_range(boxes[0], img)
    lo0, hi0 = box_to_index_range(boxes_from_mask(img)[0], img)
    n = np.array(img.shape_xyz)
    assert np.array_equal(lo, np.maximum(lo0 - draws[0], 0))
    assert np.array_equal(hi, np.minimum(hi0 + draws[1], n - 1))


def test_boxes_to_mask_and_union_region():
    img = _mask_image()
    boxes = boxes_from_mask(img)
    m = boxes_to_mask(boxes, img)
    assert m.dtype == bool and m.shape == img.array.shape
    assert m[img.array > 0].all()
    assert m.sum() == 240 + 18 + 1 + 1 + 1
    grown = boxes_to_mask(boxes[:1], img, margin_mm=2.0)      # 2 mm = 4 x-voxels, 2.5 y, 1 z
    # y: faces at 3.5 - 2.5 = 1.0 and 13.5 + 2.5 = 16.0 pass through voxel centres 1 and 16: kept
    assert box_to_index_slices(boxes[0].expanded(2.0), img) == (slice(1, 7), slice(1, 17), slice(1, 15))
    assert grown.sum() == 6 * 16 * 14
    region = union_region(boxes, img, surround_mm=0.0)
    assert region == (slice(2, 11), slice(2, 27), slice(5, 39))
    with pytest.raises(InputError):
        union_region([], img)


def test_empty_mask_gives_no_boxes():
    img = _mask_image()
    assert boxes_from_mask(img.with_array(np.zeros_like(img.array))) == []


# ---- boxes.json --------------------------------------------------------------------------------

def test_json_round_trip(tmp_path):
    img = _mask_image()
    boxes = boxes_from_mask(img, margin_vox=1)
    path = write_boxes(boxes, tmp_path / "sub" / "boxes.json")
    data = json.loads(path.read_text())
    assert set(data[0]) == {"label", "name", "min_ras", "max_ras"}
    back = read_boxes(path)
    assert [b.name for b in back] == [b.name for b in boxes]
    for a, b in zip(boxes, back):
        assert np.allclose(a.min_ras, b.min_ras, atol=1e-6) and np.allclose(a.max_ras, b.max_ras, atol=1e-6)
        assert box_to_index_slices(a, img) == box_to_index_slices(b, img)
    assert not list(tmp_path.glob("sub/.tmp-*"))


GOOD = {"label": 1, "name": "GTVp-1", "min_ras": [0, 0, 0], "max_ras": [1, 2, 3]}


@pytest.mark.parametrize("content, words", [
    ("[{\"label\": 1,", "not valid JSON"),
    (json.dumps({"label": 1}), "JSON list"),
    (json.dumps([{k: v for k, v in GOOD.items() if k != "max_ras"}]), "lacks max_ras"),
    (json.dumps([dict(GOOD, label=3)]), "unknown label 3"),
    (json.dumps([dict(GOOD, label=True)]), "unknown label True"),
    (json.dumps([dict(GOOD, min_ras=[0, 5, 0])]), "above max_ras"),
    (json.dumps([dict(GOOD, min_ras=[0, "a", 0])]), "3 finite numbers"),
    (json.dumps([dict(GOOD, max_ras=[1, 2])]), "3 finite numbers"),
    (json.dumps([dict(GOOD, name="")]), "name"),
    (json.dumps(["box"]), "not an object"),
])
def test_bad_boxes_files(tmp_path, content, words):
    p = tmp_path / "boxes.json"
    p.write_text(content)
    with pytest.raises(InputError) as err:
        read_boxes(p)
    assert words in str(err.value) and str(p) in err.value.one_line()


def test_missing_file_and_lenient_forms(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_boxes(tmp_path / "nope.json")
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"boxes": [{"label": "GTVn", "min_ras": [0, 0, 0], "max_ras": [1, 1, 1]},
                                       {"label": 2, "min_ras": [5, 0, 0], "max_ras": [6, 1, 1]}]}))
    boxes = read_boxes(p)
    assert [(b.label, b.name) for b in boxes] == [(2, "GTVn-1"), (2, "GTVn-2")]


def test_box_outside_or_empty_raises():
    img = _mask_image()
    far = LesionBox(1, "GTVp-1", (500, 500, 500), (510, 510, 510))
    with pytest.raises(InputError, match="wholly outside"):
        box_to_index_slices(far, img)
    flat = LesionBox(1, "GTVp-1", (-12, -25, 10), (-12, -20, 14))
    with pytest.raises(InputError, match="empty"):
        box_to_index_slices(flat, img)


def test_partly_outside_box_is_clamped_and_thin_box_keeps_its_slice():
    img = _mask_image()
    lo, hi = index_box_to_ras(img, (-5, -5, -5), (3, 3, 3))
    assert box_to_index_slices(LesionBox(1, "a", lo, hi), img) == (slice(0, 4), slice(0, 4), slice(0, 4))
    # a box 0.4 mm thick in z inside slice k=3 (2 mm slices) holding no slice centre
    z_centre = 5.0 + 3 * 2.0
    thin = LesionBox(1, "a", (-13, 20, z_centre + 0.3), (-11, 22, z_centre + 0.7))
    assert box_to_index_slices(thin, img)[0] == slice(3, 4)


# ---- property-based: voxels -> RAS -> voxels under any direction --------------------------------

def _signed_permutations():
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, s) in enumerate(zip(perm, signs)):
                m[row, col] = s
            out.append(m)
    return out


SIGNED_PERMS = _signed_permutations()


def _rotation(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


sizes = st.tuples(*[st.integers(3, 14)] * 3)
spacings = st.tuples(*[st.floats(0.3, 5.0)] * 3)
origins = st.tuples(*[st.floats(-300, 300)] * 3)


@st.composite
def index_boxes(draw, n_xyz):
    lo = [draw(st.integers(0, n - 1)) for n in n_xyz]
    hi = [draw(st.integers(l, n - 1)) for l, n in zip(lo, n_xyz)]
    return np.array(lo), np.array(hi)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, spacing=spacings, origin=origins, perm=st.sampled_from(range(len(SIGNED_PERMS))), data=st.data())
def test_round_trip_exact_for_axis_aligned_directions(size, spacing, origin, perm, data):
    img = Image(np.zeros(size[::-1], np.uint8), spacing, origin, SIGNED_PERMS[perm])
    lo, hi = data.draw(index_boxes(size))
    mn, mx = index_box_to_ras(img, lo, hi)
    lo2, hi2 = box_to_index_range(LesionBox(1, "b", mn, mx), img)
    assert np.array_equal(lo2, lo) and np.array_equal(hi2, hi)
    # and the RAS box of the result is the same box (within float noise, far below half a voxel)
    mn2, mx2 = index_box_to_ras(img, lo2, hi2)
    assert np.allclose(mn2, mn, atol=1e-6) and np.allclose(mx2, mx, atol=1e-6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, spacing=spacings, origin=origins, perm=st.sampled_from(range(len(SIGNED_PERMS))),
       quat=st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: np.linalg.norm(q) > 0.2), data=st.data())
def test_rotated_directions_keep_every_voxel_and_stay_tight(size, spacing, origin, perm, quat, data):
    direction = _rotation(np.array(quat)) @ SIGNED_PERMS[perm]
    img = Image(np.zeros(size[::-1], np.uint8), spacing, origin, direction)
    lo, hi = data.draw(index_boxes(size))
    mn, mx = index_box_to_ras(img, lo, hi)
    box = LesionBox(2, "b", mn, mx)
    lo2, hi2 = box_to_index_range(box, img)
    # 1. the original voxels are all kept
    assert np.all(lo2 <= lo) and np.all(hi2 >= hi)
    # 2. every voxel whose centre lies in the RAS box is kept (brute force over the grid)
    n = np.array(size)
    ijk = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    ras = lps_to_ras(img.index_to_physical(ijk))
    inside = np.all((ras >= np.asarray(mn) - 1e-9) & (ras <= np.asarray(mx) + 1e-9), axis=1)
    assert np.all(ijk[inside] >= lo2) and np.all(ijk[inside] <= hi2)
    # 3. tight: each face lies within one voxel of the box's continuous index hull (unless clamped)
    corners = np.array([[a, b, c] for a in (mn[0], mx[0]) for b in (mn[1], mx[1]) for c in (mn[2], mx[2])])
    cont = img.physical_to_index(lps_to_ras(corners))
    cmin, cmax = cont.min(0), cont.max(0)
    free_lo, free_hi = lo2 > 0, hi2 < n - 1
    # (a face within the rounding slack _EPS of a voxel centre keeps that voxel: 1e-4 voxel)
    tol = _EPS + 1e-9
    assert np.all((cmin[free_lo] <= lo2[free_lo] + tol) & (lo2[free_lo] < cmin[free_lo] + 1 + tol))
    assert np.all((cmax[free_hi] >= hi2[free_hi] - tol) & (hi2[free_hi] > cmax[free_hi] - 1 - tol))
    # 4. the RAS box of the result contains the original RAS box
    mn2, mx2 = index_box_to_ras(img, lo2, hi2)
    assert np.all(mn2 <= np.asarray(mn) + 1e-6) and np.all(mx2 >= np.asarray(mx) - 1e-6)
