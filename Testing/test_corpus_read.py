"""The real-file DICOM corpus (issue 25) through our reader: index, README table, reading, series choice, refusals.

* the index covers what the issue asks (GE, Siemens, Philips; CT and MR; implicit and explicit VR;
  JPEG lossless, JPEG 2000, RLE, deflate; empty and ISO 2022 character sets; a DICOMDIR; enhanced
  multi-frame; a planning system's RTSTRUCT), every vendored folder keeps its licence and README,
  and the README's table is the index's;
* every series that can be an export source is chosen (:mod:`HNTumorSegLib.dicom.select`) and
  read (:mod:`HNTumorSegLib.dicom.read`) with the voxels pydicom decodes, in our slice order;
* every single-slice file is read with pydicom's voxels too (a PET also in SUVbw, checked against the
  body-weight formula written out in :func:`corpus_lib.suv_bw_factor`), and refused as a volume input;
* every input that must be refused makes ``hntumorseg export`` (a child process) exit 2 with one
  line naming it, writing nothing.
"""

from __future__ import annotations

import subprocess
import sys

import corpus_lib
import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from HNTumorSegLib.dicom.read import read_dicom_folder, read_volume  # noqa: E402
from HNTumorSegLib.dicom.select import select_series  # noqa: E402
from HNTumorSegLib.errors import EXIT_BAD_INPUT, InputError  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402

README = corpus_lib.conftest.TESTING.parent / "README.md"
IDS = {use: [e["id"] for e in corpus_lib.entries(use)] for use in corpus_lib.USES}


def _pydicom_voxels(files) -> np.ndarray:
    """(z, y, x) rescaled voxels of ``files`` in the given order, decoded by pydicom (independent of GDCM)."""
    return np.stack([corpus_lib.voxels(f) for f in files])


def test_index_covers_what_the_issue_asks():
    all_entries = corpus_lib.entries()
    assert len({e["id"] for e in all_entries}) == len(all_entries)
    for e in all_entries:
        for key in ("vendor", "modality", "transfer_syntax", "charset", "tests", "use"):
            assert e.get(key), f"{e['id']}: no {key}"
        assert e["use"] in corpus_lib.USES
        assert e["use"] not in ("refused", "read") or e.get("message"), e["id"]
    sources = corpus_lib.entries("source")
    assert {"GE", "Siemens", "Philips"} <= {e["vendor"] for e in sources}   # multi-slice series of each
    assert {"GE", "Siemens", "Philips"} <= {e["vendor"] for e in all_entries if e["modality"] in ("CT", "MR")}
    assert {"CT", "MR"} <= {e["modality"] for e in sources}
    assert "PT" in {e["modality"] for e in all_entries}   # single slices: no small free PET series was found
    syntaxes = {e["transfer_syntax"] for e in all_entries}
    for needed in ("Implicit VR Little Endian", "Explicit VR Little Endian", "JPEG Lossless SV1", "JPEG 2000 Lossless",
                   "RLE Lossless", "Deflated Explicit VR Little Endian"):
        assert needed in syntaxes, needed
    charsets = {e["charset"] for e in sources}
    assert "(empty)" in charsets and any("ISO 2022" in c for c in charsets)
    assert any("DICOMDIR" in e["files"] for e in sources)
    assert any("multi-frame" in e.get("message", "") for e in all_entries)
    assert any(e["modality"] == "RTSTRUCT" and e["vendor"] == "MIM" for e in all_entries)


def test_vendored_files_keep_licence_and_readme_and_stay_small():
    total = 0
    for folder in sorted(p for p in corpus_lib.CORPUS.iterdir() if p.is_dir()):
        assert (folder / "LICENSE").is_file() and (folder / "README.md").is_file(), folder.name
        readme = (folder / "README.md").read_text(encoding="utf-8")
        assert corpus_lib.index()["sources"][folder.name]["commit"] in readme, folder.name
        for f in folder.rglob("*.dcm"):
            assert f.relative_to(folder).as_posix() in readme, f"{f} is not named in {folder.name}/README.md"
        total += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total < 10 * 2**20, f"vendored corpus {total / 2**20:.1f} MB"


def test_derived_entries_are_bit_reproducible(tmp_path):
    """Grafted character sets and re-encoded syntaxes come out byte for byte the same on every run."""
    derived = [e["id"] for e in corpus_lib.entries() if e["origin"] == "derived"]
    for entry_id in derived:
        one, two = corpus_lib.materialise(entry_id, tmp_path / "1"), corpus_lib.materialise(entry_id, tmp_path / "2")
        files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
        for rel in files:
            assert (one / rel).read_bytes() == (two / rel).read_bytes(), f"{entry_id}: {rel}"


def test_readme_table_is_the_index():
    text = README.read_text(encoding="utf-8")
    assert corpus_lib.readme_table() in text, "README's 'DICOM corpus' table differs from Testing/corpus/index.json"


@pytest.mark.parametrize("entry_id", IDS["source"])
def test_source_series_is_chosen_and_read_with_pydicoms_voxels(entry_id, tmp_path):
    e = corpus_lib.entry(entry_id)
    folder = corpus_lib.materialise(entry_id, tmp_path)
    geometry = select_series(folder, series_uid=e.get("series_uid"))
    assert len(geometry.files) >= 2
    image = read_dicom_folder(folder, series_uid=e.get("series_uid"))
    assert image.array.shape == geometry.grid.array.shape
    np.testing.assert_allclose(image.array, _pydicom_voxels(geometry.files), atol=1e-3)
    # the one reader of every input that may be DICOM (segment --input) gives the same volume
    volume = read_volume(folder, series=e.get("series_uid"), name="the corpus series")
    np.testing.assert_allclose(volume.array, image.array, atol=1e-3)


@pytest.mark.parametrize("entry_id", IDS["read"])
def test_single_slice_is_read_with_pydicoms_voxels_and_refused_as_a_volume(entry_id, tmp_path):
    e = corpus_lib.entry(entry_id)
    folder = corpus_lib.materialise(entry_id, tmp_path)
    image = read_dicom_folder(folder, pet_in_suv=False)
    files = [p for p in folder.rglob("*") if p.is_file()]
    np.testing.assert_allclose(image.array, _pydicom_voxels(files), rtol=1e-6, atol=1e-3)
    if e["modality"] == "PT":   # read as an input, a PET is in SUVbw: the same voxels times the header's factor
        suv = read_dicom_folder(folder)
        np.testing.assert_allclose(suv.array, image.array * corpus_lib.suv_bw_factor(files[0]), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match=e["message"]):
        read_volume(folder, name="the corpus file")


def test_dicomdir_tree_series_choice(tmp_path):
    """Nine series of three patients beside a DICOMDIR: no label map -> exit 2 listing them; a
    label map on one series' grid -> that series."""
    e = corpus_lib.entry("pydicom-dicomdir-ge-ct")
    folder = corpus_lib.materialise(e["id"], tmp_path)
    with pytest.raises(InputError, match=r"holds \d+ image series; series found: .*--series"):
        select_series(folder)
    grid = read_dicom_folder(folder, series_uid=e["series_uid"])
    labels = grid.with_array(np.zeros(grid.array.shape, np.uint8))
    assert select_series(folder, labels=labels).uid == e["series_uid"]


def _export_args(e: dict, folder, tmp_path) -> list[str]:
    if e.get("labels"):
        args = ["--labels", str(folder / e["labels"]), "--reference", str(folder)]
        return args + (["--structures", e["structures"]] if e.get("structures") else [])
    labels = Image(np.zeros((3, 4, 4), np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    series = ["--series", e["series_uid"]] if e.get("series_uid") else []
    return ["--labels", str(write_image(labels, tmp_path / "labels.nii.gz")), *series]


@pytest.mark.parametrize("entry_id", IDS["refused"])
def test_refused_input_exits_2_with_one_line(entry_id, tmp_path):
    e = corpus_lib.entry(entry_id)
    folder = corpus_lib.materialise(entry_id, tmp_path)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "HNTumorSegLib", "export", *_export_args(e, folder, tmp_path),
                          "--source", str(folder), "--seg", str(out / "seg.dcm"), "--rtstruct", str(out / "rt.dcm")],
                         capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == EXIT_BAD_INPUT, run.stderr[-2000:]
    assert len(lines) == 1 and e["message"] in lines[0], run.stderr
    assert not out.exists() or not any(out.iterdir())
