"""End to end on the CPU: phantom HNTS-MRG cohort -> converter -> nnU-Net plan/preprocess -> each custom
trainer for a few iterations -> validation predictions -> CV evaluation, ensemble, threshold search ->
export to a model card -> the extension's pipeline segments a case with the exported model.

Slow (a few minutes on 2 cores, most of it nnU-Net planning, cached between runs): marked ``slow``,
still run in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("nnunetv2")
torch = require_module("torch")

from training_fixture import make_trainer, planned_dataset  # noqa: E402

TRAINERS = ("nnUNetTrainer_Seed001", "nnUNetTrainerV2StarStar", "STUNetTrainer_small")


def shortened_training_env(monkeypatch, info: dict, results: Path) -> None:
    """nnU-Net's folders for the planned dataset, and training cut to 1 epoch of 2 iterations."""
    for key, value in info["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_results", str(results))
    monkeypatch.setenv("HNTUMORSEG_NUM_EPOCHS", "1")
    monkeypatch.setenv("HNTUMORSEG_ITERS_PER_EPOCH", "2")
    monkeypatch.setenv("HNTUMORSEG_VAL_ITERS", "1")


@pytest.mark.slow
def test_train_predict_evaluate_export_segment(test_cache_dir, tmp_path, monkeypatch):
    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.pipeline import run_segmentation
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from hntumorseg_training.crossval import ensemble_folders, evaluate_folds, pairs_from_folds, search_min_volume
    from hntumorseg_training.export import export_nnunet

    torch.set_num_threads(2)
    info = planned_dataset(test_cache_dir)
    shortened_training_env(monkeypatch, info, tmp_path / "results")

    folders, trainers = {}, {}
    for name in TRAINERS:
        torch.manual_seed(0)
        trainer = make_trainer(info, name, fold=0)
        trainer.run_training()
        trainer.inference_allowed_mirroring_axes = None  # no test-time mirroring: 8x faster on the CPU
        trainer.perform_actual_validation(save_probabilities=True)
        trainers[name] = trainer
        folders[name] = tmp_path / "results" / info["name"] / f"{name}__nnUNetPlans__3d_fullres"
        val = sorted(p.name for p in (folders[name] / "fold_0" / "validation").glob("*.nii.gz"))
        splits = json.loads((info["raw"] / "splits_final.json").read_text())
        assert val == [f"{c}.nii.gz" for c in splits[0]["val"]]  # nnU-Net used our patient-wise split

    scores = evaluate_folds(folders["nnUNetTrainer_Seed001"], info["raw"])
    assert set(scores["folds"]) == {0}
    assert {"GTVp", "GTVn", "DSCagg_mean"} <= set(scores["pooled"]["aggregate"])

    ens = ensemble_folders([folders[n] / "fold_0" / "validation" for n in TRAINERS[:2]], tmp_path / "ens")
    assert ens == splits[0]["val"]
    a = np.load(folders[TRAINERS[0]] / "fold_0" / "validation" / f"{ens[0]}.npz")["probabilities"]
    b = np.load(folders[TRAINERS[1]] / "fold_0" / "validation" / f"{ens[0]}.npz")["probabilities"]
    np.testing.assert_allclose(np.load(tmp_path / "ens" / f"{ens[0]}.npz")["probabilities"], (a + b) / 2, atol=1e-6)

    best = search_min_volume(pairs_from_folds(folders["nnUNetTrainer_Seed001"], info["raw"]), (0.0, 0.5))
    assert set(best["min_volume_ml"]) == {"1", "2"}

    case = info["cohort"] / "6" / "midRT"
    for name in TRAINERS:
        out = export_nnunet(folders[name], tmp_path / "models" / name, model_id=f"test-{name.lower()}",
                            postprocess={"min_volume_ml": best["min_volume_ml"]})
        card = json.loads((out / "model.json").read_text())
        assert [i["name"] for i in card["inputs"]] == ["T2", "gradient_map"]
        assert card["inputs"][1]["derived_from"] == "T2" and card["task"] == "midrt"
        model = load_model(out)
        # the exported network computes what nnU-Net's own class computes with the checkpoint
        ckpt = torch.load(folders[name] / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert set(model.networks[0].state_dict()) == set(ckpt["network_weights"])
        trainer = trainers[name]
        ref = type(trainer).build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 2, 3,
                                                       False)
        ref.load_state_dict(ckpt["network_weights"])
        x = torch.randn(1, 2, 16, 48, 48)
        with torch.no_grad():
            torch.testing.assert_close(model.networks[0].eval()(x), ref.eval()(x))
        if name == "nnUNetTrainerV2StarStar":
            assert card["architecture"]["kwargs"]["n_conv_per_stage_decoder"] == [3, 3, 3]
        if name.startswith("STUNet"):
            assert card["architecture"] == {"name": "STUNet", "kwargs": {
                "size": "small", "pool_op_kernel_sizes": [[1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1], [1, 1, 1]]}}
        labels_path = tmp_path / f"seg_{name}.nii.gz"
        result = run_segmentation(SegmentRequest(model=str(out), input_paths={"T2": str(case / "6_midRT_T2.nii.gz")},
                                                 prior_path=str(case / "6_preRT_mask_registered.nii.gz"),
                                                 output_path=str(labels_path), task="midrt", device="cpu"))
        labels = read_image(labels_path, label=True)
        assert labels.same_grid(read_image(case / "6_midRT_T2.nii.gz"))
        assert set(np.unique(labels.array)) <= {0, 1, 2}
        assert result is not None


@pytest.mark.slow
def test_hecktor_stunet_finetune_export_segment(test_cache_dir, tmp_path, monkeypatch):
    """HECKTOR layout: fine-tune STU-Net-S from a 1-channel v2 checkpoint on CT+PET, export, segment."""
    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.networks.stunet import build_stunet
    from HNTumorSegLib.pipeline import run_segmentation
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from hntumorseg_training.crossval import evaluate_folds
    from hntumorseg_training.export import export_nnunet
    from hntumorseg_training.pretrained import ENV_PRETRAINED

    torch.set_num_threads(2)
    info = planned_dataset(test_cache_dir, layout="hecktor")
    shortened_training_env(monkeypatch, info, tmp_path / "results")
    torch.manual_seed(0)
    source = build_stunet("small", 1, 105)  # a "TotalSegmentator" checkpoint: 1 channel, 105 classes
    ckpt = tmp_path / "pretrained.pth"
    torch.save({"network_weights": source.state_dict()}, ckpt)
    monkeypatch.setenv(ENV_PRETRAINED, str(ckpt))

    trainer = make_trainer(info, "STUNetTrainer_small_ft", fold=1)
    trainer.initialize()
    assert trainer.pretrained_report["repeated"] and trainer.optimizer.param_groups[0]["lr"] == 1e-3
    trainer.run_training()
    trainer.inference_allowed_mirroring_axes = None
    trainer.perform_actual_validation(save_probabilities=False)
    folder = tmp_path / "results" / info["name"] / "STUNetTrainer_small_ft__nnUNetPlans__3d_fullres"
    assert set(evaluate_folds(folder, info["raw"])["folds"]) == {1}

    out = export_nnunet(folder, tmp_path / "model", model_id="test-petct-stunet")
    card = json.loads((out / "model.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["CT", "PET"] and card["inputs"][0]["normalisation"]["type"] == "ct"
    assert card["task"] == "petct" and card["folds"] == [1]
    case_id = sorted(p.name for p in info["cohort"].iterdir())[0]
    case = info["cohort"] / case_id
    labels_path = tmp_path / "seg.nii.gz"
    run_segmentation(SegmentRequest(model=str(out), input_paths={"CT": str(case / f"{case_id}__CT.nii.gz"),
                                                            "PET": str(case / f"{case_id}__PT.nii.gz")},
                                    output_path=str(labels_path), task="petct", device="cpu"))
    labels = read_image(labels_path, label=True)
    assert labels.same_grid(read_image(case / f"{case_id}__CT.nii.gz"))
    assert set(np.unique(labels.array)) <= {0, 1, 2}
