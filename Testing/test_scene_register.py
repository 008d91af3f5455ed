"""Issue 23 part 4: "Register pre-RT to mid-RT" in the Slicer module, on a real MRML scene (slicer-core).

* the convention: the registration's ITK transform (LPS, mid-RT point -> pre-RT point) becomes a
  linear node under a grid node whose chain maps a mid-RT RAS point where SimpleITK maps it
  (within 0.1 mm);
* the step itself: a synthetic pair (:mod:`HNTumorSegLib.phantoms.registration_pair`) with the
  pre-RT contours as a clinic's RTSTRUCT-like segmentation, registered by a real worker process
  (polled like the GUI's timer) -> transform nodes + a registered prior with Dice >= 0.85 per label
  against the truly warped mask -> boxes from it; an edit of the rigid node re-resamples the prior
  through the edited chain.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")
require_module("SimpleITK")

import SimpleITK as sitk  # noqa: E402

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.image import Image  # noqa: E402
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import vtk_matrix, make_scene, numpy_matrix, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.prior_registration import map_mid_to_pre, resample_prior, transform_nodes  # noqa: E402
from HNTumorSegLib.scene.prior_table import auto_table_text, segmentation_from_label_map  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import export_label_map  # noqa: E402

DICE_MIN = 0.85
FLIP = np.array([-1.0, -1.0, 1.0])


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    a, b = a == label, b == label
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def _oblique_grid() -> Image:
    """A mid-RT-like grid, tilted 20 degrees about z and shifted: direction and origin both matter."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Image(np.zeros((20, 48, 56), np.uint8), (1.8, 1.6, 3.0), (-40.0, 25.0, -30.0), direction)


def test_itk_transform_maps_points_where_simpleitk_does():
    """A transform shaped as the registration makes it (CompositeTransform([rigid, B-spline]):
    5 degrees, 10 mm, a smooth deformation of a few mm) on an oblique grid."""
    grid = _oblique_grid()
    rigid = sitk.Euler3DTransform(grid.index_to_physical(np.array([[28.0, 24.0, 10.0]]))[0].tolist(),
                                  0.02, -0.03, np.radians(5.0), (6.0, -7.0, 4.0))
    bspline = sitk.BSplineTransformInitializer(grid.to_sitk(), [3, 3, 2], order=3)
    coefficients = np.random.default_rng(23).uniform(-4.0, 4.0, len(bspline.GetParameters()))
    bspline.SetParameters(coefficients.tolist())
    transform = sitk.CompositeTransform([rigid, bspline])
    scene = make_scene().scene
    linear, grid_node = transform_nodes(scene, transform, grid)
    assert linear.IsA("vtkMRMLLinearTransformNode") and grid_node.IsA("vtkMRMLGridTransformNode")
    assert linear.GetParentTransformNode() is grid_node               # the linear part is the editable child
    rng = np.random.default_rng(5)
    index = rng.uniform([2, 2, 2], np.array(grid.shape_xyz) - 3, size=(200, 3))
    points = grid.index_to_physical(index)                            # LPS points inside the mid-RT grid
    itk = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in points])
    err = np.linalg.norm(map_mid_to_pre(linear, points * FLIP) * FLIP - itk, axis=1)
    print(f"{len(points)} points: Slicer chain vs SimpleITK, max {err.max():.4f} mm")
    assert err.max() <= 0.1
    deformation = np.linalg.norm(itk - np.array([rigid.TransformPoint(tuple(bspline.TransformPoint(tuple(p))))
                                                 for p in points.tolist()]), axis=1)
    assert np.abs(deformation).max() < 1e-6                          # ITK's order: the B-spline first
    assert np.linalg.norm(itk - np.array([rigid.TransformPoint(tuple(p)) for p in points.tolist()]), axis=1).max() > 1
    # a rigid registration: one linear node, no grid (VTK keeps points in float32: 1e-4 mm)
    lin, none = transform_nodes(scene, rigid, None)
    assert none is None
    itk = np.array([rigid.TransformPoint(tuple(float(v) for v in p)) for p in points])
    assert np.abs(map_mid_to_pre(lin, points * FLIP) * FLIP - itk).max() <= 1e-4


def test_resample_prior_follows_an_edit_exactly():
    """A known transform (rigid + B-spline) as nodes; the prior through it, then through it after a
    6 mm edit of the rigid node, against SimpleITK warping with the same transforms."""
    from HNTumorSegLib.prompts.registration import Registration, warp_labels
    from HNTumorSegLib.vocab import RegistrationMode

    pair = make_registration_pair(seed=2, shape=(14, 48, 48), spacing=(3.0, 3.0, 5.5))
    fixed = pair["fixed"]
    rigid = sitk.Euler3DTransform(fixed.index_to_physical(np.array([[24.0, 24.0, 7.0]]))[0].tolist(),
                                  0.0, 0.02, np.radians(4.0), (5.0, -3.0, 2.0))
    bspline = sitk.BSplineTransformInitializer(fixed.to_sitk(), [3, 3, 2], order=3)
    bspline.SetParameters(np.random.default_rng(7).uniform(-3.0, 3.0, len(bspline.GetParameters())).tolist())
    scene = make_scene().scene
    mid = volume_node_from_image(scene, fixed, "midRT_T2")
    pre = volume_node_from_image(scene, pair["moving"], "preRT_T2")
    prior = segmentation_from_label_map(scene, pair["moving_mask"], pre, {1: ["GTV_P"], 2: ["GTVn"]})
    linear, _grid = transform_nodes(scene, sitk.CompositeTransform([rigid, bspline]), fixed)

    def expected(*parts):
        reg = Registration(sitk.CompositeTransform(list(parts)), rigid, RegistrationMode.DEFORMABLE, fixed.to_sitk(),
                           fixed.to_sitk(), [], (1, 1, 1))
        return warp_labels(pair["moving_mask"], reg, fixed).array

    got = export_label_map(resample_prior(scene, linear, mid, pre, prior), mid).array
    truth = expected(rigid, bspline)
    m = numpy_matrix(linear.GetMatrixTransformToParent())
    m[0, 3] += 6.0                                                   # the user: 6 mm to the right (R)
    linear.SetMatrixTransformToParent(vtk_matrix(m))
    edited = export_label_map(resample_prior(scene, linear, mid, pre, prior), mid).array
    # FromParent after the edit: the B-spline, then 6 mm back to the left (+6 mm in LPS x), then the rigid part
    truth_edited = expected(rigid, sitk.TranslationTransform(3, (6.0, 0.0, 0.0)), bspline)
    for value in (1, 2):
        print(f"label {value}: Dice {dice(got, truth, value):.3f}, after the edit {dice(edited, truth_edited, value):.3f}"
              f" (unedited vs edited {dice(edited, truth, value):.3f})")
        assert dice(got, truth, value) >= 0.97 and dice(edited, truth_edited, value) >= 0.97
        assert dice(edited, truth, value) < 0.9


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    pair = make_registration_pair(seed=0)
    scene = make_scene().scene
    mid = volume_node_from_image(scene, pair["fixed"], "midRT_T2")
    pre = volume_node_from_image(scene, pair["moving"], "preRT_T2")
    prior = segmentation_from_label_map(scene, pair["moving_mask"], pre, {1: ["GTV_P"], 2: ["GTVn_L2", "GTV-N R"]},
                                        extra=["Brainstem"], name="preRT RTSTRUCT")
    structures = auto_table_text(prior)
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    t0 = time.monotonic()
    logic.start_register(mid, pre, prior, structures)
    stages = []
    while logic.running:
        state = logic.poll()
        stages.append(state.stage)
        time.sleep(0.2)
    state = logic.poll()
    assert logic.run.state == "succeeded", (logic.run.state, state.error)
    result = logic.import_registration()
    print(f"registration in the worker: {time.monotonic() - t0:.1f} s")
    return dict(pair=pair, scene=scene, mid=mid, pre=pre, prior=prior, structures=structures, logic=logic,
                result=result, stages=stages)


@pytest.mark.slow   # a real deformable registration in a worker: ~1-2 min on 2 busy cores
def test_register_step_leaves_transform_nodes_and_a_registered_prior(registered):
    r = registered
    pair, result = r["pair"], r["result"]
    assert {"rigid", "deformable", "write"} <= set(r["stages"])
    assert result.linear.IsA("vtkMRMLLinearTransformNode") and result.grid.IsA("vtkMRMLGridTransformNode")
    assert r["pre"].GetTransformNodeID() == result.linear.GetID()       # shown on the mid-RT scan
    assert r["prior"].GetTransformNodeID() == result.linear.GetID()
    assert r["logic"].result_dir is None                                 # the worker's files were removed
    labels = export_label_map(result.segmentation, r["mid"]).array
    truth = pair["truth_mask"].array
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        print(f"{name}: Dice {dice(labels, truth, value):.3f}")
        assert dice(labels, truth, value) >= DICE_MIN, name
    rois = r["logic"].boxes_from_prior(result.segmentation, r["mid"])
    assert sorted(roi.GetName() for roi in rois) == ["GTVn-1", "GTVn-2", "GTVp-1"]


@pytest.mark.slow   # a real deformable registration in a worker: ~1-2 min on 2 busy cores
def test_prior_is_resampled_through_an_edited_transform(registered):
    r = registered
    worker = export_label_map(r["result"].segmentation, r["mid"]).array
    same = resample_prior(r["scene"], r["result"].linear, r["mid"], r["pre"], r["prior"], r["structures"])
    again = export_label_map(same, r["mid"]).array
    for value in (1, 2):
        assert dice(again, worker, value) >= 0.97                        # the chain reproduces the worker
    # the user shifts the rigid part 6 mm to the right (R) in the Transforms module
    linear = r["result"].linear
    m = numpy_matrix(linear.GetMatrixTransformToParent())
    m[0, 3] += 6.0
    linear.SetMatrixTransformToParent(vtk_matrix(m))
    edited = export_label_map(resample_prior(r["scene"], linear, r["mid"], r["pre"], r["prior"], r["structures"],
                                             segmentation=same), r["mid"]).array
    mid_image = r["pair"]["fixed"]
    for value in (1, 2):
        before = mid_image.index_to_physical(np.argwhere(again == value)[:, ::-1].astype(float)).mean(0)
        after = mid_image.index_to_physical(np.argwhere(edited == value)[:, ::-1].astype(float)).mean(0)
        shift_ras = (after - before) * FLIP
        # to the right, by the 6 mm edit as the (non-uniform) deformation above the rigid node carries it
        # (the exact check of an edit is test_resample_prior_follows_an_edit_exactly)
        assert shift_ras[0] > 3.0 and np.abs(shift_ras[1:]).max() < 2.0, shift_ras


@pytest.mark.slow   # a real deformable registration in a worker: ~1-2 min on 2 busy cores
def test_register_needs_both_volumes(registered):
    with pytest.raises(InputError, match="pre-RT T2"):
        registered["logic"].start_register(registered["mid"], None)
