"""`hntumorseg segment` with a raw nnU-Net v2 results folder (trained in the test suite with nnunetv2):
inputs named by dataset.json ``channel_names``, no ``--task``, nnU-Net's own pre/post-processing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

require_module("nnunetv2")

from nnunet_fixture import tiny_nnunet_test_cases  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.inference.nnunet_inference import load_nnunet_model, predict_nnunet_case  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_segment_runs_an_nnunet_folder_by_channel_names(tiny_nnunet_results, tmp_path, capsys):
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    out = tmp_path / "labels.nii.gz"
    rc = main(["segment", "--model", str(tiny_nnunet_results), "--input", f"CT={ct}", "--input", f"PET={pet}",
               "--output", str(out), "--folds", "0", "--device", "cpu", "--progress", "none"])
    assert rc == 0, capsys.readouterr().err
    labels = read_image(out, label=True)
    assert labels.same_grid(read_image(ct))
    # segment's default for an nnU-Net folder is nnUNetv2_predict's: mirroring TTA on
    direct = predict_nnunet_case(load_nnunet_model(tiny_nnunet_results, folds=(0,)), [ct, pet], device="cpu",
                                 tta=True)
    np.testing.assert_array_equal(labels.array, direct.segmentation)


def test_nnunet_folder_refuses_a_wrong_channel_name(tiny_nnunet_results, tmp_path, capsys):
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    out = tmp_path / "labels.nii.gz"
    rc = main(["segment", "--model", str(tiny_nnunet_results), "--input", f"CT={ct}", "--input", f"FDG={pet}",
               "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "FDG" in err[0] and "PET" in err[0]
    assert not out.exists()
