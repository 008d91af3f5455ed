"""Seed 004's STU-Net-S training recipe as its authors released it: ``STUNetTrainer_small_MEDAI``.

Seed 004 (team MEDAI, HECKTOR 2025, first in segmentation) trained STU-Net-S with their fork of
STU-Net/nnU-Net 2.2 (Liiiii2101/HECKTOR2025-MEDAI, ``STU-Net/nnunetv2/training/nnUNetTrainer/``).
Their fork changes nnU-Net's base trainer, so these settings, not upstream STU-Net's, produced
the published weights and scores:

| setting | upstream STU-Net (``STUNetTrainer_small``) | MEDAI fork (this trainer) |
|---|---|---|
| initial learning rate | 1e-2 | **1e-4** (``nnUNetTrainer.initial_lr`` and ``STUNetTrainer.initial_lr``) |
| weight decay | 3e-5 | **1e-3** |
| deep supervision | on, weights 0.5**i | **off** (``enable_deep_supervision = False``; when switched on their ``_build_loss`` sets the weights to [1, 0, 0, ...]) |
| folds | nnU-Net's 5-fold split | **10 folds** (the paper's final ensemble) |

Unchanged: SGD nesterov momentum 0.99, poly schedule, 1000 epochs x 250 iterations, the
STU-Net-S network (:func:`HNTumorSegLib.networks.stunet.build_stunet`).

Deep supervision off and weights [1, 0, ...] give the same loss; off also skips the four
low-resolution heads' outputs, so the network returns one tensor (as the fork's does).
``DS_WEIGHTS`` records the equivalent weights for reports.

*Folds.* The fork creates nnU-Net's seeded 5-fold split when ``splits_final.json`` is missing;
the 10-fold split behind the paper's final ensemble is not published. **Choice**: when no
``splits_final.json`` exists, this trainer writes nnU-Net's own generator with 10 folds
(``generate_crossval_split(sorted case ids, seed=12345, n_splits=10)``), the split the fork's
code makes when asked for 10; a ``splits_final.json`` already in place (e.g. written by
``python -m hntumorseg_training split --folds 10``) is used as it is.

Example:
    $ nnUNet_extTrainer=training/hntumorseg_training/nnunet_trainers \\
      nnUNetv2_train 504 3d_fullres 0 -tr STUNetTrainer_small_MEDAI      # folds 0..9
"""

from __future__ import annotations

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, save_json
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.crossval_split import generate_crossval_split

from HNTumorSegLib.networks.stunet import build_stunet
from hntumorseg_training.nnunet_common import ShortRunMixin

MEDAI_LR = 1e-4
MEDAI_WEIGHT_DECAY = 1e-3
MEDAI_FOLDS = 10
MEDAI_SPLIT_SEED = 12345


class STUNetTrainer_small_MEDAI(ShortRunMixin, nnUNetTrainer):
    """STU-Net-S with seed 004's released settings (module docstring): lr 1e-4, wd 1e-3, no deep supervision."""

    SIZE = "small"
    DS_WEIGHTS_NOTE = "deep supervision off == weights [1, 0, 0, ...]"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = MEDAI_LR
        self.weight_decay = MEDAI_WEIGHT_DECAY
        self.num_epochs = 1000
        self.enable_deep_supervision = False
        self.apply_run_length_overrides()

    @property
    def DS_WEIGHTS(self) -> list[float]:  # noqa: N802 - reads like the constant it is
        """The deep-supervision weights this recipe amounts to: 1 on the full-resolution output, 0 elsewhere."""
        return [1.0, 0.0, 0.0, 0.0, 0.0]

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = False):
        return build_stunet("small", num_input_channels, num_output_channels,
                            pool_op_kernel_sizes=configuration_manager.pool_op_kernel_sizes,
                            deep_supervision=enable_deep_supervision)

    def do_split(self):
        if self.fold != "all":
            splits_file = join(self.preprocessed_dataset_folder_base, "splits_final.json")
            if not isfile(splits_file):
                if self.dataset_class is None:
                    self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
                ids = sorted(self.dataset_class.get_identifiers(self.preprocessed_dataset_folder))
                self.print_to_log_file(f"Creating seed 004's {MEDAI_FOLDS}-fold split (seed {MEDAI_SPLIT_SEED})")
                save_json(generate_crossval_split(ids, seed=MEDAI_SPLIT_SEED, n_splits=MEDAI_FOLDS), splits_file)
        return super().do_split()
