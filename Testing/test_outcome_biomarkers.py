"""PET biomarkers against values computed by hand on a phantom with known SUVs.

The PET lies on its own anisotropic grid (3 x 3 x 6 mm) and the label map on a finer one
(1 x 1 x 2 mm, another origin): each PET voxel covers 3 x 3 x 3 label voxels whose middle
one shares its centre, so nearest-neighbour resampling of the labels onto the PET is exact
and every value below can be worked out on paper.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import require_module

from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.outcome.biomarkers import PEAK_RADIUS_MM, compute_biomarkers, sphere_offsets
from HNTumorSegLib.scene.biomarkers_table import BIOMARKER_COLUMNS, biomarker_rows

PET_SPACING = (3.0, 3.0, 6.0)
PET_ORIGIN = (10.0, -20.0, 30.0)
LAB_SPACING = (1.0, 1.0, 2.0)
LAB_ORIGIN = (9.0, -21.0, 28.0)  # label voxel 3i+1 has the centre of PET voxel i


def _pet_voxels_to_labels(labels: np.ndarray, zyx: tuple[int, int, int], value: int) -> None:
    z, y, x = zyx
    labels[3 * z:3 * z + 3, 3 * y:3 * y + 3, 3 * x:3 * x + 3] = value


@pytest.fixture
def phantom():
    pet = np.full((10, 20, 20), 1.0, np.float32)
    labels = np.zeros((30, 60, 60), np.uint8)
    # GTVp: PET block z 3..5, y 5..9, x 5..9 of SUV 5 with one hot voxel of 20 in its middle
    pet[3:6, 5:10, 5:10] = 5.0
    pet[4, 7, 7] = 20.0
    labels[9:18, 15:30, 15:30] = 1
    # + one label slice that holds no PET voxel centre: counts in MTV, not in SUV statistics
    labels[18, 15:30, 15:30] = 1
    # GTVn lesion A: two PET voxels touching only at an edge (26-connected: one lesion), SUV 8 and 10
    for zyx, suv in (((4, 14, 3), 8.0), ((4, 15, 4), 10.0)):
        pet[zyx] = suv
        _pet_voxels_to_labels(labels, zyx, 2)
    # GTVn lesion B: two neighbouring PET voxels, SUV 4 and 6
    for zyx, suv in (((7, 15, 14), 4.0), ((7, 15, 15), 6.0)):
        pet[zyx] = suv
        _pet_voxels_to_labels(labels, zyx, 2)
    return Image(pet, PET_SPACING, PET_ORIGIN), Image(labels, LAB_SPACING, LAB_ORIGIN)


def brute_force_peak(pet: Image, region_pet: np.ndarray) -> float:
    """Independent SUVpeak: physical distances between all voxel centres, no kernel."""
    idx = np.argwhere(np.ones(pet.array.shape, bool))
    pts = pet.index_to_physical(idx[:, ::-1])
    values = pet.array.reshape(-1)
    best = -math.inf
    for c in np.argwhere(region_pet):
        centre = pet.index_to_physical(c[::-1].astype(float))
        inside = np.linalg.norm(pts - centre, axis=1) <= PEAK_RADIUS_MM
        best = max(best, float(values[inside].mean()))
    return best


def test_sphere_on_anisotropic_grid_holds_15_voxels(phantom):
    pet, _ = phantom
    kernel = sphere_offsets(pet)
    # 3 x 3 x 6 mm, r = 6.204 mm: 13 voxels in the slice (a^2 + b^2 <= 4) + 1 above + 1 below
    assert kernel.sum() == 15 and kernel.shape == (3, 5, 5)
    assert PEAK_RADIUS_MM == pytest.approx((3000 / (4 * math.pi)) ** (1 / 3)) and 4 / 3 * math.pi * PEAK_RADIUS_MM ** 3 == pytest.approx(1000)


def test_patient_biomarkers_equal_hand_computed_values(phantom):
    pet, labels = phantom
    p = compute_biomarkers(pet, labels)["patient"]
    mtv = (9 * 15 * 15 + 15 * 15) * 2.0 / 1000  # 2250 label voxels of 2 mm^3
    assert p["MTV_ml"] == pytest.approx(4.5) == pytest.approx(mtv)
    assert p["SUVmax_T"] == pytest.approx(20.0)
    assert p["SUVmean_T"] == pytest.approx((74 * 5 + 20) / 75)  # 5.2: 75 PET voxels
    assert p["SUVpeak_T"] == pytest.approx((20 + 14 * 5) / 15)  # 6.0: the sphere on the hot voxel
    assert p["TLG"] == pytest.approx(5.2 * 4.5)
    assert p["NTV_ml"] == pytest.approx(4 * 27 * 2.0 / 1000)
    assert p["SUVmax_N"] == pytest.approx(10.0)
    assert p["SUVmean_N"] == pytest.approx(7.0)
    assert p["NLG"] == pytest.approx(7.0 * 0.216)


def test_lesions_26_connected_ordered_with_their_own_values(phantom):
    pet, labels = phantom
    result = compute_biomarkers(pet, labels)
    lesions = result["lesions"]
    assert [(l["label"], l["index"]) for l in lesions] == [(1, 1), (2, 1), (2, 2)]
    a, b = lesions[1], lesions[2]
    assert a["volume_ml"] == pytest.approx(0.108) and b["volume_ml"] == pytest.approx(0.108)
    assert (a["SUVmax"], a["SUVmean"]) == (pytest.approx(10.0), pytest.approx(9.0))
    assert (b["SUVmax"], b["SUVmean"]) == (pytest.approx(6.0), pytest.approx(5.0))
    assert b["TLG"] == pytest.approx(5.0 * 0.108)
    ids_a = np.zeros(pet.array.shape, bool)
    ids_a[4, 14, 3] = ids_a[4, 15, 4] = True
    assert a["SUVpeak"] == pytest.approx(brute_force_peak(pet, ids_a))
    assert lesions[0]["SUVpeak"] == pytest.approx(6.0)
    # centroid (RAS) of lesion B: label voxels z 21..23, y 45..47, x 42..47
    centre_lps = np.array(LAB_ORIGIN) + np.array([44.5, 46.0, 22.0]) * np.array(LAB_SPACING)
    assert b["centroid_ras"] == pytest.approx([-centre_lps[0], -centre_lps[1], centre_lps[2]])
    json.dumps(result)  # plain JSON types


def test_suvpeak_equals_brute_force_on_random_pet_and_anisotropic_grid():
    rng = np.random.default_rng(4)
    pet = Image(rng.gamma(2.0, 2.0, size=(9, 14, 12)).astype(np.float32), (2.5, 1.7, 4.2), (0.0, 3.0, -7.0))
    labels = np.zeros(pet.array.shape, np.uint8)
    labels[2:7, 1:6, 3:9] = 1  # touches the image border region: spheres are clipped there
    labels[0:2, 0:3, 0:2] = 1
    got = compute_biomarkers(pet, pet.with_array(labels))["patient"]["SUVpeak_T"]
    assert got == pytest.approx(brute_force_peak(pet, labels == 1))


def test_empty_labels_give_null(phantom):
    pet, labels = phantom
    only_p = labels.with_array(np.where(labels.array == 1, 1, 0).astype(np.uint8))
    p = compute_biomarkers(pet, only_p)["patient"]
    assert p["NTV_ml"] == 0.0 and p["SUVmax_N"] is None and p["SUVmean_N"] is None and p["NLG"] is None
    empty = compute_biomarkers(pet, labels.with_array(np.zeros_like(labels.array)))
    assert empty["lesions"] == [] and empty["patient"]["SUVpeak_T"] is None and empty["patient"]["TLG"] is None
    rows = biomarker_rows(empty)
    assert rows[0]["SUVmax"] is None and set(rows[0]) == set(BIOMARKER_COLUMNS)


def test_biomarkers_command_writes_json_and_refuses_bad_labels(phantom, tmp_path, capsys):
    from HNTumorSegLib.cli import main

    pet, labels = phantom
    write_image(pet, tmp_path / "pet.nii.gz")
    write_image(labels, tmp_path / "lab.nii.gz")
    out = tmp_path / "bm.json"
    assert main(["biomarkers", "--pet", str(tmp_path / "pet.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["patient"]["SUVpeak_T"] == pytest.approx(6.0) and len(data["lesions"]) == 3
    assert "SUVpeak_T" in capsys.readouterr().out
    bad = labels.with_array(np.where(labels.array == 2, 3, labels.array).astype(np.uint8))
    write_image(bad, tmp_path / "bad.nii.gz")
    out2 = tmp_path / "bm2.json"
    assert main(["biomarkers", "--pet", str(tmp_path / "pet.nii.gz"), "--labels", str(tmp_path / "bad.nii.gz"),
                 "--json", str(out2)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.nii.gz" in err and not out2.exists()
    assert main(["biomarkers", "--pet", str(tmp_path / "pet.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                 "--pet-units", "BQML"]) == 2
    assert "suv-factor" in capsys.readouterr().err


def test_biomarker_table_node_on_slicer_core(phantom):
    from HNTumorSegLib.scene.biomarkers_table import biomarker_table_node
    from HNTumorSegLib.scene.mrml import make_scene
    from HNTumorSegLib.scene.review import rows_from_table_node

    pet, labels = phantom
    app = make_scene()
    node = biomarker_table_node(app.scene, compute_biomarkers(pet, labels))
    assert node.IsA("vtkMRMLTableNode")
    rows = rows_from_table_node(node)
    assert [r["name"] for r in rows] == ["GTVp", "GTVn", "GTVp-1", "GTVn-1", "GTVn-2"]
    assert rows[0]["SUVpeak"] == pytest.approx(6.0) and rows[0]["TLG"] == pytest.approx(23.4)
    assert rows[1]["SUVpeak"] is None  # NaN in the table, None back


def test_dicom_pet_in_bqml_goes_through_the_suv_conversion(phantom, tmp_path, capsys):
    """A DICOM PET stored in Bq/mL: `biomarkers` converts it (issue 13's read_pet_suv) to the same SUVs."""
    import datetime

    require_module("pydicom")
    from HNTumorSegLib.cli import main
    from HNTumorSegLib.phantoms.dicom_series import PetAcquisition, write_dicom_series

    pet, labels = phantom
    acq = PetAcquisition(weight_kg=80.0, dose_bq=3.0e8, half_life_s=6586.2,
                         injection=datetime.datetime(2024, 3, 5, 9, 0, 0),
                         series_start=datetime.datetime(2024, 3, 5, 10, 0, 0))
    write_dicom_series(pet, tmp_path / "pt", "PT", pet=acq)
    write_image(labels, tmp_path / "lab.nii.gz")
    out = tmp_path / "bm.json"
    assert main(["biomarkers", "--pet", str(tmp_path / "pt"), "--labels", str(tmp_path / "lab.nii.gz"),
                 "--json", str(out)]) == 0, capsys.readouterr().err
    p = json.loads(out.read_text())["patient"]
    assert p["SUVmax_T"] == pytest.approx(20.0, rel=2e-3) and p["SUVpeak_T"] == pytest.approx(6.0, rel=2e-3)
    assert p["MTV_ml"] == pytest.approx(4.5)


def test_survival_chart_nodes_on_slicer_core():
    from HNTumorSegLib.scene.biomarkers_table import CHART_TITLE, survival_chart_nodes
    from HNTumorSegLib.scene.mrml import make_scene
    from HNTumorSegLib.scene.review import rows_from_table_node

    prediction = {"rfs": {"intervals_days": ["[0, 769)", "[769, 1357)", "[1357, 2626)", "[2626, inf)"],
                          "survival": [0.9, 0.7, 0.5, 0.3]}}
    app = make_scene()
    table, series, chart = survival_chart_nodes(app.scene, prediction)
    assert rows_from_table_node(table) == [{"day": 0.0, "relapse_free": 1.0}, {"day": 769.0, "relapse_free": 0.9},
                                           {"day": 1357.0, "relapse_free": 0.7}, {"day": 2626.0, "relapse_free": 0.5}]
    assert chart.GetTitle() == CHART_TITLE and "Research only" in CHART_TITLE
    assert chart.GetPlotSeriesNodeID() == series.GetID() and series.GetTableNodeID() == table.GetID()
