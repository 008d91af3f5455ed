"""TTA is on by default where the model's seed ran it (nnU-Net folders, ensemble cards saying so), off elsewhere."""

from __future__ import annotations

import json

import pytest

from HNTumorSegLib.cli import build_parser
from HNTumorSegLib.image import write_image
from HNTumorSegLib.phantoms.petct import make_petct_case
from HNTumorSegLib.pipeline import SegmentRequest
from HNTumorSegLib.pipeline.validate import default_tta, validate_request


def test_request_tta_defaults_to_the_model_and_round_trips():
    req = SegmentRequest(model="demo-petct", input_paths={"CT": "ct.nii.gz", "PET": "pet.nii.gz"}, output_path="o.nii.gz")
    assert req.tta is None and "--tta" not in req.to_argv() and "--no-tta" not in req.to_argv()
    again = SegmentRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    assert again.tta is None
    args = build_parser().parse_args(["segment", "--model", "m", "--input", "CT=a.nii.gz", "--output", "o.nii.gz"])
    assert args.tta is None
    assert build_parser().parse_args(["segment", "--model", "m", "--input", "CT=a", "--output", "o.nii.gz",
                                      "--no-tta"]).tta is False


def test_segment_help_says_what_tta_costs_on_a_cpu(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "8x the inference time on a CPU" in text and "on where its seed ran it" in text


def test_validated_case_takes_the_models_default(tmp_path, tiny_nnunet_results):
    case = make_petct_case(seed=1, in_plane=32)
    ct, pet = write_image(case["CT"], tmp_path / "ct.nii.gz"), write_image(case["PET"], tmp_path / "pet.nii.gz")
    inputs = {"CT": str(ct), "PET": str(pet)}
    demo = validate_request(SegmentRequest(model="demo-petct", input_paths=inputs, output_path=str(tmp_path / "o.nii.gz")))
    assert demo.tta is False and default_tta(demo.model) is False            # demo card: no seed ran it
    forced = validate_request(SegmentRequest(model="demo-petct", input_paths=inputs, tta=True,
                                             output_path=str(tmp_path / "o.nii.gz")))
    assert forced.tta is True
    from HNTumorSegLib.models import load_model

    assert default_tta(load_model(tiny_nnunet_results)) is True             # nnUNetv2_predict's default
    from HNTumorSegLib.models.ensemble_card import write_ensemble

    for tta in (True, False):
        write_ensemble(tmp_path / f"e{tta}", {"members": [{"model": "demo-petct"}], "tta": tta})
        assert default_tta(load_model(tmp_path / f"e{tta}")) is tta


@pytest.mark.slow  # ~20-30 s on 2 shared cores: CI runs it, the default run skips it
def test_segment_with_two_models_runs_them_as_one_ensemble(tmp_path, capsys):
    """``--model A --model B --weights``: the same model twice gives that model's own labels."""
    import numpy as np

    from HNTumorSegLib.cli import main
    from HNTumorSegLib.image import read_image

    case = make_petct_case(seed=2, in_plane=48)
    ct, pet = write_image(case["CT"], tmp_path / "ct.nii.gz"), write_image(case["PET"], tmp_path / "pet.nii.gz")
    common = ["--input", f"CT={ct}", "--input", f"PET={pet}", "--device", "cpu", "--progress", "none"]
    assert main(["segment", "--model", "demo-petct", "--output", str(tmp_path / "one.nii.gz"), *common]) == 0
    assert main(["segment", "--model", "demo-petct", "--model", "demo-petct", "--weights", "1", "3",
                 "--output", str(tmp_path / "two.nii.gz"), *common]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read_image(tmp_path / "one.nii.gz", label=True).array,
                                  read_image(tmp_path / "two.nii.gz", label=True).array)
    capsys.readouterr()
    assert main(["segment", "--model", "demo-petct", "--model", "demo-petct", "--weights", "1",
                 "--output", str(tmp_path / "bad.nii.gz"), *common]) == 2
    assert "weight" in capsys.readouterr().err and not (tmp_path / "bad.nii.gz").exists()
