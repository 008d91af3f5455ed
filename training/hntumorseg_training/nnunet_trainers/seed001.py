"""Seed 001's nnU-Net v2 trainer: heavier Dice, stronger augmentation, high-resolution deep supervision.

``nnUNetTrainer_Seed001`` (``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainer_Seed001``
with ``nnUNet_extTrainer`` pointing to this folder) changes, relative to nnUNetTrainer:

* loss: Dice weight 1.5, cross-entropy weight 0.5 (nnU-Net: 1 and 1);
* rotation probability 0.3 (0.2) in the SpatialTransform, angles unchanged;
* Gaussian noise variance (0, 0.2) (0, 0.1), applied with probability 0.15 (0.1);
* low-resolution simulation zoom (0.7, 1) (0.5, 1), probability 0.3 (0.25);
* deep-supervision weights: the seed says only "higher weights to high-resolution outputs".
  **Choice**: ``w_i = 0.25**i`` (nnU-Net: ``0.5**i``), lowest output 0, normalised; with 5
  outputs this gives 0.753 / 0.188 / 0.047 / 0.012 / 0 instead of 0.533 / 0.267 / 0.133 /
  0.067 / 0, i.e. the full-resolution output carries three quarters of the loss.

Everything else (SGD 0.99 nesterov, lr 1e-2 poly, wd 3e-5, 1000 epochs x 250 iterations) is
nnU-Net's default, as in the seed. ``HNTUMORSEG_NUM_EPOCHS`` etc. shorten a run
(:mod:`hntumorseg_training.nnunet_common`).
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from hntumorseg_training.nnunet_common import ShortRunMixin, deep_supervision_weights, walk_transforms

DICE_WEIGHT = 1.5
CE_WEIGHT = 0.5
ROTATION_P = 0.3
NOISE_VARIANCE = (0.0, 0.2)
NOISE_P = 0.15
LOWRES_SCALE = (0.7, 1.0)
LOWRES_P = 0.3
DS_DECAY = 0.25


class nnUNetTrainer_Seed001(ShortRunMixin, nnUNetTrainer):
    """nnUNetTrainer with seed 001's loss weights and augmentation (module docstring)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_run_length_overrides()

    def _build_loss(self):
        if self.label_manager.has_regions:  # seed 001 is a softmax task; regions keep nnU-Net's loss
            return super()._build_loss()
        loss = DC_and_CE_loss({"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5,
                               "do_bg": False, "ddp": self.is_ddp}, {}, weight_ce=CE_WEIGHT,
                              weight_dice=DICE_WEIGHT, ignore_label=self.label_manager.ignore_label,
                              dice_class=MemoryEfficientSoftDiceLoss)
        if self._do_i_compile():
            loss.dc = torch.compile(loss.dc)
        if self.enable_deep_supervision:
            n = len(self._get_deep_supervision_scales())
            loss = DeepSupervisionWrapper(loss, deep_supervision_weights(
                n, DS_DECAY, ddp=self.is_ddp and not self._do_i_compile()))
        return loss

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
        from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
        from batchgeneratorsv2.transforms.utils.random import RandomTransform

        pipeline = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label)
        # Edit nnU-Net's own pipeline in place rather than copy it: every other augmentation stays
        # exactly as the installed nnU-Net version defines it.
        changed = set()
        for t in walk_transforms(pipeline):
            if isinstance(t, SpatialTransform):
                t.p_rotation = ROTATION_P
                changed.add("rotation")
            elif isinstance(t, RandomTransform) and isinstance(t.transform, GaussianNoiseTransform):
                t.apply_probability = NOISE_P
                t.transform.noise_variance = NOISE_VARIANCE
                changed.add("noise")
            elif isinstance(t, RandomTransform) and isinstance(t.transform, SimulateLowResolutionTransform):
                t.apply_probability = LOWRES_P
                t.transform.scale = LOWRES_SCALE
                changed.add("lowres")
        missing = {"rotation", "noise", "lowres"} - changed
        if missing:  # a future nnU-Net reorganised its pipeline: fail loudly, never train silently unchanged
            raise RuntimeError(f"nnUNetTrainer_Seed001: nnU-Net's training pipeline has no {sorted(missing)} "
                               "transform to adjust; update hntumorseg_training for this nnU-Net version")
        return pipeline
