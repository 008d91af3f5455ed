"""Build a tiny but REAL nnU-Net v2 results folder with nnunetv2 itself, once, and cache it.

``build_tiny_nnunet_results(cache_dir) -> Path`` returns
``<cache>/tiny_nnunet_<VERSION>/nnUNet_results/Dataset987_HNTinyPETCT/nnUNetTrainer__nnUNetPlans__3d_fullres``,
a folder exactly as ``nnUNetv2_train`` leaves it (``plans.json``, ``dataset.json``,
``dataset_fingerprint.json``, ``fold_0/`` and ``fold_1/`` with ``checkpoint_final.pth`` and the
training log), made by the real pipeline:

1. 6 synthetic PET/CT training cases (``HNTumorSegLib.phantoms.make_petct_case``, 64x64 in-plane,
   2.5 x 2.5 x 8 mm: anisotropic, z/x = 3.2 > 3 so nnU-Net's separate-z resampling is used) and 2
   test cases on other grids (2.2 x 2.2 x 7 mm and 2.8 x 2.8 x 8.5 mm) in ``imagesTs``; channels
   ``CT`` (nnU-Net CT normalisation from dataset statistics) and ``PET`` (z-score), PET resampled
   onto the CT grid as nnU-Net requires; labels background/GTVp/GTVn;
2. fingerprint extraction, ``ExperimentPlanner`` (default ``nnUNetPlans``) and preprocessing of
   ``3d_fullres`` through nnunetv2's Python API; the planned network is then shrunk in the plans
   (3 stages, 8/16/32 features, patch 16x48x48, batch 2) *before* preprocessing and training,
   which is what a user editing plans.json does;
3. the stock ``nnUNetTrainer`` (so the folder name and the checkpoint's ``trainer_name`` are the
   default ones and nnUNetPredictor finds the class without ``nnUNet_extTrainer``), on the CPU,
   with 2 epochs of 4 iterations per fold (attributes set on the instance after construction),
   folds 0 and 1 of nnU-Net's own 5-fold split. The final validation pass is skipped (it is
   nnUNetv2_train's separate step and not part of a results folder's contract).

The build runs in a child Python process (nnU-Net reads its paths and process counts from the
environment at import time), takes 2-3 minutes on 2 free cores (planning builds nnU-Net's full-size candidate networks), is guarded by a file lock so
parallel test sessions build it once, and is reused while :data:`VERSION` is unchanged.

Example:
    >>> results = build_tiny_nnunet_results(Path("build/test-cache"))
    >>> cases = tiny_nnunet_test_cases(results)     # [[CT.nii.gz, PET.nii.gz], ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VERSION = "1"
DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID:03d}_HNTinyPETCT"
RESULTS_SUBDIR = "nnUNetTrainer__nnUNetPlans__3d_fullres"
N_TRAIN = 6
FOLDS = (0, 1)
TEST_SPACINGS = ((2.2, 2.2, 7.0), (2.8, 2.8, 8.5))
PATCH = [16, 48, 48]
REPO = Path(__file__).resolve().parents[1]


def _root(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"tiny_nnunet_v{VERSION}"


def nnunet_environment_at(root: Path, n_proc: int) -> dict[str, str]:
    """Environment variables pointing nnU-Net's raw/preprocessed/results folders under ``root``."""
    return {"nnUNet_raw": str(root / "nnUNet_raw"), "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
            "nnUNet_results": str(root / "nnUNet_results"), "nnUNet_n_proc_DA": str(n_proc),
            "nnUNet_def_n_proc": str(n_proc), "nnUNet_compile": "f"}


def nnunet_environment(cache_dir: Path) -> dict[str, str]:
    """Environment variables pointing nnU-Net's raw/preprocessed/results folders into the cache."""
    return nnunet_environment_at(_root(cache_dir), 2)


def build_once(root: Path, results: Path, command: list[str], env: dict[str, str],
               checkpoints: list[Path], what: str, python_path: tuple[Path, ...] = (REPO,)) -> Path:
    """Run ``command`` in a child process to build ``results`` once per cache.

    A file lock makes a parallel session wait and then reuse the folder; ``root/DONE.json``
    marks a finished build; a failed build raises with the tail of its log. Shared by the tiny
    nnU-Net fixture and the published-layout fixtures.
    """
    import fcntl

    done = root / "DONE.json"
    if done.exists():
        return results
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # a parallel session waits here, then reuses
        if done.exists():
            return results
        env = {**os.environ, **env,
               "PYTHONPATH": os.pathsep.join([*map(str, python_path), os.environ.get("PYTHONPATH", "")])}
        log = root / "build.log"
        with open(log, "w") as out:
            proc = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
        if proc.returncode != 0 or not all(c.exists() for c in checkpoints):
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"building the {what} failed (see {log}):\n{tail}")
        done.write_text(json.dumps({"results": str(results)}))
    return results


def build_tiny_nnunet_results(cache_dir: Path) -> Path:
    """Return the cached tiny results folder, building it first (child process, file lock) if needed."""
    root = _root(cache_dir)
    results = root / "nnUNet_results" / DATASET_NAME / RESULTS_SUBDIR
    return build_once(root, results, [sys.executable, str(Path(__file__).resolve()), str(cache_dir)],
                      {**nnunet_environment(cache_dir), "OMP_NUM_THREADS": "2"},
                      [results / f"fold_{f}" / "checkpoint_final.pth" for f in FOLDS], "tiny nnU-Net folder")


def tiny_nnunet_test_cases(results: Path) -> list[list[Path]]:
    """The held-out cases of the tiny dataset: ``[[case_0000.nii.gz (CT), case_0001.nii.gz (PET)], ...]``."""
    raw = Path(results).parents[2] / "nnUNet_raw" / DATASET_NAME / "imagesTs"
    ids = sorted({p.name[: -len("_0000.nii.gz")] for p in raw.glob("*_0000.nii.gz")})
    return [[raw / f"{i}_0000.nii.gz", raw / f"{i}_0001.nii.gz"] for i in ids]


# ---- the build itself (runs in the child process) -----------------------------------------
def _write_case(case_id: str, seed: int, spacing, folder_images: Path, folder_labels: Path | None) -> None:
    from HNTumorSegLib.image import resample_to, write_image
    from HNTumorSegLib.phantoms import make_petct_case

    in_plane = int(round(160 / spacing[0]))       # ~160 mm field of view in-plane
    case = make_petct_case(seed=seed, in_plane=in_plane, ct_spacing=spacing, pet_spacing=(4.0, 4.0, 4.0))
    ct = case["CT"]
    pet = resample_to(case["PET"], ct)            # nnU-Net needs all channels on one grid
    write_image(ct, folder_images / f"{case_id}_0000.nii.gz")
    write_image(pet.with_array(pet.array.astype("float32")), folder_images / f"{case_id}_0001.nii.gz")
    if folder_labels is not None:
        write_image(case["mask"], folder_labels / f"{case_id}.nii.gz")


def shrink_plans(plans_file: Path, blocks: dict, extra_configurations: dict | None = None) -> None:
    """Make the planned 3d_fullres network tiny (3 stages, 8-32 channels, patch ``PATCH``, batch 2)
    and keep only that configuration, plus ``extra_configurations``. ``blocks``: the architecture's
    own depth keys (PlainConvUNet ``n_conv_per_stage``, ResEnc ``n_blocks_per_stage``, and the decoder's)."""
    plans = json.loads(plans_file.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    cfg["patch_size"] = list(PATCH)
    cfg["batch_size"] = 2
    cfg["architecture"]["arch_kwargs"].update({
        "n_stages": 3, "features_per_stage": [8, 16, 32],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], **blocks})
    plans["configurations"] = {"3d_fullres": cfg, **(extra_configurations or {})}
    plans_file.write_text(json.dumps(plans, indent=2))


def _shrink_plans(plans_file: Path) -> None:
    """The tiny PlainConvUNet of this fixture."""
    shrink_plans(plans_file, {"n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2]})


def _build(cache_dir: Path) -> None:
    import shutil

    import torch

    torch.set_num_threads(2)
    env = nnunet_environment(cache_dir)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        shutil.rmtree(env[key], ignore_errors=True)   # a half-built earlier attempt
    raw = Path(env["nnUNet_raw"]) / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for i in range(N_TRAIN):
        _write_case(f"hnt_{i:03d}", i, (2.5, 2.5, 8.0), raw / "imagesTr", raw / "labelsTr")
    for j, spacing in enumerate(TEST_SPACINGS):
        _write_case(f"hnt_test_{j:03d}", 100 + j, spacing, raw / "imagesTs", None)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "numTraining": N_TRAIN, "file_ending": ".nii.gz", "name": "HNTinyPETCT",
        "description": "synthetic PET/CT phantoms for HNTumorSeg tests (not patient data)"}, indent=2))

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True, show_progress_bar=False)
    plans_id = plan_experiments([DATASET_ID])
    _shrink_plans(Path(env["nnUNet_preprocessed"]) / DATASET_NAME / f"{plans_id}.json")
    preprocess([DATASET_ID], plans_id, configurations=("3d_fullres",), num_processes=(2,),
               show_progress_bar=False)

    from nnunetv2.run.run_training import get_trainer_from_args

    # 0 = augment in this process (no worker processes to start and stop on 2 cores); the planner
    # above needs it > 0 because it also uses it as a torch thread count
    os.environ["nnUNet_n_proc_DA"] = "0"

    for fold in FOLDS:
        torch.manual_seed(fold)
        trainer = get_trainer_from_args(str(DATASET_ID), "3d_fullres", fold, "nnUNetTrainer", plans_id,
                                        device=torch.device("cpu"))
        # why on the instance: the stock class keeps its name, so the folder is a default-trainer folder
        # 2 x 4 iterations: the weights only need to be real trained weights, not good ones (a
        # training step of even this tiny network takes ~1 s on one free CPU core)
        trainer.num_epochs = 2
        trainer.num_iterations_per_epoch = 4
        trainer.num_val_iterations_per_epoch = 1
        trainer.run_training()


if __name__ == "__main__":
    _build(Path(sys.argv[1]))
