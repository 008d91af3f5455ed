"""Cross-architecture ensembles: an nnU-Net folder, an STU-Net card and a SegResNet checkpoint run together.

The ensemble's probabilities must be the weighted per-class mean of each model's *own*
probabilities (each model run alone through ``segment`` with its own preprocessing), and its
labels their argmax. The SegResNet's weights are random (seeded): this test checks how the
members are combined, not how well they segment.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module
import SimpleITK as sitk

torch = require_module("torch")
require_module("monai")
require_module("nnunetv2")

from HNTumorSegLib.errors import ModelError  # noqa: E402
from HNTumorSegLib.image import read_image, resample_to, write_image  # noqa: E402
from HNTumorSegLib.models import load_model  # noqa: E402
from HNTumorSegLib.models.ensemble_card import write_ensemble  # noqa: E402
from HNTumorSegLib.models.segresnet_checkpoint import inputs_from_auto3dseg, make_segresnet_folder  # noqa: E402
from HNTumorSegLib.networks.segresnet import build_segresnet_ds  # noqa: E402
from HNTumorSegLib.phantoms.petct import make_petct_case  # noqa: E402
from HNTumorSegLib.pipeline import SegmentRequest, run_segmentation  # noqa: E402

SRN_KWARGS = {"init_filters": 8, "blocks_down": [1, 1, 1], "dsdepth": 1}


@pytest.fixture
def members(tmp_path, tiny_nnunet_results, one_torch_thread):
    torch.manual_seed(0)
    net = build_segresnet_ds(in_channels=2, out_channels=3, **SRN_KWARGS)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "model.pt")
    # Auto3DSeg's own normalisation (range + sigmoid), as its hyper_parameters.yaml says
    inputs = inputs_from_auto3dseg({"normalize_mode": "range", "intensity_bounds": [-100.0, 200.0]}, ["CT", "PET"])
    make_segresnet_folder(tmp_path / "model.pt", tmp_path / "segresnet", "srn-tiny", inputs, task="petct",
                          kwargs=SRN_KWARGS, patch_size=(32, 64, 64), spacing=(2.0, 2.0, 2.0))
    case = make_petct_case(seed=5, in_plane=64)
    ct = write_image(case["CT"], tmp_path / "ct.nii.gz")
    # nnU-Net (alone) needs the PET on the CT grid, as HECKTOR's nnU-Net inputs are prepared
    pet = write_image(resample_to(case["PET"], case["CT"], interpolator="linear"), tmp_path / "pet.nii.gz")
    return {"nnunet": str(tiny_nnunet_results), "stunet": "demo-petct", "segresnet": str(tmp_path / "segresnet"),
            "inputs": {"CT": str(ct), "PET": str(pet)}}


def _probabilities(model: str, inputs: dict, out_dir, name: str) -> tuple[np.ndarray, np.ndarray]:
    res = run_segmentation(SegmentRequest(model=model, input_paths=inputs, output_path=str(out_dir / f"{name}.nii.gz"),
                                          probabilities_path=str(out_dir / f"{name}_prob.nii.gz"), device="cpu",
                                          tta=False, task="petct"))
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(res.files["probabilities"])))   # 4D file: (K, z, y, x)
    labels = read_image(res.files["labels"], label=True).array
    assert prob.shape == (3,) + labels.shape
    return prob, labels


@pytest.mark.slow
def test_three_architecture_ensemble_is_the_mean_of_each_models_own_probabilities(members, tmp_path):
    folder = tmp_path / "ens"
    write_ensemble(folder, {"id": "three", "title": "nnU-Net + STU-Net + SegResNet", "task": "petct",
                            "members": [{"model": members["nnunet"], "weight": 2.0},
                                        {"model": members["stunet"], "weight": 1.0},
                                        {"model": "../segresnet", "weight": 1.0}]})
    model = load_model(folder)
    assert model.kind == "ensemble" and [m.model.kind for m in model.members] == ["nnunet", "card", "segresnet"]
    assert [m.weight for m in model.members] == pytest.approx([0.5, 0.25, 0.25])
    own = [_probabilities(members[k], members["inputs"], tmp_path, k) for k in ("nnunet", "stunet", "segresnet")]
    ens_prob, ens_labels = _probabilities(str(folder), members["inputs"], tmp_path, "ensemble")
    expected = 0.5 * own[0][0] + 0.25 * own[1][0] + 0.25 * own[2][0]
    assert ens_prob.shape == expected.shape == (3,) + ens_labels.shape
    np.testing.assert_allclose(ens_prob, expected, atol=2e-5)
    np.testing.assert_array_equal(ens_labels, np.argmax(expected, axis=0))
    # the members really differ, so the mean is not a copy of one of them
    assert np.abs(own[0][0] - own[2][0]).max() > 0.1


def test_bad_ensemble_cards_are_model_errors(tmp_path):
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "ensemble.json").write_text(json.dumps({"format": "hntumorseg-ensemble/1", "members": []}))
    with pytest.raises(ModelError, match="members"):
        load_model(tmp_path / "e1")
    (tmp_path / "e2").mkdir()
    (tmp_path / "e2" / "ensemble.json").write_text(json.dumps(
        {"format": "hntumorseg-ensemble/1", "members": [{"model": "demo-petct", "weight": -1}]}))
    with pytest.raises(ModelError, match="weight"):
        load_model(tmp_path / "e2")
    (tmp_path / "e3").mkdir()
    (tmp_path / "e3" / "ensemble.json").write_text(json.dumps(
        {"format": "hntumorseg-ensemble/1", "members": [{"model": "demo-petct"}], "pipeline": "seed002-coarse-to-fine"}))
    with pytest.raises(ModelError, match="stages.head"):
        load_model(tmp_path / "e3")
