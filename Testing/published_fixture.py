"""A tiny REAL nnU-Net v2 results folder in GradientSegHNTS's released layout, trained once with nnunetv2, cached.

``build_gradientseg_results(cache_dir) -> Path`` returns
``<cache>/gradientseg_nnunet_v<VERSION>/nnUNet_results/Dataset988_HNTinyGradSeg/nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres_bs8``:

* seed 003's released layout: plans ``nnUNetResEncUNetMPlans`` made by nnunetv2's own
  ``nnUNetPlannerResEncM`` (residual encoder U-Net), a ``3d_fullres_bs8`` configuration that only
  says ``{"inherits_from": "3d_fullres", "batch_size": 8}`` (as the authors' plans), the stock
  ``nnUNetTrainer``, ``dataset.json`` channels ``{"0": "T2", "1": "gradient"}`` (the authors'
  Dataset504_midRT_geodist);
* data: 6 synthetic mid-RT T2 phantoms (``make_midrt_case``, 24 x 64 x 64 at 0.9 x 0.9 x 3 mm)
  with the gradient channel of the registered pre-RT mask (HNTumorSeg's ``gradient_map``,
  margin 4), label = the mid-RT mask;
* the planned network shrunk in the plans before preprocessing (3 stages, 8/16/32 features,
  1 block per encoder stage, patch 16 x 48 x 48), what a user editing plans.json does;
* fold 0 trained on the CPU for 2 epochs x 4 iterations (attributes set on the instance).

Built in a child process (nnU-Net reads its folders from the environment), under a file lock.

Example:
    >>> folder = build_gradientseg_results(Path("build/test-cache"))
    >>> cases = gradientseg_test_cases(folder)   # [{"T2": path, "prior": path}, ...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from nnunet_fixture import build_once, nnunet_environment_at, shrink_plans  # noqa: E402 - Testing/ is on sys.path (conftest, or this file run as a script)

VERSION = "1"
DATASET_ID = 988
DATASET_NAME = f"Dataset{DATASET_ID:03d}_HNTinyGradSeg"
PLANS = "nnUNetResEncUNetMPlans"
CONFIGURATION = "3d_fullres_bs8"
RESULTS_SUBDIR = f"nnUNetTrainer__{PLANS}__{CONFIGURATION}"
N_TRAIN = 6
PATCH = [16, 48, 48]
SHAPE = (24, 64, 64)
REPO = Path(__file__).resolve().parents[1]


def _root(cache_dir: Path) -> Path:
    return Path(cache_dir).resolve() / f"gradientseg_nnunet_v{VERSION}"


def nnunet_environment(cache_dir: Path) -> dict[str, str]:
    return nnunet_environment_at(_root(cache_dir), 1)


def build_gradientseg_results(cache_dir: Path) -> Path:
    """The cached results folder, built first (child process, file lock) when absent."""
    root = _root(cache_dir)
    results = root / "nnUNet_results" / DATASET_NAME / RESULTS_SUBDIR
    return build_once(root, results, [sys.executable, str(Path(__file__).resolve()), str(cache_dir)],
                      {**nnunet_environment(cache_dir), "OMP_NUM_THREADS": "1"},
                      [results / "fold_0" / "checkpoint_final.pth"], "GradientSegHNTS-layout folder")


def gradientseg_test_cases(results: Path) -> list[dict[str, Path]]:
    """Held-out cases: ``[{"T2": mid-RT T2, "prior": registered pre-RT mask, "label": mid-RT mask}]``."""
    test = Path(results).parents[2] / "test_cases"
    return [{"T2": d / "T2.nii.gz", "prior": d / "prior.nii.gz", "label": d / "label.nii.gz"}
            for d in sorted(p for p in test.iterdir() if p.is_dir())]


# ---- the build itself (child process) -------------------------------------------------------
def _write_case(seed: int, images: Path, labels: Path | None, case_id: str, test_dir: Path | None) -> None:
    from HNTumorSegLib.image import write_image
    from HNTumorSegLib.phantoms import make_midrt_case
    from HNTumorSegLib.prompts.boxes import boxes_from_mask
    from HNTumorSegLib.prompts.gradient_map import gradient_map

    case = make_midrt_case(seed=seed, shape=SHAPE)
    t2, prior = case["midRT_T2"], case["preRT_mask_registered"]
    if test_dir is not None:
        test_dir.mkdir(parents=True, exist_ok=True)
        write_image(t2, test_dir / "T2.nii.gz")
        write_image(prior, test_dir / "prior.nii.gz")
        write_image(case["midRT_mask"], test_dir / "label.nii.gz")
        return
    grad = gradient_map(t2, boxes_from_mask(prior, margin_vox=4))
    write_image(t2, images / f"{case_id}_0000.nii.gz")
    write_image(grad, images / f"{case_id}_0001.nii.gz")
    write_image(case["midRT_mask"], labels / f"{case_id}.nii.gz")


def _released_layout(plans_file: Path) -> None:
    """Shrink the ResEnc M network and add seed 003's ``3d_fullres_bs8`` (inherits ``3d_fullres``)."""
    shrink_plans(plans_file, {"n_blocks_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1]},
                 {CONFIGURATION: {"inherits_from": "3d_fullres", "batch_size": 8}})


def _build(cache_dir: Path) -> None:
    import shutil

    import torch

    torch.set_num_threads(1)
    env = nnunet_environment(cache_dir)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        shutil.rmtree(env[key], ignore_errors=True)
    raw = Path(env["nnUNet_raw"]) / DATASET_NAME
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for i in range(N_TRAIN):
        _write_case(i, raw / "imagesTr", raw / "labelsTr", f"grad_{i:03d}", None)
    for j in range(2):
        _write_case(100 + j, raw, None, "", _root(cache_dir) / "test_cases" / f"case_{j}")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2", "1": "gradient"}, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "numTraining": N_TRAIN, "file_ending": ".nii.gz", "name": "HNTinyGradSeg",
        "description": "synthetic mid-RT phantoms in GradientSegHNTS's layout (not patient data)"}, indent=2))

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
    plans_id = plan_experiments([DATASET_ID], experiment_planner_class_name="nnUNetPlannerResEncM")
    assert plans_id == PLANS, plans_id
    _released_layout(Path(env["nnUNet_preprocessed"]) / DATASET_NAME / f"{plans_id}.json")
    preprocess([DATASET_ID], plans_id, configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)

    from nnunetv2.run.run_training import get_trainer_from_args

    os.environ["nnUNet_n_proc_DA"] = "0"
    torch.manual_seed(0)
    trainer = get_trainer_from_args(str(DATASET_ID), CONFIGURATION, 0, "nnUNetTrainer", plans_id,
                                    device=torch.device("cpu"))
    trainer.num_epochs = 2
    trainer.num_iterations_per_epoch = 4
    trainer.num_val_iterations_per_epoch = 1
    trainer.run_training()


if __name__ == "__main__":
    _build(Path(sys.argv[1]))


# ---- a STU-Net-S folder (seed 004's trainer) on the tiny PET/CT dataset ------------------------------
STUNET_VERSION = "1"
STUNET_SUBDIR = "STUNetTrainer_small__nnUNetPlans__3d_fullres"
EXT_TRAINERS = REPO / "training" / "hntumorseg_training" / "nnunet_trainers"


def build_stunet_small_results(cache_dir: Path) -> Path:
    """A REAL ``STUNetTrainer_small__nnUNetPlans__3d_fullres`` folder (fold 0), trained by nnunetv2 with the
    project's STU-Net trainer (``nnUNet_extTrainer``) for 2 x 4 iterations on the tiny PET/CT dataset of
    :mod:`nnunet_fixture` (its raw and preprocessed data are only read). Cached under the test cache."""
    from nnunet_fixture import DATASET_NAME as PETCT_DATASET, build_tiny_nnunet_results, nnunet_environment as petct_env

    build_tiny_nnunet_results(Path(cache_dir))
    root = Path(cache_dir).resolve() / f"stunet_small_v{STUNET_VERSION}"
    results = root / "nnUNet_results" / PETCT_DATASET / STUNET_SUBDIR
    env = {**petct_env(Path(cache_dir)), "nnUNet_results": str(root / "nnUNet_results"),
           "nnUNet_extTrainer": str(EXT_TRAINERS), "nnUNet_n_proc_DA": "0", "OMP_NUM_THREADS": "1"}
    code = ("import torch; torch.set_num_threads(1); torch.manual_seed(0)\n"
            "from nnunetv2.run.run_training import get_trainer_from_args\n"
            "t = get_trainer_from_args('987', '3d_fullres', 0, 'STUNetTrainer_small', 'nnUNetPlans', "
            "device=torch.device('cpu'))\n"
            "t.num_epochs = 2; t.num_iterations_per_epoch = 4; t.num_val_iterations_per_epoch = 1\n"
            "t.run_training()\n")
    return build_once(root, results, [sys.executable, "-c", code], env, [results / "fold_0" / "checkpoint_final.pth"],
                      "STU-Net-S folder", python_path=(REPO, REPO / "training"))
