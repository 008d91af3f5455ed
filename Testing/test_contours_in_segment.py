"""``segment --prior`` takes the registered pre-RT contours as a DICOM RTSTRUCT or SEG (issue 23 part 1).

The mid-RT phantom's registered pre-RT mask is written by independent tools on the mid-RT T2
series (an RTSTRUCT by rt-utils with the planning system's names GTV_P / GTVn_R, beside the
series; a SEG by highdicom, given with ``--reference``) and given to ``segment --prior`` with the
bundled demo-midrt model. The prior they read back to makes the same lesion boxes (within
0.01 mm) as the NIfTI mask they came from, and the segmentation agrees with the run given that
mask (Dice >= 0.95 per label; measured 1.00), and the structures taken are named. A prior with
no recognisable GTV, or drawn in another frame of reference (not registered), is exit 2 before
any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")

from dicom_testlib import dice  # noqa: E402
from test_contours_in_readback import highdicom_seg, rt_utils_rtstruct  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.contours_in import ContourOptions, read_label_input  # noqa: E402
from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_midrt_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def midrt(tmp_path_factory):
    root = tmp_path_factory.mktemp("contours_in_segment")
    case = make_midrt_case(seed=11)
    prior = case["preRT_mask_registered"]
    series = root / "study" / "t2"
    write_dicom_series(case["midRT_T2"], series, "MR", series_description="T2 mid-RT")
    write_image(prior, root / "prior.nii.gz")
    return {"root": root, "series": series, "prior": prior}


def segment(midrt, prior_path, name: str, *extra: str) -> tuple[int, str]:
    out = midrt["root"] / name
    rc = main(["segment", "--model", "demo-midrt", "--input", f"T2={midrt['series']}", "--prior", str(prior_path),
               "--output", str(out / "labels.nii.gz"), "--save-boxes", str(out / "boxes.json"), "--device", "cpu",
               "--progress", "none", *extra])
    return rc, str(out)


def boxes(folder: str) -> list:
    return json.loads((Path(folder) / "boxes.json").read_text())


@pytest.mark.parametrize("kind", ["rtstruct", "seg"])
def test_segment_prior_from_dicom_contours(midrt, kind, capsys):
    mask = midrt["prior"].array
    if kind == "rtstruct":   # beside the series, in the study folder
        path, extra = rt_utils_rtstruct(mask, midrt["series"], midrt["root"] / "study" / "rt.dcm", ("GTV_P", "GTVn_R")), []
    else:
        path = highdicom_seg(mask, midrt["series"], midrt["root"] / "seg.dcm", "BINARY")
        extra = ["--reference", str(midrt["series"])]
    back = read_label_input(path, options=ContourOptions(reference=extra[-1] if extra else None)).image
    read_back = {value: dice(back.array == value, mask == value) for value in (1, 2)}
    assert back.same_grid(midrt["prior"]) and min(read_back.values()) >= 0.95, read_back
    rc, got = segment(midrt, path, kind, *extra)
    err = capsys.readouterr().err
    assert rc == 0, err
    names = "GTVp = GTV_P; GTVn = GTVn_R" if kind == "rtstruct" else "GTVp = GTV_Primary; GTVn = GTVn_L2 + GTV node R"
    assert f"the prior is a DICOM {kind.upper()}: {names}" in err, err   # which structures were taken is said
    truth = midrt["root"] / "nifti"
    if not (truth / "labels.nii.gz").exists():
        rc, _ = segment(midrt, midrt["root"] / "prior.nii.gz", "nifti")
        assert rc == 0, capsys.readouterr().err
    a, b = boxes(got), boxes(str(truth))
    assert [x["label"] for x in a] == [x["label"] for x in b]
    for x, y in zip(a, b):
        assert np.allclose(x["min_ras"], y["min_ras"], atol=0.01) and np.allclose(x["max_ras"], y["max_ras"], atol=0.01)
    ours, theirs = read_image(f"{got}/labels.nii.gz", label=True).array, read_image(truth / "labels.nii.gz", label=True).array
    measured = {value: dice(ours == value, theirs == value) for value in (1, 2)}
    print(f"segment --prior {kind}: prior read back Dice {read_back}; output Dice vs the NIfTI prior's run {measured}")
    assert set(np.unique(theirs).tolist()) == {0, 1, 2} and min(measured.values()) >= 0.95


def test_prior_without_a_gtv_is_refused_before_any_work(midrt, capsys):
    path = rt_utils_rtstruct(midrt["prior"].array, midrt["series"], midrt["root"] / "organs.dcm", ("CTV_70", "Cord"))
    rc, out = segment(midrt, path, "refused", "--reference", str(midrt["series"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and any("no structure of the RTSTRUCT" in line and "'CTV_70', 'Cord'" in line for line in err), err
    assert not (Path(out) / "labels.nii.gz").exists()


def test_contours_of_another_frame_of_reference_are_refused(midrt, tmp_path, capsys):
    """Contours drawn on the pre-RT scan (its own frame of reference) and not registered: exit 2, not
    silently used as if registered (the grids overlap, so nothing else would notice)."""
    pre = tmp_path / "pre_t2"
    write_dicom_series(read_image(midrt["root"] / "prior.nii.gz"), pre, "MR", series_description="T2 pre-RT")
    frames = {str(pydicom.dcmread(next(p.glob("*.dcm"))).FrameOfReferenceUID) for p in (pre, midrt["series"])}
    assert len(frames) == 2   # a series of its own frame of reference
    path = rt_utils_rtstruct(midrt["prior"].array, pre, tmp_path / "pre_rt.dcm", ("GTV_P", "GTVn_R"))
    rc, out = segment(midrt, path, "other_frame", "--reference", str(pre))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and any("not registered" in line and "frame of reference" in line for line in err), err
    assert not (Path(out) / "labels.nii.gz").exists()
