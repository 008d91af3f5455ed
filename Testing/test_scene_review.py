"""Review tables on a real vtkMRMLScene (slicer-core) equal HNTumorSegLib.metrics and hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")

from HNTumorSegLib.image import Image, lps_to_ras  # noqa: E402
from HNTumorSegLib.metrics import score_case  # noqa: E402
from HNTumorSegLib.scene.logic import SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image  # noqa: E402
from HNTumorSegLib.scene.review import rows_from_table_node  # noqa: E402
from HNTumorSegLib.scene.segmentation_io import import_label_map  # noqa: E402


@pytest.fixture(scope="module")
def app():
    return make_scene()


def test_review_tables_equal_metrics(app):
    spacing = (0.8, 1.2, 3.0)
    result = np.zeros((8, 20, 20), np.uint8)
    result[2:5, 4:10, 4:10] = 1          # 108 voxels
    result[5:7, 14:17, 14:17] = 2        # 18 voxels
    result[1, 2, 17] = 2                 # 1 voxel, a second node
    ref = np.zeros_like(result)
    ref[2:5, 5:11, 4:10] = 1
    ref[5:7, 14:17, 13:16] = 2
    grid = Image(result, spacing, (10.0, -5.0, 2.0), np.diag([-1.0, 1.0, 1.0]))
    t2 = volume_node_from_image(app.scene, grid.with_array(result.astype(np.float32)), "T2")
    seg = import_label_map(app.scene, grid, t2)
    ref_node = volume_node_from_image(app.scene, grid.with_array(ref), "reference", label=True)
    tables = SegmentationSceneLogic(app.scene).review(seg, t2, reference=ref_node)
    voxel_ml = np.prod(spacing) / 1000.0

    volumes = rows_from_table_node(tables["volumes"])
    assert [r["segment"] for r in volumes] == ["GTVp", "GTVn"]
    assert [r["voxels"] for r in volumes] == [108, 19]
    np.testing.assert_allclose([r["volume_ml"] for r in volumes], [108 * voxel_ml, 19 * voxel_ml])

    lesions = rows_from_table_node(tables["lesions"])
    assert [r["lesion"] for r in lesions] == ["GTVp-1", "GTVn-1", "GTVn-2"]
    np.testing.assert_allclose([r["volume_ml"] for r in lesions], [108 * voxel_ml, 18 * voxel_ml, voxel_ml])
    # centroid of GTVn-2 = centre of voxel (i=17, j=2, k=1) in RAS
    expected = lps_to_ras(grid.index_to_physical(np.array([17.0, 2.0, 1.0])))
    np.testing.assert_allclose([lesions[2][c] for c in ("centroid_R", "centroid_A", "centroid_S")], expected)

    comparison = rows_from_table_node(tables["comparison"])
    metrics = score_case(grid, grid.with_array(ref)).metrics
    for row in comparison:
        m = metrics[row["segment"]]
        np.testing.assert_allclose(row["DSC"], m["DSC"])
        np.testing.assert_allclose(row["HD95_mm"], m["HD95"])
        np.testing.assert_allclose(row["MSD_mm"], m["MSD"])
        np.testing.assert_allclose(row["IoU"], m["IoU"])
        np.testing.assert_allclose(row["volume_ml"], m["volume_pred_ml"])
        np.testing.assert_allclose(row["reference_volume_ml"], m["volume_ref_ml"])
    # hand check of one: GTVp overlap 3*5*6 = 90 of 108 + 108
    np.testing.assert_allclose(comparison[0]["DSC"], 2 * 90 / 216)
    for n in [seg, t2, ref_node, *tables.values()]:
        app.scene.RemoveNode(n)
