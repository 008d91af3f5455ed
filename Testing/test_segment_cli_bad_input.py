"""`hntumorseg segment` refuses bad input: exit code 2, exactly one line on stderr, no output file.

Every case of issue 4's "Done when" line, through the real command-line entry point
(``HNTumorSegLib.cli.main``, what the ``hntumorseg`` script calls; one case also through a
real subprocess): missing, corrupt, 2D, 4D and NaN images; inputs that do not overlap in
space; missing and unknown input names; garbled boxes and boxes outside the image; a model
folder without checkpoint and a missing folder; an absent fold; an absent device; an output
path equal to an input.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from HNTumorSegLib.cli import main
from HNTumorSegLib.image import Image, write_image
from HNTumorSegLib.phantoms import make_midrt_case, make_petct_case

from pipeline_testlib import DEMO_MIDRT, make_random_model


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("badinput")
    mid = make_midrt_case(seed=7)
    files = {
        "t2": write_image(mid["midRT_T2"], d / "t2.nii.gz"),
        "prior": write_image(mid["preRT_mask_registered"], d / "prior.nii.gz"),
    }
    t2 = mid["midRT_T2"]
    files["corrupt"] = d / "corrupt.nii.gz"
    files["corrupt"].write_bytes(b"\x1f\x8b this is not a NIfTI file at all" * 10)
    two_d = sitk.GetImageFromArray(np.zeros((40, 40), np.float32))
    sitk.WriteImage(two_d, str(d / "two_d.nii.gz"))
    files["2d"] = d / "two_d.nii.gz"
    four_d = sitk.JoinSeries([t2.to_sitk(), t2.to_sitk()])
    sitk.WriteImage(four_d, str(d / "four_d.nii.gz"))
    files["4d"] = d / "four_d.nii.gz"
    nan = t2.array.copy()
    nan[5, 10, 10] = np.nan
    files["nan"] = write_image(t2.with_array(nan), d / "nan.nii.gz")
    far = Image(mid["preRT_mask_registered"].array, t2.spacing, tuple(np.asarray(t2.origin) + 500.0), t2.direction)
    files["far_prior"] = write_image(far, d / "far_prior.nii.gz")
    files["garbled_boxes"] = d / "garbled.json"
    files["garbled_boxes"].write_text('[{"label": 1, "name": "GTVp-1", "min_ras": [1, 2], ')
    files["outside_boxes"] = d / "outside.json"
    files["outside_boxes"].write_text(json.dumps([{"label": 1, "name": "GTVp-1", "min_ras": [900, 900, 900],
                                                   "max_ras": [950, 950, 950]}]))
    no_ckpt = d / "model_without_checkpoint"
    no_ckpt.mkdir()
    shutil.copy(DEMO_MIDRT / "model.json", no_ckpt / "model.json")
    files["no_ckpt"] = no_ckpt
    pet = make_petct_case(seed=7)
    files["ct"] = write_image(pet["CT"], d / "ct.nii.gz")
    files["pet"] = write_image(pet["PET"], d / "pet.nii.gz")
    far_pet = pet["PET"]
    # far away AND a tiny field of view: seed 004's rigid-registration fallback cannot place it either
    # (a shifted copy of the whole PET is registered back and runs: test_prompts_pet_ct_registration.py)
    far_pet = Image(far_pet.array[:6, :6, :6].copy(), far_pet.spacing,
                    tuple(np.asarray(far_pet.origin) + (0, 0, 2000.0)))
    files["far_pet"] = write_image(far_pet, d / "far_pet.nii.gz")
    files["petct_model"] = make_random_model(
        d / "petct_model", "petct",
        [{"name": "CT", "normalisation": {"type": "window", "lo": -110.0, "hi": 190.0}},
         {"name": "PET", "normalisation": {"type": "range", "lo": 0.0, "hi": 15.0}}])
    files["dir"] = d
    return files


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def midrt_args(case, **over) -> list[str]:
    args = {"--task": "midrt", "--model": str(DEMO_MIDRT), "--input": f"T2={case['t2']}",
            "--prior": str(case["prior"])}
    args.update(over)
    argv = ["segment"]
    for k, v in args.items():
        if v is None:
            continue
        for item in (v if isinstance(v, list) else [v]):
            argv += [k, item]
    return argv


BAD = {
    "missing image": lambda c: midrt_args(c, **{"--input": f"T2={c['dir'] / 'nope.nii.gz'}"}),
    "corrupt image": lambda c: midrt_args(c, **{"--input": f"T2={c['corrupt']}"}),
    "2D image": lambda c: midrt_args(c, **{"--input": f"T2={c['2d']}"}),
    "4D image": lambda c: midrt_args(c, **{"--input": f"T2={c['4d']}"}),
    "NaN image": lambda c: midrt_args(c, **{"--input": f"T2={c['nan']}"}),
    "prior does not overlap": lambda c: midrt_args(c, **{"--prior": str(c["far_prior"])}),
    "PET does not overlap CT": lambda c: ["segment", "--model", str(c["petct_model"]), "--input", f"CT={c['ct']}",
                                          "--input", f"PET={c['far_pet']}"],
    "missing input name": lambda c: ["segment", "--model", str(c["petct_model"]), "--input", f"CT={c['ct']}"],
    "unknown input name": lambda c: midrt_args(c, **{"--input": f"FLAIR={c['t2']}"}),
    "no input at all": lambda c: midrt_args(c, **{"--input": None}),
    "input not NAME=PATH": lambda c: midrt_args(c, **{"--input": str(c["t2"])}),
    "midrt without prior": lambda c: midrt_args(c, **{"--prior": None}),
    "garbled boxes": lambda c: midrt_args(c, **{"--boxes": str(c["garbled_boxes"])}),
    "boxes outside the image": lambda c: midrt_args(c, **{"--boxes": str(c["outside_boxes"])}),
    "model folder without checkpoint": lambda c: midrt_args(c, **{"--model": str(c["no_ckpt"])}),
    "missing model folder": lambda c: midrt_args(c, **{"--model": str(c["dir"] / "no_such_model")}),
    "unknown model id": lambda c: midrt_args(c, **{"--model": "no-such-model-id"}),
    "absent fold": lambda c: midrt_args(c, **{"--folds": "3"}),
    "garbled folds": lambda c: midrt_args(c, **{"--folds": "zero"}),
    "absent device": lambda c: midrt_args(c, **{"--device": "mps" if _cuda_available() else "cuda"}),
    "unknown device": lambda c: midrt_args(c, **{"--device": "tpu"}),
    "task does not match the model": lambda c: midrt_args(c, **{"--task": "petct"}),
    "output equal to the input": lambda c: midrt_args(c, **{"--output": str(c["t2"])}),
    "output equal to the prior": lambda c: midrt_args(c, **{"--output": str(c["prior"])}),
    "output not an image name": lambda c: midrt_args(c, **{"--output": str(c["dir"] / "labels.txt")}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exit_2_one_line_no_output(name, case, tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = BAD[name](case)
    if "--output" not in argv:
        argv += ["--output", str(out_dir / "labels.nii.gz")]
    argv += ["--probabilities", str(out_dir / "prob.nii.gz")]
    before = {p: p.stat().st_mtime_ns for p in case["dir"].rglob("*") if p.is_file()}
    rc = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, (name, captured.err)
    assert len(lines) == 1, (name, captured.err)
    assert lines[0].startswith("hntumorseg segment: error: ")
    assert "Traceback" not in captured.err
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())
    after = {p: p.stat().st_mtime_ns for p in case["dir"].rglob("*") if p.is_file()}
    assert after == before, "an input was changed or a file was added beside the inputs"


def test_bad_input_through_the_console_script(case, tmp_path):
    """The installed entry point (a fresh process): exit 2, one stderr line, nothing written."""
    out = tmp_path / "labels.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "HNTumorSegLib", *midrt_args(case, **{"--input": f"T2={case['2d']}"}),
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "3D" in proc.stderr
    assert not out.exists()
