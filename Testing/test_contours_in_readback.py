"""RTSTRUCTs and SEGs written by independent tools, read back where a label map is taken (issue 23 part 1).

A phantom label map on a conformant MR series (:mod:`HNTumorSegLib.phantoms.dicom_series`) is
written as an RTSTRUCT by plastimatch (``convert --input-ss-img``, names GTV_P and GTV_N_L2) and
by rt-utils (GTVp1, GTVn_R), and as SEGs by highdicom (binary, fractional with its frames
shuffled, label-map; names GTV_Primary, GTVn_L2 + "GTV node R" for the two nodes). Each is given
to ``hntumorseg evaluate --ref`` (a child process, as a user runs it) against the label map it
came from: Dice >= 0.95 per label (measured: 1.00 for every writer). The three ways to find the
grid are used: ``--reference``, the series beside the file, and the other file's grid. A SEG
given to ``export --labels`` is read as segments (issue 25 item 4: it used to be refused with
"labels [255] outside {0,1,2}"), and a set with no GTV is exit 2 with one line listing it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
hd = require_module("highdicom")

from dicom_testlib import dice, require_tool  # noqa: E402

from HNTumorSegLib.dicom.contours_in import ContourOptions, read_label_input  # noqa: E402
from HNTumorSegLib.dicom.select import select_series  # noqa: E402
from HNTumorSegLib.export.rtstruct import write_rtstruct  # noqa: E402
from HNTumorSegLib.image import Image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIN_DICE = 0.95


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "HNTumorSegLib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


def plastimatch_rtstruct(labels_nrrd: Path, series: Path, out: Path) -> Path:
    tool = require_tool("plastimatch")
    names = out.parent / "ss-list.txt"
    names.write_text("0|255 0 0|GTV_P\n1|0 255 0|GTV_N_L2\n")   # bit 0 = label 1, bit 1 = label 2
    run = subprocess.run([tool, "convert", "--input-ss-img", str(labels_nrrd), "--input-ss-list", str(names),
                          "--referenced-ct", str(series), "--output-dicom", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return next(out.glob("*.dcm"))


def rt_utils_rtstruct(mask: np.ndarray, series: Path, path: Path, names=("GTVp1", "GTVn_R")) -> Path:
    rt_utils = require_module("rt_utils")
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series))
    for value, name in zip((1, 2), names):   # rt-utils: (rows, columns, slices), slices ascending as ours
        rt.add_roi(mask=np.transpose(mask == value, (1, 2, 0)), name=name, color=[255, 0, 0])
    rt.save(str(path))
    return path


def highdicom_seg(mask: np.ndarray, series: Path, path: Path, kind: str) -> Path:
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code
    from scipy import ndimage

    nodes, _ = ndimage.label(mask == 2)
    values = np.zeros(mask.shape, np.uint8)
    values[mask == 1] = 1
    values[(mask == 2) & (nodes == 1)] = 2
    values[(mask == 2) & (nodes > 1)] = 3
    tumour = Code("108369006", "SCT", "Tumor")   # a generic type code: the names decide
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=tumour, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label in ((1, "GTV_Primary"), (2, "GTVn_L2"), (3, "GTV node R")) if np.any(values == n)]
    pixels = values
    if kind == "FRACTIONAL":
        pixels = np.stack([(values == d.SegmentNumber).astype(np.float32) for d in descriptions], axis=-1)
    geometry = select_series(series)
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(f) for f in geometry.files], pixel_array=pixels,
        segmentation_type=getattr(hd.seg.SegmentationTypeValues, kind), segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(str(path))
    return path


def shuffle_frames(path: Path) -> Path:
    """The same SEG with its (8-bit) frames and their functional groups in reverse order."""
    ds = pydicom.dcmread(str(path))
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)[::-1]
    ds.PerFrameFunctionalGroupsSequence = list(ds.PerFrameFunctionalGroupsSequence)[::-1]
    ds.PixelData = np.ascontiguousarray(frames).astype(np.uint8).tobytes()
    ds.save_as(str(path))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("contours_in")
    case = make_prert_case(seed=5, shape=(24, 64, 64))
    mask = case["mask"]
    assert {1, 2} <= set(np.unique(mask.array).tolist())
    series = root / "study" / "t2"
    write_dicom_series(case["T2"], series, modality="MR", series_description="T2")
    write_image(mask, root / "labels.nii.gz")
    write_image(mask, root / "labels.nrrd", compress=False)
    return {"root": root, "series": series, "mask": mask, "labels": root / "labels.nii.gz"}


def writer_file(study, writer: str) -> tuple[Path, list[str]]:
    """(the file ``writer`` made, the extra evaluate options it needs); each way of finding the grid used once."""
    root, series, mask = study["root"], study["series"], study["mask"].array
    if writer == "plastimatch":
        return plastimatch_rtstruct(root / "labels.nrrd", series, root / "plastimatch"), ["--reference", str(series)]
    if writer == "rt-utils":   # beside its series: in the study folder
        return rt_utils_rtstruct(mask, series, root / "study" / "rt-utils.dcm"), []
    (root / "seg").mkdir(exist_ok=True)   # no series beside: read onto the other file's grid
    kind = {"highdicom-binary": "BINARY", "highdicom-fractional-shuffled": "FRACTIONAL",
            "highdicom-labelmap": "LABELMAP"}[writer]
    path = highdicom_seg(mask, series, root / "seg" / f"{writer}.dcm", kind)
    return (shuffle_frames(path) if "shuffled" in writer else path), []


@pytest.mark.parametrize("writer", ["plastimatch", "rt-utils", "highdicom-binary", "highdicom-fractional-shuffled",
                                    "highdicom-labelmap"])
def test_evaluate_reads_back_contours_of_independent_writers(study, writer):
    path, extra = writer_file(study, writer)
    out = study["root"] / f"{writer}.json"
    run = cli("evaluate", "--ref", str(path), "--pred", str(study["labels"]), "--json", str(out), *extra,
              cwd=study["root"])
    assert run.returncode == 0, run.stderr
    scores = next(iter(json.loads(out.read_text())["cases"].values()))
    measured = {label: scores[label]["DSC"] for label in ("GTVp", "GTVn")}
    print(f"{writer}: Dice {measured}")
    assert min(measured.values()) >= MIN_DICE, measured


def test_kind_is_read_from_content_not_the_name(study, tmp_path):
    seg = highdicom_seg(study["mask"].array, study["series"], tmp_path / "seg.dcm", "BINARY")
    disguised = tmp_path / "mask.nii.gz"   # a SEG under a NIfTI name
    shutil.copy(seg, disguised)
    found = read_label_input(disguised, options=ContourOptions(reference=str(study["series"])))
    assert found.kind == "SEG" and found.structures == {1: ["GTV_Primary"], 2: ["GTVn_L2", "GTV node R"]}
    assert np.array_equal(found.image.array, study["mask"].array)


def test_nested_holes_read_even_odd_from_the_series_beside(study):
    ring = np.zeros(study["mask"].array.shape, np.uint8)
    ring[8:12, 20:40, 20:40] = 1
    ring[8:12, 25:35, 25:35] = 0
    ring[8:12, 28:32, 28:32] = 2   # an island in the hole: three nested contours on a slice
    labels = study["mask"].with_array(ring)
    path = write_rtstruct(labels, select_series(study["series"]), study["root"] / "study" / "ring.dcm", holes="nested")
    found = read_label_input(path)   # no option, no task image: its series is found beside it
    assert np.array_equal(found.image.array, ring) and found.image.same_grid(labels)


def test_seg_as_export_labels_is_read_as_segments(study, tmp_path):
    seg = highdicom_seg(study["mask"].array, study["series"], tmp_path / "seg.dcm", "BINARY")
    run = cli("export", "--labels", str(seg), "--source", str(study["series"]), "--rtstruct",
              str(tmp_path / "rt.dcm"), cwd=tmp_path)
    assert run.returncode == 0 and "255" not in run.stderr, run.stderr
    back = read_label_input(tmp_path / "rt.dcm", options=ContourOptions(reference=str(study["series"])))
    assert back.structures == {1: ["GTVp"], 2: ["GTVn"]}
    for value in (1, 2):
        assert dice(back.image.array == value, study["mask"].array == value) == 1.0


def test_no_gtv_and_double_match_are_exit_2_with_one_line(study, tmp_path):
    other = rt_utils_rtstruct(study["mask"].array, study["series"], tmp_path / "organs.dcm", names=("PTV_70", "Brainstem"))
    out = tmp_path / "scores.json"
    run = cli("evaluate", "--ref", str(other), "--pred", str(study["labels"]), "--reference", str(study["series"]),
              "--json", str(out), cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "no structure" in lines[0] and "'PTV_70', 'Brainstem'" in lines[0] and not out.exists()
    good = rt_utils_rtstruct(study["mask"].array, study["series"], tmp_path / "gtv.dcm")
    run = cli("evaluate", "--ref", str(good), "--pred", str(study["labels"]), "--reference", str(study["series"]),
              "--structures", "GTVp=GTVp1;GTVn=gtvp1", "--json", str(out), cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "both GTVp and GTVn" in lines[0] and not out.exists()


def test_structures_option_renames_and_contours_off_the_grid_are_refused(study, tmp_path):
    path = rt_utils_rtstruct(study["mask"].array, study["series"], tmp_path / "odd.dcm", names=("Tumour", "LN"))
    found = read_label_input(path, options=ContourOptions("GTVp=tumour;GTVn=LN", str(study["series"])))
    assert np.array_equal(found.image.array, study["mask"].array)
    shifted = study["mask"]
    grid = Image(shifted.array, shifted.spacing, tuple(np.add(shifted.origin, (0, 0, 1.5))), shifted.direction)
    with pytest.raises(Exception, match="does not lie in a slice"):   # half a slice off: another grid
        read_label_input(path, options=ContourOptions("GTVp=tumour;GTVn=LN"), grid=grid)


def test_seg_as_biomarkers_labels_gives_the_label_maps_biomarkers(tmp_path, capsys):
    from HNTumorSegLib.cli import main
    from HNTumorSegLib.phantoms import make_petct_case

    case = make_petct_case(seed=2, in_plane=64)
    write_dicom_series(case["CT"], tmp_path / "ct", modality="CT")
    (tmp_path / "seg").mkdir()
    seg = highdicom_seg(case["mask"].array, tmp_path / "ct", tmp_path / "seg" / "seg.dcm", "BINARY")
    for name in ("CT", "PET", "mask"):
        write_image(case[name], tmp_path / f"{name}.nii.gz")
    results = {}
    for key, labels in (("label map", tmp_path / "mask.nii.gz"), ("SEG", seg)):   # SEG: onto the --ct grid
        out = tmp_path / f"{key.replace(' ', '_')}.json"
        rc = main(["biomarkers", "--pet", str(tmp_path / "PET.nii.gz"), "--ct", str(tmp_path / "CT.nii.gz"),
                   "--labels", str(labels), "--json", str(out)])
        assert rc == 0, capsys.readouterr().err
        results[key] = json.loads(out.read_text())["patient"]
    assert results["SEG"] == results["label map"] and results["SEG"]["MTV_ml"] > 0
