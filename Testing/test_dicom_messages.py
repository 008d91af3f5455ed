"""What real DICOM makes us say (issue 25, defect 5): a Siemens mosaic file is called a mosaic, not
"a single slice"; a 12-bit JPEG series reads without 13 lines of codec noise; ``--send`` to a
closed port says at once that the connection was refused (not "did not answer" after 10 s)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.dicom.send import parse_destination, send_files  # noqa: E402
from HNTumorSegLib.errors import InputError, SendError  # noqa: E402

MOSAIC_DIR = Path(__file__).parent / "corpus" / "dcm_qa" / "sag_asc_35sl"   # vendored from dcm_qa (BSD-2)


def test_mosaic_file_is_called_a_mosaic(capsys):
    files = sorted(MOSAIC_DIR.glob("MR.*"))
    assert files, f"the vendored Siemens mosaic is missing under {MOSAIC_DIR}"
    assert "MOSAIC" in pydicom.dcmread(files[0], stop_before_pixels=True).ImageType
    with pytest.raises(InputError, match="is a Siemens mosaic .* not a stack of slices") as err:
        read_volume(files[0], name="T2 image")   # one file given, not its folder
    assert "single slice" not in str(err.value)


def _jpeg12_series(folder: Path) -> Path:
    """pydicom's 12-bit JPEG (extended, process 2 & 4) test image as a 4-slice CT series."""
    from pydicom.data import get_testdata_file

    folder.mkdir()
    ds = pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm"))
    assert ds.BitsStored == 12 and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"
    ds.Modality, ds.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.ImageOrientationPatient, ds.PixelSpacing, ds.FrameOfReferenceUID = [1, 0, 0, 0, 1, 0], [1, 1], "1.2.826.0.1.9"
    for k in range(4):
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.9.{k + 1}"
        ds.save_as(folder / f"{k}.dcm")
    return folder


def test_12_bit_jpeg_reads_without_codec_noise(tmp_path, capfd):
    folder = _jpeg12_series(tmp_path / "ct")
    image = read_volume(folder, name="CT image")
    captured = capfd.readouterr()   # file descriptor 2: what GDCM's libjpeg printed
    assert captured.err == "", captured.err
    assert image.array.shape == (4, 1024, 256) and image.array.max() > image.array.min()   # decoded by GDCM


def test_send_to_a_closed_port_says_refused_at_once(tmp_path):
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series
    from HNTumorSegLib.image import Image
    import numpy as np

    files = write_dicom_series(Image(np.zeros((4, 8, 8), np.int16)), tmp_path / "ct", "CT")
    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SendError, match="connection was refused") as err:
        send_files(files, parse_destination(f"PACS@127.0.0.1:{port}"), timeout_s=10.0)
    assert time.monotonic() - t0 < 8.0   # not the 10 s timeout
    assert "did not answer" not in str(err.value)


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_contour_object_where_a_label_map_is_read_says_what_it_is(tmp_path, kind):
    """A SEG read as an image gave "labels [255] outside {0,1,2}" (a fractional SEG) or its frames
    as a volume; it is now named (item 4 of issue 25; where contours are read it is read as such)."""
    import numpy as np

    from HNTumorSegLib.export.dicom_seg import write_dicom_seg
    from HNTumorSegLib.export.rtstruct import write_rtstruct
    from HNTumorSegLib.image import Image, read_image
    from HNTumorSegLib.phantoms.dicom_series import write_dicom_series

    ct = Image(np.full((4, 16, 16), -50, np.int16), (1.0, 1.0, 2.0), (-8.0, -8.0, 0.0))
    files = write_dicom_series(ct, tmp_path / "ct", "CT")
    labels = np.zeros(ct.array.shape, np.uint8)
    labels[1:3, 4:9, 4:9] = 1
    writer = write_dicom_seg if kind == "seg" else write_rtstruct
    path = writer(ct.with_array(labels), files, tmp_path / f"{kind}.dcm")
    with pytest.raises(InputError, match=f"reference is a DICOM {kind.upper()} .*, not a label map") as err:
        read_image(path, label=True, name="reference")
    assert "export/biomarkers/outcome --labels" in str(err.value)
