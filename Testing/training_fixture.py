"""A tiny planned + preprocessed nnU-Net v2 dataset made by hntumorseg_training's converter, cached.

``planned_dataset(cache_dir) -> dict`` returns nnU-Net's three folders (``env``), the dataset
name, id and raw folder. Made once (file lock) from 6 synthetic HNTS-MRG patients
(``write_hntsmrg_cohort``) converted for task 2 (mid-RT T2 + gradient map, pre-RT extras),
fingerprinted, planned with nnU-Net's default planner and then shrunk (4 stages, 8/16/32/32
features, patch 16x48x48, batch 2 - what a user editing plans.json does) and preprocessed.
nnU-Net reads its folders from the environment lazily (2.8's ``_EnvPath``), so tests point
``os.environ`` at them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

VERSION = "2"
DATASET_ID = 951
N_PATIENTS = 6
PATCH = [16, 48, 48]


def nnunet_env(root: Path) -> dict[str, str]:
    return {"nnUNet_raw": str(root / "nnUNet_raw"), "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
            "nnUNet_results": str(root / "nnUNet_results"), "nnUNet_n_proc_DA": "0",
            "nnUNet_def_n_proc": "1", "nnUNet_compile": "f",
            "nnUNet_extTrainer": str(Path(__file__).resolve().parents[1] / "training" / "hntumorseg_training"
                                     / "nnunet_trainers")}


def shrink_plans(plans_file: Path, patch=PATCH) -> None:
    plans = json.loads(plans_file.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    cfg["patch_size"] = list(patch)
    cfg["batch_size"] = 2
    cfg["architecture"]["arch_kwargs"].update({
        "n_stages": 4, "features_per_stage": [8, 16, 32, 32],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]], "n_conv_per_stage": [2, 2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2, 2]})
    plans["configurations"] = {"3d_fullres": cfg}
    plans_file.write_text(json.dumps(plans, indent=2))


def plan_and_preprocess(dataset_id: int) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    os.environ["nnUNet_n_proc_DA"] = "1"  # the planner also uses it as a torch thread count (> 0)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
    plans_id = plan_experiments([dataset_id])
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    name = convert_id_to_dataset_name(dataset_id)
    shrink_plans(Path(os.environ["nnUNet_preprocessed"]) / name / f"{plans_id}.json")
    preprocess([dataset_id], plans_id, configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    os.environ["nnUNet_n_proc_DA"] = "0"  # training: augment in-process (no worker processes on 2 cores)


def planned_dataset(cache_dir: Path, layout: str = "hntsmrg") -> dict:
    """Build (once) and describe a tiny planned dataset (``os.environ`` is restored afterwards: set
    ``info["env"]`` with monkeypatch in the test).

    ``layout="hntsmrg"``: 6 HNTS-MRG patients, task 2 (mid-RT + gradient map + pre-RT extras), 3 folds;
    ``layout="hecktor"``: 6 HECKTOR PET/CT cases (CT + PET on the CT grid), 3 folds.
    """
    dataset_id = DATASET_ID if layout == "hntsmrg" else DATASET_ID + 1
    root = Path(cache_dir).resolve() / f"training_planned_{layout}_v{VERSION}"
    env = nnunet_env(root)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        _build_once(root, env, layout, dataset_id)
    finally:  # never leak nnU-Net's variables into other engineers' tests
        os.environ.clear()
        os.environ.update(saved)
    raw = Path(json.loads((root / "DONE.json").read_text())["raw"])
    return {"env": env, "root": root, "raw": raw, "name": raw.name, "id": dataset_id, "cohort": root / "cohort"}


def _build_once(root: Path, env: dict, layout: str, dataset_id: int) -> None:
    import fcntl

    from HNTumorSegLib.phantoms import write_hecktor_cohort, write_hntsmrg_cohort
    from hntumorseg_training.converters import (convert_hecktor, convert_hntsmrg, install_splits,
                                                write_dataset_splits)

    done = root / "DONE.json"
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"training_planned_{layout}_v{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            import shutil

            for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
                shutil.rmtree(env[key], ignore_errors=True)
            cohort = root / "cohort"
            shutil.rmtree(cohort, ignore_errors=True)
            if layout == "hntsmrg":
                write_hntsmrg_cohort(cohort, N_PATIENTS, seed=3, shape=(20, 64, 64), spacing=(1.4, 1.4, 3.0))
                raw = convert_hntsmrg(cohort, env["nnUNet_raw"], dataset_id, task="midrt", name="TinyMidRT")
            else:
                write_hecktor_cohort(cohort, N_PATIENTS, seed=4, in_plane=48, ct_spacing=(3.5, 3.5, 8.0),
                                     pet_spacing=(5.0, 5.0, 5.0))
                raw = convert_hecktor(cohort, env["nnUNet_raw"], dataset_id, name="TinyPETCT")
            write_dataset_splits(raw, n_folds=3, seed=1)
            plan_and_preprocess(dataset_id)
            install_splits(raw, env["nnUNet_preprocessed"])
            done.write_text(json.dumps({"raw": str(raw)}))


def make_trainer(info: dict, trainer_name: str, fold: int = 0):
    """An instance of ``trainer_name`` (found through nnUNet_extTrainer, as nnUNetv2_train does) on the CPU."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    return get_trainer_from_args(str(info["id"]), "3d_fullres", fold, trainer_name, "nnUNetPlans",
                                 device=torch.device("cpu"))
