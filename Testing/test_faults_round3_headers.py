"""Issue 22 item 3: NIfTI header fields that place voxels must be finite and consistent.

Before: a NaN ``qoffset_x`` (qform_code 1, sform_code 0) was read by SimpleITK as 0, a silent
shift; ``segment`` exited 0 and ``biomarkers`` reported another SUVmax. Now every such field
(qform offsets and quaternion, srow rows, pixdim) is checked on the raw header bytes before
SimpleITK reads the file: exit 2 with one line naming the field and the file.

The files are real: a valid NIfTI written by SimpleITK, then one field poked in its bytes.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.image_checks import _LAYOUT, check_nifti_header, nifti_header_fields
from HNTumorSegLib.phantoms import make_midrt_case
from faults_testlib import hntumorseg, one_error_line

NAN, INF = float("nan"), float("inf")
#: (field as the message names it, byte offset in a NIfTI-1 header, value, sform_code to leave)
POKES = [
    ("qoffset_x", 268, NAN, 0),
    ("qoffset_y", 272, INF, 0),
    ("qoffset_z", 276, -INF, 0),
    ("quatern_b", 256, NAN, 0),
    ("quatern_c", 260, INF, 0),
    ("quatern_d", 264, NAN, 0),
    ("quatern_b/c/d", 256, 1.5, 0),        # no rotation: b^2 + c^2 + d^2 > 1
    ("pixdim[0]", 76, NAN, 0),             # qfac
    ("pixdim[1]", 80, NAN, 1),
    ("srow_x[3]", 292, NAN, 1),
    ("srow_y[1]", 300, INF, 1),
    ("srow_z[2]", 320, NAN, 1),
]


def _valid_nifti(path, array=None, origin=(10.0, -20.0, 30.0)):
    """A NIfTI as SimpleITK writes it (qform_code 1, sform_code 1), rotated a little."""
    arr = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) if array is None else array
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.0))
    img.SetOrigin(origin)
    c, s = np.cos(0.2), np.sin(0.2)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path))
    return path


def _poke(path, offset: int | None, value: float, sform_code: int | None = None):
    """Write ``value`` (float32, little endian) at ``offset``; optionally set sform_code. Keeps .gz."""
    gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    if offset is not None:
        raw[offset:offset + 4] = struct.pack("<f", value)
    if sform_code is not None:
        raw[254:256] = struct.pack("<h", sform_code)
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
    return path


@pytest.mark.parametrize("field,offset,value,sform_code", POKES, ids=[p[0] + "=" + str(p[2]) for p in POKES])
def test_each_placing_field_is_checked(tmp_path, field, offset, value, sform_code):
    bad = _poke(_valid_nifti(tmp_path / "img.nii.gz"), offset, value, sform_code)
    with pytest.raises(InputError) as info:
        read_image(bad, name="T2 image")
    text = info.value.one_line()
    assert f"header field {field}" in text and str(bad) in text, text


def test_valid_headers_still_read_qform_only_and_both(tmp_path):
    """No false alarm: SimpleITK's own file, and the same with sform_code 0 (qform alone)."""
    both = _valid_nifti(tmp_path / "both.nii.gz")
    qonly = _poke(_valid_nifti(tmp_path / "q.nii.gz"), None, 0.0, sform_code=0)
    a, b = read_image(both), read_image(qonly)
    assert np.allclose(a.origin, (10.0, -20.0, 30.0), atol=1e-3)
    assert np.allclose(b.origin, (10.0, -20.0, 30.0), atol=1e-3)


def test_big_endian_header_is_parsed_too(tmp_path):
    """The same fields from a big-endian header: the values, and a NaN found."""
    path = _valid_nifti(tmp_path / "le.nii")
    raw = bytearray(path.read_bytes())
    be = bytearray(raw)
    struct.pack_into(">i", be, 0, 348)
    codes = {"h": "h", "f": "f"}
    for _name, (offset, code, count) in _LAYOUT[348].items():
        values = struct.unpack_from(f"<{count}{code}", raw, offset)
        struct.pack_into(f">{count}{codes[code]}", be, offset, *values)
    le_fields, be_fields = nifti_header_fields(bytes(raw)), nifti_header_fields(bytes(be))
    assert be_fields == le_fields
    struct.pack_into(">f", be, 272, NAN)   # qoffset_y
    struct.pack_into(">h", be, 254, 0)     # sform_code 0: the qform alone places the voxels
    bad = tmp_path / "be.nii"
    bad.write_bytes(bytes(be))
    with pytest.raises(InputError, match="qoffset_y"):
        check_nifti_header(bad, "CT image")


def test_segment_refuses_nan_qoffset_exit_2_one_line(tmp_path):
    """The issue's case as the CLI sees it: qform_code 1, sform_code 0, qoffset_x NaN."""
    case = make_midrt_case(seed=0)
    t2 = write_image(case["midRT_T2"], tmp_path / "t2.nii.gz")
    prior = write_image(case["preRT_mask_registered"], tmp_path / "prior.nii.gz")
    _poke(t2, 268, NAN, sform_code=0)
    out = tmp_path / "labels.nii.gz"
    res = hntumorseg("segment", "--model", "demo-midrt", "--input", f"T2={t2}", "--prior", prior, "--output", out,
                     "--device", "cpu", "--progress", "none")
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_error_line(res.stderr)
    assert "qoffset_x" in line and str(t2) in line, line
    assert not out.exists()


def test_biomarkers_refuses_nan_qoffset_and_inf_srow(tmp_path):
    pet_arr = np.full((6, 7, 8), 1.0, np.float32)
    pet_arr[2:4, 3:5, 3:5] = 658.0
    labels_arr = np.zeros((6, 7, 8), np.uint8)
    labels_arr[2:4, 3:5, 3:5] = 1
    labels = _valid_nifti(tmp_path / "labels.nii.gz", labels_arr)
    for field, offset, value, sform_code in (("qoffset_x", 268, NAN, 0), ("srow_y[1]", 300, INF, 1)):
        pet = _poke(_valid_nifti(tmp_path / f"pet_{field[:5]}.nii.gz", pet_arr), offset, value, sform_code)
        out = tmp_path / "bm.json"
        res = hntumorseg("biomarkers", "--pet", pet, "--labels", labels, "--json", out)
        assert res.returncode == 2, res.stdout + res.stderr[-2000:]
        line = one_error_line(res.stderr)
        assert field in line and str(pet) in line, line
        assert not out.exists()


def test_a_qform_near_180_degrees_is_read_as_nifti1_io_reads_it():
    """A tilted MR whose qform rotation is near 180 degrees: stored as float32, quatern_b/c/d give
    1 - (b^2 + c^2 + d^2) ~ 5e-8 instead of 0; its root (2e-4) tilted our matrix by micrometres and
    our own label map of a Philips oblique EPI was refused as "qform and sform disagree" (issue 25's
    corpus). nifti1_io takes a < 1e-7 as 0 and normalises (b, c, d); so do we now."""
    import math

    import numpy as np

    from HNTumorSegLib.image_checks import _quaternion_matrix

    tilt = math.radians(13.0)
    axis = np.array([0.0, math.sin(tilt), math.cos(tilt)])   # 180 degrees about a tilted axis: a = 0
    b, c, d = (float(np.float32(v)) for v in axis)
    assert 0 < 1.0 - (b * b + c * c + d * d) < 1e-7      # the float32 residue the old code took the root of
    n = math.sqrt(b * b + c * c + d * d)
    b0, c0, d0 = b / n, c / n, d / n                     # nifti_quatern_to_mat44, its a < 1e-7 branch
    expected = np.array([[b0 * b0 - c0 * c0 - d0 * d0, 2 * b0 * c0, 2 * b0 * d0],
                         [2 * b0 * c0, c0 * c0 - b0 * b0 - d0 * d0, 2 * c0 * d0],
                         [2 * b0 * d0, 2 * c0 * d0, d0 * d0 - c0 * c0 - b0 * b0]])
    np.testing.assert_allclose(_quaternion_matrix(b, c, d), expected, atol=1e-12)
