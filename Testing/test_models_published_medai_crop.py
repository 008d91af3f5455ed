"""A folder declared as trained on seed 004's head crop, run on a tall CT+PET phantom.

``hntumorseg segment`` must equal: the project's seed-004 head crop
(:func:`HNTumorSegLib.prompts.head_localisation.locate_head`, 200 x 200 x 310 mm at 1 mm) ->
nnUNetPredictor on the crop -> paste back onto the CT grid. The declaration sidecar is written by
hand here, as a user would for a folder we did not train.

The network that runs is the tiny REAL nnU-Net folder of the test cache (``tiny_nnunet_results``:
PlainConvUNet, CT + PET, trained by nnunetv2 on the same kind of phantoms, so it finds lesions and
the agreement is not the agreement of two empty maps). A REAL STU-Net-S folder
(``STUNetTrainer_small``, seed 004's trainer, trained briefly by nnunetv2 with the project's trainer:
:func:`published_fixture.build_stunet_small_results`) is checked with the same declaration for
loading and ``models show``; running it over the full 1 mm crop takes ~5 minutes on one CPU core
(STU-Net-S keeps 5 downsamplings on a 3-stage plan), too slow for the suite, and after 8 training
iterations it predicts only background - it would prove nothing more than the folder above.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

import nnunetv2  # noqa: F401,E402  (a requirement: missing fails, never skips)
import torch  # noqa: E402  (a requirement: missing fails, never skips)

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.image import read_image, write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_petct_case  # noqa: E402
from HNTumorSegLib.prompts.head_localisation import locate_head  # noqa: E402
from published_fixture import EXT_TRAINERS, build_stunet_small_results  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

DECLARATION = {"task": "petct", "channels": {"0": {"input": "CT"}, "1": {"input": "PET"}},
               "crop": {"recipe": "seed004-head", "size_mm": [200, 200, 310], "spacing_mm": 1.0},
               "licence": "CC-BY-NC-4.0", "citation": "Cai L et al., HECKTOR 2025 (team MEDAI)"}


def _declared_copy(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("medai") / source.name
    shutil.copytree(source, folder)
    (folder / "hntumorseg-declaration.json").write_text(json.dumps(DECLARATION))
    return folder


@pytest.fixture(scope="module")
def declared_folder(tiny_nnunet_results, tmp_path_factory):
    return _declared_copy(tiny_nnunet_results, tmp_path_factory)


@pytest.fixture(scope="module")
def stunet_folder(test_cache_dir, tmp_path_factory):
    return _declared_copy(build_stunet_small_results(test_cache_dir), tmp_path_factory)


@pytest.fixture(scope="module")
def tall_case(tmp_path_factory):
    case = make_petct_case(seed=5, tall=True, in_plane=96, ct_spacing=(2.0, 2.0, 4.0))
    folder = tmp_path_factory.mktemp("tall")
    return {"CT": write_image(case["CT"], folder / "ct.nii.gz"), "PET": write_image(case["PET"], folder / "pet.nii.gz"),
            "ct_image": case["CT"], "pet_image": case["PET"]}


def reference_labels(folder, case, out_dir, monkeypatch):
    """crop (the project's seed-004 crop) -> nnUNetPredictor -> paste back."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    crop = locate_head(read_image(case["CT"]), read_image(case["PET"]), crop_mm=(200, 200, 310), spacing=1.0)
    files = [write_image(img.with_array(img.array.astype(np.float32)), out_dir / f"crop_{i:04d}.nii.gz")
             for i, img in enumerate((crop.ct, crop.pet))]
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                        perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    out = str(out_dir / "nnunet")
    p.predict_from_files_sequential([[str(f) for f in files]], [out], save_probabilities=False, overwrite=True)
    on_crop = sitk.GetArrayFromImage(sitk.ReadImage(out + ".nii.gz"))
    return crop.paste_back(on_crop).array, crop


def test_segment_equals_crop_then_nnunet_predictor_then_paste_back(declared_folder, tall_case, tmp_path, monkeypatch,
                                                                   capsys):
    assert main(["models", "show", str(declared_folder)]) == 0
    assert "crop: seed004-head 200 x 200 x 310 mm at 1 mm" in capsys.readouterr().out
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", "--model", str(declared_folder), "--input", f"CT={tall_case['CT']}",
                 "--input", f"PET={tall_case['PET']}", "--output", str(out), "--device", "cpu", "--no-tta", "--folds", "0",
                 "--progress", "none"]) == 0
    ours = read_image(out, label=True)
    assert ours.same_grid(tall_case["ct_image"])
    reference, crop = reference_labels(declared_folder, tall_case, tmp_path, monkeypatch)
    assert reference.shape == ours.array.shape
    assert np.count_nonzero(reference) > 1000, "the network finds lesions (else equality proves nothing)"
    agreement = float(np.mean(ours.array == reference))
    assert agreement >= 0.999, agreement   # measured 0.9996: float order of the two sliding windows
    # the crop is real: the tall scan's lower part lies outside it and stays background
    lo, hi = crop.bounds_lps
    z_mm = tall_case["ct_image"].index_to_physical(
        np.stack([np.zeros(ours.array.shape[0]), np.zeros(ours.array.shape[0]), np.arange(ours.array.shape[0])], 1))[:, 2]
    below = z_mm < lo[2] - 4.0
    assert below.any() and not ours.array[below].any()


def test_a_crop_model_refuses_probability_maps_before_writing(declared_folder, tall_case, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    assert main(["segment", "--model", str(declared_folder), "--input", f"CT={tall_case['CT']}",
                 "--input", f"PET={tall_case['PET']}", "--output", str(out), "--device", "cpu", "--no-tta", "--progress", "none",
                 "--probabilities", str(tmp_path / "p.nii.gz")]) == 2
    assert "seed 004's head crop" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "p.nii.gz").exists()


def test_a_stunet_small_folder_loads_with_the_crop_declaration(stunet_folder, capsys, monkeypatch):
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.networks.stunet import STUNet

    model = load_model(stunet_folder, folds="0")
    assert isinstance(model.networks[0], STUNet) and model.trainer_name == "STUNetTrainer_small"
    assert model.card.task == "petct" and model.declaration.crop["recipe"] == "seed004-head"
    assert model.declaration.user_inputs == ["CT", "PET"]
    monkeypatch.setenv("nnUNet_extTrainer", str(EXT_TRAINERS))   # nnU-Net itself builds the same network
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(stunet_folder), use_folds=(0,))
    theirs = p.network.state_dict()
    ours = model.networks[0].state_dict()
    assert theirs.keys() == ours.keys()
    p.network.load_state_dict(p.list_of_parameters[0])
    assert all(torch.equal(p.network.state_dict()[k], ours[k]) for k in ours)
    assert main(["models", "show", str(stunet_folder)]) == 0
    assert "crop: seed004-head" in capsys.readouterr().out
