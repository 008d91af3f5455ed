"""Issue 27, hand-off without recompression: what our client writes for our own worker is an
uncompressed ``.nii`` that is not read back (``write_image(..., compress=False, verify=False)``),
a short write (full disk) is still caught from the file's size, and outputs the user keeps are
still read back (``verify=True``, the default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib import image as image_mod
from HNTumorSegLib.errors import EnvironmentFault
from HNTumorSegLib.image import Image, read_image, write_image


def _t2() -> Image:
    arr = np.arange(6 * 7 * 9, dtype=np.int16).reshape(6, 7, 9)
    return Image(arr, (0.5, 0.5, 2.0), (1.0, 2.0, 3.0))


@pytest.fixture
def count_readbacks(monkeypatch):
    calls = []
    real = image_mod._check_nifti_complete

    def counting(path, what):
        calls.append(str(path))
        return real(path, what)

    monkeypatch.setattr(image_mod, "_check_nifti_complete", counting)
    return calls


def test_handoff_write_is_uncompressed_and_not_read_back(tmp_path, count_readbacks):
    t2 = _t2()
    path = write_image(t2, tmp_path / "T2.nii", compress=False, verify=False)
    assert count_readbacks == []
    assert path.read_bytes()[:2] != b"\x1f\x8b"                        # not gzip
    assert path.stat().st_size >= 352 + t2.array.nbytes
    assert np.array_equal(read_image(path).array, t2.array)
    write_image(t2, tmp_path / "kept.nii.gz")                           # what the user keeps: read back
    assert len(count_readbacks) == 1


def test_a_short_handoff_write_is_caught_and_leaves_nothing(tmp_path, monkeypatch):
    real = sitk.WriteImage

    def short_write(img, path, useCompression=False):
        real(img, path, useCompression=useCompression)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])                  # what a full disk leaves

    monkeypatch.setattr(image_mod.sitk, "WriteImage", short_write)
    with pytest.raises(EnvironmentFault, match="written short"):
        write_image(_t2(), tmp_path / "T2.nii", compress=False, verify=False)
    assert list(tmp_path.iterdir()) == []


def test_gz_name_is_still_verified(tmp_path, count_readbacks):
    # ITK compresses a .nii.gz whatever useCompression says: its size says nothing, so it is read back
    write_image(_t2(), tmp_path / "T2.nii.gz", compress=False, verify=False)
    assert len(count_readbacks) == 1


def test_slicer_handoff_and_nnunet_channels_use_the_one_writer(tmp_path, count_readbacks):
    from HNTumorSegLib.inference.nnunet_seed import SeedSteps
    from HNTumorSegLib.models.declaration import infer_declaration
    from HNTumorSegLib.phantoms import make_midrt_case
    from HNTumorSegLib.scene.handoff import write_handoff_image

    out = write_handoff_image(_t2(), tmp_path / "T2.nii")
    assert out.suffix == ".nii" and count_readbacks == []
    phantom = make_midrt_case(seed=0, shape=(8, 32, 32))
    decl = infer_declaration({"0": "T2", "1": "gradient"})
    with SeedSteps(decl, {"T2": phantom["midRT_T2"]}, {"T2": "t2.nii.gz"},
                   prior=phantom["preRT_mask_registered"]) as steps:
        files = steps.files
        assert [Path(f).suffix for f in files] == [".nii", ".nii"]       # in-memory T2 + gradient map
        assert np.array_equal(read_image(files[0]).array, phantom["midRT_T2"].array.astype(np.float32))
    assert count_readbacks == []
