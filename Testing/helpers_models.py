"""Builders of real-format model folders for the models/networks tests.

``make_nnunet_folder`` writes an nnU-Net v2 results folder the way nnU-Net writes one:
plans.json in nnunetv2's format (or the older one the published STU-Net folders use),
dataset.json, and ``fold_k/checkpoint_final.pth`` saved by nnunetv2's own
``nnUNetTrainer.save_checkpoint`` (the trainer object is real; only its network is set
by the trainer's ``build_network_architecture``, and its logger holds numpy values as
after real epochs), so the checkpoint holds exactly what a trained one holds.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np

CT_PROPS = {"max": 3123.4, "mean": 37.3, "median": 41.7, "min": -1225.8,
            "percentile_00_5": -135.3, "percentile_99_5": 161.1, "std": 45.6}
PET_PROPS = {"max": 44.1, "mean": 6.3, "median": 5.3, "min": -0.39,
             "percentile_00_5": 0.81, "percentile_99_5": 22.7, "std": 4.2}
#: 6 stages, anisotropic first downsampling (3 mm z, 1 mm in-plane), patch 32x64x64.
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
PATCH = [32, 64, 64]


def dataset_json(channels=("CT", "PET")) -> dict:
    return {"channel_names": {str(i): c for i, c in enumerate(channels)},
            "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
            "numTraining": 4, "file_ending": ".nii.gz", "name": "Dataset901_Tiny",
            "licence": "CC-BY 4.0 (test)", "reference": "test fixture"}


def plans(network_class: str = "PlainConvUNet", n_channels: int = 2, old_format: bool = False) -> dict:
    """A complete plans.json for one 3d_fullres configuration (nnunetv2 2.8 format unless old)."""
    n_stages = len(STRIDES)
    features = [min(8 * 2 ** i, 64) for i in range(n_stages)]
    conf = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": PATCH, "median_image_size_in_voxels": [40.0, 80.0, 80.0],
        "spacing": [3.0, 1.0, 1.0],
        "normalization_schemes": ["CTNormalization", "ZScoreNormalization"][:n_channels],
        "use_mask_for_norm": [False] * n_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "batch_dice": True,
    }
    kernels = [[1, 3, 3]] + [[3, 3, 3]] * (n_stages - 1)
    if old_format:
        conf.update({"UNet_class_name": network_class, "UNet_base_num_features": 8,
                     "n_conv_per_stage_encoder": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                     "num_pool_per_axis": [3, 5, 5], "pool_op_kernel_sizes": STRIDES,
                     "conv_kernel_sizes": kernels, "unet_max_num_features": 64})
    else:
        residual = network_class == "ResidualEncoderUNet"
        arch_kwargs = {
            "n_stages": n_stages, "features_per_stage": features,
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": kernels, "strides": STRIDES,
            ("n_blocks_per_stage" if residual else "n_conv_per_stage"): ([1, 3, 4, 6, 6, 6] if residual else [2] * n_stages),
            "n_conv_per_stage_decoder": [1 if residual else 2] * (n_stages - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        }
        module = "residual_unet" if residual else "unet"
        conf["architecture"] = {
            "network_class_name": f"dynamic_network_architectures.architectures.{module}.{network_class}",
            "arch_kwargs": arch_kwargs, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    return {
        "dataset_name": "Dataset901_Tiny", "plans_name": "nnUNetResEncUNetMPlans" if network_class ==
        "ResidualEncoderUNet" else "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 1.0, 1.0],
        "original_median_shape_after_transp": [40, 80, 80], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": conf}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": CT_PROPS, "1": PET_PROPS},
    }


def _trainer_class(trainer_name: str):
    """nnUNetTrainer itself, a subclass named like an official STU-Net trainer, or a custom one."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if trainer_name == "nnUNetTrainer":
        return nnUNetTrainer
    from HNTumorSegLib.models.nnunet_folder import stunet_size
    from HNTumorSegLib.networks.stunet import build_stunet

    size = stunet_size(trainer_name)
    if size is None:  # a custom trainer that only changes training: nnU-Net's default network
        return type(trainer_name, (nnUNetTrainer,), {})

    def build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        return build_stunet(size, num_input_channels, num_output_channels,
                            pool_op_kernel_sizes=configuration_manager.pool_op_kernel_sizes,
                            deep_supervision=enable_deep_supervision)

    # the class name is what nnU-Net writes into checkpoint['trainer_name']
    return type(trainer_name, (nnUNetTrainer,), {"build_network_architecture": staticmethod(build_network_architecture)})


def make_nnunet_folder(root: Path, trainer_name: str = "STUNetTrainer_small", folds=(0,),
                       network_class: str = "PlainConvUNet", old_format: bool = False,
                       checkpoint_name: str = "checkpoint_final.pth", seed: int = 0) -> Path:
    """Write ``root/<Dataset>/<trainer>__<plans>__3d_fullres`` with one checkpoint per fold."""
    import torch

    os.environ["nnUNet_results"] = str(root / "nnunet_results_tmp")
    p = plans(network_class, old_format=old_format)
    dj = dataset_json()
    folder = root / f"{trainer_name}__{p['plans_name']}__3d_fullres"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(p, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dj, indent=2))
    cls = _trainer_class(trainer_name)
    for fold in folds:
        torch.manual_seed(seed + int(fold))
        trainer_plans = copy.deepcopy(p)
        trainer_plans["continue_training"] = False  # run_training adds this key before building the trainer
        trainer = cls(trainer_plans, "3d_fullres", fold, dj, device=torch.device("cpu"))
        trainer.network = cls.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                         2, trainer.label_manager.num_segmentation_heads, True)
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        # one epoch of logging, with the numpy values real training produces
        log = trainer.logger
        log.log("mean_fg_dice", np.float64(0.61), 0)  # also logs ema_fg_dice
        log.log("dice_per_class_or_region", [np.float64(0.7), np.float64(0.52)], 0)
        log.log("train_losses", np.float32(-0.42), 0)
        log.log("val_losses", np.float32(-0.40), 0)
        log.log("lrs", 0.00999, 0)
        log.log("epoch_start_timestamps", 1700000000.0, 0)
        log.log("epoch_end_timestamps", 1700000100.5, 0)
        trainer._best_ema = np.float64(0.55)
        fold_dir = folder / f"fold_{fold}"
        fold_dir.mkdir(exist_ok=True)
        trainer.save_checkpoint(str(fold_dir / checkpoint_name))
    return folder
