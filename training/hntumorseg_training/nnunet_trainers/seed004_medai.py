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

*Folds* (issue 28 item 4). The fork's ``do_split`` hard-codes ``n_splits=5`` when it writes
``splits_final.json``, and a fold beyond the file's folds gets a random (seeded) 80:20 split: so
asked for 10 folds, the fork trains folds 0-4 on nnU-Net's 5-fold KFold (seed 12345) and folds
5-9 on random 80:20 splits (``RandomState(12345 + fold)``) that overlap each other and the first
five. The paper's 10-fold ensemble split itself is not published. When no ``splits_final.json``
exists this trainer writes :data:`SPLIT` of
:func:`hntumorseg_training.crossval.make_case_splits` with 10 folds: **``kfold`` by default**
(nnU-Net's own ``generate_crossval_split(sorted ids, seed=12345, n_splits=10)``, a true 10-fold
split in which every case is validated once, which pooled CV scores and the clean-up threshold
search need); ``STUNetTrainer_small_MEDAI_releasedsplit`` writes the fork's split as it runs
(``medai-released``; fold-0 validation of the two overlaps by about half). A
``splits_final.json`` already in place (e.g. ``python -m hntumorseg_training splits --folds 10
[--split medai-released]``) is used as it is.

Example:
    $ nnUNet_extTrainer=training/hntumorseg_training/nnunet_trainers \\
      nnUNetv2_train 504 3d_fullres 0 -tr STUNetTrainer_small_MEDAI      # folds 0..9
"""

from __future__ import annotations

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, save_json
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from HNTumorSegLib.networks.stunet import build_stunet
from HNTumorSegLib.vocab import SplitScheme
from hntumorseg_training.crossval import SPLIT_SEED, make_case_splits
from hntumorseg_training.nnunet_common import ShortRunMixin

MEDAI_LR = 1e-4
MEDAI_WEIGHT_DECAY = 1e-3
MEDAI_FOLDS = 10
MEDAI_SPLIT_SEED = SPLIT_SEED
#: the fold scheme written when no splits_final.json exists (module docstring)
MEDAI_SPLIT = SplitScheme.KFOLD


class STUNetTrainer_small_MEDAI(ShortRunMixin, nnUNetTrainer):
    """STU-Net-S with seed 004's released settings (module docstring): lr 1e-4, wd 1e-3, no deep supervision."""

    SIZE = "small"
    SPLIT = MEDAI_SPLIT
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
                self.print_to_log_file(f"Creating seed 004's {MEDAI_FOLDS}-fold split "
                                       f"({SplitScheme.parse(self.SPLIT).value}, seed {MEDAI_SPLIT_SEED})")
                save_json(make_case_splits(ids, MEDAI_FOLDS, self.SPLIT, MEDAI_SPLIT_SEED), splits_file)
        return super().do_split()


class STUNetTrainer_small_MEDAI_releasedsplit(STUNetTrainer_small_MEDAI):
    """As :class:`STUNetTrainer_small_MEDAI`, writing the fork's split as it runs (``medai-released``) when none exists."""

    SPLIT = SplitScheme.MEDAI_RELEASED
