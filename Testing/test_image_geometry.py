"""Geometry survives I/O (NIfTI, NRRD, DICOM series) and resampling; bad files raise InputError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.dicom.read import read_volume
from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import (Image, check_overlap, read_image, resample_to, resample_to_spacing,
                                 write_image)
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # conformant CT series (dciodvfy-clean)


def rotation(ax_deg: float, az_deg: float) -> np.ndarray:
    """A proper rotation: ``ax_deg`` about x, then ``az_deg`` about z (columns = i, j, k axes)."""
    a, b = np.deg2rad(ax_deg), np.deg2rad(az_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


@pytest.fixture
def oblique_image() -> Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 2000, size=(7, 12, 10)).astype(np.int16)
    return Image(arr, spacing=(0.7, 0.9, 2.5), origin=(-10.5, 20.25, -33.0), direction=rotation(12, -8))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_file_round_trip_keeps_geometry(tmp_path, oblique_image, suffix):
    path = write_image(oblique_image, tmp_path / f"img{suffix}")
    back = read_image(path)
    np.testing.assert_array_equal(back.array, oblique_image.array)
    # NIfTI keeps its matrix in float32: agreement to ~1e-5 mm is what the format allows
    np.testing.assert_allclose(back.spacing, oblique_image.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, oblique_image.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_image.direction, atol=1e-5)
    assert back.same_grid(oblique_image)


def test_dicom_series_round_trip_keeps_geometry(tmp_path, oblique_image):
    write_dicom_series(oblique_image, tmp_path / "series")
    back = read_volume(tmp_path / "series", name="the CT")
    np.testing.assert_array_equal(back.array, oblique_image.array)
    # DICOM stores decimal strings: geometry to 1e-3 mm is what the tags carry
    np.testing.assert_allclose(back.spacing, oblique_image.spacing, atol=1e-3)
    np.testing.assert_allclose(back.origin, oblique_image.origin, atol=1e-3)
    np.testing.assert_allclose(back.direction, oblique_image.direction, atol=1e-4)


def test_dicom_folder_with_two_series_is_an_error(tmp_path, oblique_image):
    write_dicom_series(oblique_image, tmp_path / "both", prefix="A")
    write_dicom_series(oblique_image.with_array(oblique_image.array + 1), tmp_path / "both", prefix="B")
    with pytest.raises(InputError, match="holds 2 image series"):
        read_volume(tmp_path / "both")


def _ellipsoid_label(spacing=(0.8, 0.8, 2.0), shape=(40, 90, 90)) -> tuple[Image, float, np.ndarray]:
    """An off-centre ellipsoid (radii 25, 18, 30 mm) on an axis-aligned grid."""
    img = Image(np.zeros(shape, np.uint8), spacing, origin=(-30.0, -40.0, -35.0))
    z, y, x = np.indices(shape)
    pts = img.index_to_physical(np.stack([x, y, z], -1))
    centre, radii = np.array([5.0, -3.0, 4.0]), np.array([25.0, 18.0, 30.0])
    inside = (((pts - centre) / radii) ** 2).sum(-1) <= 1
    img.array[inside] = 1
    return img, 4 / 3 * np.pi * radii.prod(), centre


def test_label_resampled_onto_rotated_grid_keeps_volume_and_place():
    label, analytic_mm3, centre = _ellipsoid_label()
    source_mm3 = label.array.sum() * label.voxel_volume_mm3
    assert abs(source_mm3 - analytic_mm3) / analytic_mm3 < 0.02
    # rotated 25 degrees about x and 20 about z, other spacing, other origin
    ref = Image(np.zeros((60, 80, 70), np.uint8), spacing=(1.1, 0.9, 1.5), origin=(-40.0, -20.0, -60.0),
                direction=rotation(25, 20))
    ref.origin = tuple(np.asarray(centre) - ref.direction @ (np.array(ref.spacing) * np.array([35, 40, 30])))
    out = resample_to(label, ref, label=True)
    assert out.same_grid(ref) and out.array.dtype == np.uint8
    assert set(np.unique(out.array)) == {0, 1}  # nearest neighbour: no new values
    out_mm3 = out.array.sum() * out.voxel_volume_mm3
    assert abs(out_mm3 - source_mm3) / source_mm3 < 0.02
    # the object stays where it was in physical space (catches direction / origin mix-ups)
    z, y, x = np.nonzero(out.array)
    centroid = out.index_to_physical(np.stack([x, y, z], -1).mean(0))
    np.testing.assert_allclose(centroid, centre, atol=0.5)
    # and back again onto the source grid: the same voxels up to the surface
    back = resample_to(out, label, label=True)
    dsc = 2 * (back.array & label.array).sum() / (back.array.sum() + label.array.sum())
    assert dsc > 0.97


def test_resample_to_spacing_keeps_extent_centre():
    label, _, centre = _ellipsoid_label()
    iso = resample_to_spacing(label, (1.0, 1.0, 1.0), label=True)
    np.testing.assert_allclose(iso.spacing, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(iso.corners_lps().mean(0), label.corners_lps().mean(0), atol=0.5)
    vol = iso.array.sum() * iso.voxel_volume_mm3
    assert abs(vol - label.array.sum() * label.voxel_volume_mm3) / vol < 0.02


# ---- errors name the file ----------------------------------------------------------------

def _raises_naming(path: Path, *fragments: str, **kw) -> None:
    with pytest.raises(InputError) as err:
        read_image(path, **kw)
    text = str(err.value)
    assert str(path) in text and "\n" not in text
    for f in fragments:
        assert f in text, text


def test_read_missing_file(tmp_path):
    _raises_naming(tmp_path / "nope.nii.gz", "does not exist")


def test_read_corrupt_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b this is not a NIfTI" * 10)
    _raises_naming(bad, "cannot read")
    truncated = tmp_path / "truncated.nrrd"
    good = write_image(Image(np.zeros((5, 6, 7), np.int16)), tmp_path / "good.nrrd", compress=False)
    truncated.write_bytes(good.read_bytes()[:-100])
    _raises_naming(truncated, "cannot read")


def test_read_2d_and_single_slice(tmp_path):
    p2 = tmp_path / "slice2d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 9), np.float32)), str(p2))
    _raises_naming(p2, "2D")
    p1 = write_image(Image(np.zeros((1, 8, 9), np.float32)), tmp_path / "one.nii.gz")
    _raises_naming(p1, "single slice")


def test_read_4d(tmp_path):
    p = tmp_path / "fourd.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.float32), isVector=False), str(p))
    assert sitk.ReadImage(str(p)).GetDimension() == 4
    _raises_naming(p, "4D")


def test_read_nan_and_bad_labels(tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = np.nan
    p = write_image(Image(arr), tmp_path / "nan.nii.gz")
    _raises_naming(p, "NaN")
    arr[1, 2, 3] = np.inf  # uncompressed NIfTI, float64, infinity
    p = write_image(Image(arr.astype(np.float64)), tmp_path / "inf.nii")
    _raises_naming(p, "infinite")
    ok = write_image(Image(np.ones((4, 5, 6), np.float32)), tmp_path / "ok.nii.gz")
    assert read_image(ok).array.sum() == 120
    frac = write_image(Image(np.full((4, 5, 6), 0.5, np.float32)), tmp_path / "frac.nii.gz")
    _raises_naming(frac, "not a label map", label=True)


def test_check_overlap_catches_disjoint_images():
    a = Image(np.zeros((10, 20, 20)), spacing=(1, 1, 3))
    check_overlap(a, a.with_array(a.array), "CT", "PET")
    half = Image(np.zeros((10, 20, 20)), spacing=(1, 1, 3), origin=(10.0, 0.0, 0.0))
    check_overlap(a, half, "CT", "PET")  # half covered: still accepted at the default 50 %
    far = Image(np.zeros((10, 20, 20)), spacing=(1, 1, 3), origin=(0.0, 0.0, 500.0))
    with pytest.raises(InputError) as err:
        check_overlap(a, far, "CT", "PET", b_path="pet.nii.gz")
    assert "pet.nii.gz" in str(err.value) and "0%" in str(err.value)
