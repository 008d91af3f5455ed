"""STU-Net trainers for nnU-Net 2.8: ``STUNetTrainer_{small,base,large,huge}`` and their ``_ft`` versions.

The official trainers (uni-medical/STU-Net) target nnU-Net 2.2's
``build_network_architecture(plans_manager, dataset_json, configuration_manager, ...)`` and
break on 2.8. These implement 2.8's static signature ``(plans_manager, configuration_manager,
num_input_channels, num_output_channels, enable_deep_supervision)`` with
:func:`HNTumorSegLib.networks.stunet.build_stunet` (module names equal to the official ones,
so official checkpoints load and HNTumorSeg loads the results folders as they are). The class
names are the official ones, which is how HNTumorSeg's loader recognises STU-Net folders.

* strides: the plan's ``pool_op_kernel_sizes[1:]`` cut/padded to five (official rule); the
  deep-supervision scales follow the same five strides (nnU-Net's default would follow the
  plan's stage count and mismatch the five STU-Net heads);
* from scratch (``STUNetTrainer_<size>``): SGD nesterov 0.99, wd 3e-5, lr 1e-2 poly, 1000 epochs;
* fine-tuning (``STUNetTrainer_<size>_ft``, seed 000's protocol, Table 1): the same with lr
  1e-3, starting from the official pre-trained checkpoint named by the environment variable
  ``HNTUMORSEG_PRETRAINED`` (loaded by :mod:`hntumorseg_training.pretrained`: heads dropped,
  input convolutions repeated over the channels). nnU-Net's own ``-pretrained_weights`` cannot
  be used: it requires nnU-Net's head names and equal input channels. Without the variable an
  ``_ft`` trainer refuses to start (a silent from-scratch run would mislabel the model).

``STUNetTrainer`` (no size) is the official name of the base trainer.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.networks.stunet import build_stunet, stunet_strides
from hntumorseg_training.nnunet_common import ShortRunMixin
from hntumorseg_training.pretrained import ENV_PRETRAINED, load_pretrained_stunet

FT_LR = 1e-3
SCRATCH_LR = 1e-2


class _STUNetTrainerBase(ShortRunMixin, nnUNetTrainer):
    SIZE = "base"
    FINE_TUNE = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = FT_LR if self.FINE_TUNE else SCRATCH_LR
        self.weight_decay = 3e-5
        self.num_epochs = 1000
        self.pretrained_report: dict | None = None
        self.apply_run_length_overrides()

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        strides = [[1, 1, 1]] + stunet_strides(self.configuration_manager.pool_op_kernel_sizes)
        return [list(s) for s in 1 / np.cumprod(np.vstack(strides), axis=0)][:-1]

    def initialize(self):
        was = self.was_initialized
        if self.FINE_TUNE and not was:
            path = os.environ.get(ENV_PRETRAINED, "").strip()
            if not path:
                raise InputError(f"{type(self).__name__} fine-tunes a pre-trained STU-Net but "
                                 f"{ENV_PRETRAINED} is not set", None,
                                 f"export {ENV_PRETRAINED}=/path/to/{self.SIZE}_ep4k.model, or train "
                                 f"STUNetTrainer_{self.SIZE} from scratch")
            if not os.path.isfile(path):
                raise InputError("pre-trained STU-Net checkpoint not found", path, f"fix {ENV_PRETRAINED}")
        super().initialize()
        if self.FINE_TUNE and not was:
            self.pretrained_report = load_pretrained_stunet(self.network, os.environ[ENV_PRETRAINED].strip())
            self.print_to_log_file(f"loaded pre-trained STU-Net weights from {os.environ[ENV_PRETRAINED]}: "
                                   f"{self.pretrained_report['loaded']} tensors, input convolutions repeated: "
                                   f"{self.pretrained_report['repeated']}")


def _make(size: str, fine_tune: bool, name: str):
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_stunet(size, num_input_channels, num_output_channels,
                            pool_op_kernel_sizes=configuration_manager.pool_op_kernel_sizes,
                            deep_supervision=enable_deep_supervision)

    cls = type(name, (_STUNetTrainerBase,), {
        "SIZE": size, "FINE_TUNE": fine_tune, "__module__": __name__,
        "build_network_architecture": staticmethod(build_network_architecture),
        "__doc__": f"STU-Net-{size[0].upper()} ({size}) {'fine-tuning (lr 1e-3)' if fine_tune else 'from scratch'}."})
    return cls


STUNetTrainer_small = _make("small", False, "STUNetTrainer_small")
STUNetTrainer_small_ft = _make("small", True, "STUNetTrainer_small_ft")
STUNetTrainer_base = _make("base", False, "STUNetTrainer_base")
STUNetTrainer_base_ft = _make("base", True, "STUNetTrainer_base_ft")
STUNetTrainer_large = _make("large", False, "STUNetTrainer_large")
STUNetTrainer_large_ft = _make("large", True, "STUNetTrainer_large_ft")
STUNetTrainer_huge = _make("huge", False, "STUNetTrainer_huge")
STUNetTrainer_huge_ft = _make("huge", True, "STUNetTrainer_huge_ft")
STUNetTrainer = _make("base", False, "STUNetTrainer")
