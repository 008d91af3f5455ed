"""Our nnU-Net folder inference against nnUNetPredictor on a real folder trained in the test suite."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")
require_module("nnunetv2")

from nnunet_fixture import tiny_nnunet_test_cases  # noqa: E402

from HNTumorSegLib.errors import InputError, ModelError  # noqa: E402
from HNTumorSegLib.inference.nnunet_inference import (input_files_for, load_nnunet_model,  # noqa: E402
                                                      predict_nnunet_case)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_nnunet_predictor(folder, files, out_dir, folds=(0, 1)):
    """nnU-Net's own inference, no TTA, probabilities saved."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                        perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=folds)
    out = str(out_dir / "nnunet")
    p.predict_from_files_sequential([[str(f) for f in files]], [out], save_probabilities=True, overwrite=True)
    seg = __import__("SimpleITK").GetArrayFromImage(__import__("SimpleITK").ReadImage(out + ".nii.gz"))
    prob = np.load(out + ".npz")["probabilities"]
    return seg, prob


# not marked slow: 10-60 s on 2 shared cores (plus the one-off fixture build), and it must run in CI
@pytest.mark.parametrize("case_index", [0, pytest.param(1, marks=pytest.mark.slow)])  # the 2nd case: CI only
def test_agreement_with_nnunet_predictor_both_folds_no_tta(tiny_nnunet_results, tmp_path, case_index):
    import SimpleITK as sitk

    files = tiny_nnunet_test_cases(tiny_nnunet_results)[case_index]
    theirs_seg, theirs_prob = run_nnunet_predictor(tiny_nnunet_results, files, tmp_path)
    model = load_nnunet_model(tiny_nnunet_results, folds=(0, 1))
    assert len(model.networks) == 2
    out = tmp_path / "ours.nii.gz"
    res = predict_nnunet_case(model, files, device="cpu", tta=False, return_probabilities=True, output_file=out)
    ours_seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    np.testing.assert_array_equal(ours_seg, res.segmentation)
    assert ours_seg.shape == theirs_seg.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(files[0]))).shape
    agreement = float((ours_seg == theirs_seg).mean())
    print(f"voxel agreement with nnUNetPredictor: {agreement:.5f}")
    assert agreement >= 0.995, f"voxel agreement {agreement:.5f}"
    # the probabilities themselves agree. Not everywhere to 1e-6: nnU-Net accumulates the
    # Gaussian-weighted logits in float16, where the weights near tile corners (down to 4e-10)
    # underflow, so its logits there are off by up to ~0.5 (ours match a float64 reference to 1e-6)
    assert res.probabilities.shape == theirs_prob.shape
    diff = np.abs(res.probabilities - theirs_prob)
    assert np.percentile(diff, 99) < 0.01 and np.median(diff) < 1e-3
    # and they are not trivial: the trained network is far from certain everywhere
    assert res.probabilities[0].min() < 0.9
    ref = sitk.ReadImage(str(files[0]))
    written = sitk.ReadImage(str(out))
    assert written.GetSpacing() == pytest.approx(ref.GetSpacing()) and written.GetOrigin() == pytest.approx(ref.GetOrigin())


def test_inputs_by_channel_name_and_errors(tiny_nnunet_results, tmp_path):
    model = load_nnunet_model(tiny_nnunet_results, folds=(0,))
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    assert input_files_for(model, {"PET": pet, "CT": ct}) == [str(ct), str(pet)]
    with pytest.raises(InputError, match="channels"):
        input_files_for(model, {"T2": ct})
    with pytest.raises(InputError, match="needs 2"):
        input_files_for(model, [ct])
    with pytest.raises(InputError, match="not found"):
        input_files_for(model, [ct, tmp_path / "missing.nii.gz"])
    with pytest.raises(ModelError):
        load_nnunet_model(tiny_nnunet_results, folds=(4,))
    with pytest.raises(ModelError):
        load_nnunet_model(tmp_path, folds=None)


def test_single_fold_runs_and_reports_progress(tiny_nnunet_results):
    calls = []
    model = load_nnunet_model(tiny_nnunet_results, folds=(1,))
    files = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    res = predict_nnunet_case(model, {"CT": files[0], "PET": files[1]}, device="cpu",
                              progress=lambda **kw: calls.append(kw))
    assert res.segmentation.dtype == np.uint8 and set(np.unique(res.segmentation)) <= {0, 1, 2}
    assert calls and calls[-1]["fraction"] == pytest.approx(1.0)
    assert calls[0]["message"].startswith("fold 1/1 tile 1/")


def test_project_loader_builds_the_network_nnunet_builds(tiny_nnunet_results):
    """models.loader skips importing the trainer for stock trainers: its networks must equal
    the ones nnU-Net's own trainer class builds from the same plans and checkpoint."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from HNTumorSegLib.models.safe_load import load_checkpoint

    project = load_nnunet_model(tiny_nnunet_results, folds=(0, 1))
    assert project.folds == (0, 1)
    x = torch.randn(1, 2, 16, 48, 48)
    for fold, ours in zip((0, 1), project.networks):
        ckpt = load_checkpoint(tiny_nnunet_results / f"fold_{fold}" / "checkpoint_final.pth")
        assert tuple(ckpt["inference_allowed_mirroring_axes"]) == project.mirror_axes
        theirs = nnUNetTrainer.build_network_architecture(
            project.plans_manager, project.configuration_manager, 2,
            project.plans_manager.get_label_manager(project.dataset_json).num_segmentation_heads,
            enable_deep_supervision=False)
        theirs.load_state_dict(ckpt["network_weights"])
        with torch.inference_mode():
            torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))
