"""Issue 23 part 3: ``segment --prior-image`` registers the pre-RT contours onto the mid-RT T2 first.

The pair has a known transform (:mod:`HNTumorSegLib.phantoms.registration_pair`: rigid 10 mm + 5
degrees, a smooth deformation up to 8 mm, the GTVp 30 % smaller) on the demo-midrt model's grid.
Done when (issue 23): the run given the *unregistered* pre-RT mask and the pre-RT T2 lands within
0.03 DSC per label (against the mid-RT truth) of the run given the *truly* registered mask.
Also: ``--save-registered``, the registration's progress stage and quality figures, and the
refusals (one line, exit 2, nothing written).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import read_image, write_image
from HNTumorSegLib.phantoms.registration_pair import make_registration_pair
from HNTumorSegLib.pipeline.request import REGISTERED_FILES, SegmentRequest

DSC_TOLERANCE = 0.03


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    a, b = a == label, b == label
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A pair on the demo model's grid (0.9 x 0.9 x 3 mm), written as NIfTI."""
    root = tmp_path_factory.mktemp("prior_image")
    pair = make_registration_pair(seed=0, shape=(32, 96, 96), spacing=(0.9, 0.9, 3.0))
    paths = {"mid": root / "mid_T2.nii.gz", "pre": root / "pre_T2.nii.gz", "pre_mask": root / "pre_mask.nii.gz",
             "truth": root / "prior_true_registered.nii.gz", "mid_mask": root / "mid_mask.nii.gz"}
    for key, name in (("fixed", "mid"), ("moving", "pre"), ("moving_mask", "pre_mask"), ("truth_mask", "truth"),
                      ("fixed_mask", "mid_mask")):
        write_image(pair[key], paths[name])
    return {"root": root, **paths}


def segment(pair, *extra: str) -> int:
    return main(["segment", "--model", "demo-midrt", "--device", "cpu", "--input", f"T2={pair['mid']}", *extra])


@pytest.mark.slow
def test_prior_image_lands_within_003_dsc_of_the_truly_registered_prior(pair, capsys):
    out = pair["root"] / "registered"
    code = segment(pair, "--prior", str(pair["pre_mask"]), "--prior-image", str(pair["pre"]), "--save-registered",
                   str(out), "--output", str(pair["root"] / "labels_prior_image.nii.gz"), "--progress", "json")
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    register = [e for e in events if e.get("stage") == "register"]
    assert len(register) >= 3 and any("deformable" in e["message"] for e in register)   # progress like every stage
    assert "registration: MI" in register[-1]["message"] or any("registration: MI" in e["message"] for e in register)
    result = events[-1]
    assert result["event"] == "result" and result["timings"]["register"] > 0
    code = segment(pair, "--prior", str(pair["truth"]), "--output", str(pair["root"] / "labels_truth.nii.gz"),
                   "--progress", "none")
    assert code == 0
    reference = read_image(pair["mid_mask"], label=True).array
    got = read_image(pair["root"] / "labels_prior_image.nii.gz", label=True).array
    want = read_image(pair["root"] / "labels_truth.nii.gz", label=True).array
    for label, name in ((1, "GTVp"), (2, "GTVn")):
        a, b = dice(got, reference, label), dice(want, reference, label)
        print(f"{name}: DSC with --prior-image {a:.3f}, with the true registered prior {b:.3f}")
        assert abs(a - b) <= DSC_TOLERANCE, (name, a, b)
    # --save-registered: the registered image and prior on the mid-RT grid, the transform, the quality
    assert sorted(p.name for p in out.iterdir()) == sorted(REGISTERED_FILES.values())
    mid = read_image(pair["mid"])
    registered = read_image(out / REGISTERED_FILES["registered_prior"], label=True)
    assert registered.same_grid(mid) and read_image(out / REGISTERED_FILES["registered_image"]).same_grid(mid)
    truth = read_image(pair["truth"], label=True).array
    assert dice(registered.array, truth, 1) >= 0.85
    quality = json.loads((out / REGISTERED_FILES["registration"]).read_text())
    mi = quality["similarity"]["mutual_information"]
    assert quality["mode"] == "deformable" and mi["after"] > mi["before"]
    assert quality["jacobian"]["folded"] is False and quality["jacobian"]["min"] > 0
    assert (out / REGISTERED_FILES["registration_picture"]).read_bytes()[:4] == b"\x89PNG"


def _refused(pair, capsys, *extra: str) -> str:
    out = pair["root"] / "refused"
    code = segment(pair, "--output", str(out / "labels.nii.gz"), "--progress", "none", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not out.exists()
    return err[0]


def test_prior_image_without_prior_is_refused(pair, capsys):
    line = _refused(pair, capsys, "--prior-image", str(pair["pre"]))
    assert "--prior-image is given without --prior" in line


def test_registration_options_need_prior_image(pair, capsys):
    line = _refused(pair, capsys, "--prior", str(pair["truth"]), "--registration", "rigid")
    assert "--registration needs --prior-image" in line


def test_prior_off_the_pre_rt_grid_is_refused(pair, capsys):
    """The already registered mask (mid-RT grid) given with --prior-image: one line saying so."""
    line = _refused(pair, capsys, "--prior", str(pair["truth"]), "--prior-image", str(pair["pre"]))
    assert "not on the grid of the pre-RT image" in line and "drop --prior-image" in line


def test_save_registered_never_overwrites_an_input(pair, capsys):
    """A DIR holding the prior under the name --save-registered would write: refused before any work."""
    folder = pair["root"] / "earlier_run"
    folder.mkdir(exist_ok=True)
    prior = folder / REGISTERED_FILES["registered_prior"]
    prior.write_bytes(pair["pre_mask"].read_bytes())
    before = prior.read_bytes()
    line = _refused(pair, capsys, "--prior", str(prior), "--prior-image", str(pair["pre"]), "--save-registered",
                    str(folder))
    assert "is the same file as the prior" in line and prior.read_bytes() == before
    line = _refused(pair, capsys, "--prior", str(pair["pre_mask"]), "--prior-image", str(pair["pre"]),
                    "--save-registered", str(pair["pre"]))
    assert "--save-registered" in line


def test_request_carries_the_registration_options():
    """The session and Slicer send the same request: JSON and command line round trips."""
    req = SegmentRequest(model="demo-midrt", input_paths={"T2": "mid.nii.gz"}, output_path="out.nii.gz",
                         prior_path="pre_rt.dcm", prior_image_path="pre_T2/", registration="RIGID",
                         registered_folder_path="registered")
    assert str(req.registration) == "rigid"
    assert SegmentRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    argv = req.to_argv()
    assert argv[argv.index("--prior-image") + 1] == "pre_T2" or argv[argv.index("--prior-image") + 1] == "pre_T2/"
    assert argv[argv.index("--registration") + 1] == "rigid" and "--save-registered" in argv
