"""Seed 000's deeper nnU-Net v2 variants: v2* (3 convolutions per encoder stage) and v2** (also decoder).

* ``nnUNetTrainerV2Star``: ``n_conv_per_stage`` = 3 in every encoder stage (nnU-Net: 2);
* ``nnUNetTrainerV2StarStar``: also ``n_conv_per_stage_decoder`` = 3 in every decoder stage.

The plans are left untouched: ``build_network_architecture`` (nnU-Net 2.8's static signature
``(plans_manager, configuration_manager, num_input_channels, num_output_channels,
enable_deep_supervision)``, also used by nnUNetv2_predict) edits a copy of the planned
``arch_kwargs``. Only PlainConvUNet plans (nnU-Net's default ``nnUNetPlans``) are supported, as
in the seed; other architectures raise. Training hyper-parameters are nnU-Net's defaults (the
seed trained v2* and v2** with the default nnU-Net v2 recipe). Seed 000 reports 530.9 s/epoch
for v2** vs 378.72 s for the default on a Tesla P40.

Inference of a results folder from these trainers needs ``nnUNet_extTrainer`` set (nnU-Net
must find the class); ``python -m hntumorseg_training export`` writes a model card with the
edited kwargs so the extension needs nothing.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from HNTumorSegLib.networks.nnunet import with_conv_counts
from hntumorseg_training.nnunet_common import ShortRunMixin

CONVS = 3


def deeper_arch_kwargs(arch_kwargs: dict, encoder: int | None = CONVS, decoder: int | None = None) -> dict:
    """A copy of PlainConvUNet ``arch_kwargs`` with ``encoder``/``decoder`` convolutions per stage
    (:func:`HNTumorSegLib.networks.nnunet.with_conv_counts`, the one place that edits them)."""
    if "n_conv_per_stage" not in arch_kwargs or "n_conv_per_stage_decoder" not in arch_kwargs:
        raise RuntimeError("seed 000's v2*/v2** variants need a PlainConvUNet plan (n_conv_per_stage, "
                           "n_conv_per_stage_decoder); use nnU-Net's default nnUNetPlans")
    return with_conv_counts(dict(arch_kwargs), encoder, decoder)


class nnUNetTrainerV2Star(ShortRunMixin, nnUNetTrainer):
    """nnU-Net v2* of seed 000: 3 convolutions per encoder stage."""

    ENCODER_CONVS: int | None = CONVS
    DECODER_CONVS: int | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_run_length_overrides()

    @classmethod
    def arch_kwargs_for(cls, configuration_manager) -> dict:
        return deeper_arch_kwargs(configuration_manager.network_arch_init_kwargs, cls.ENCODER_CONVS,
                                  cls.DECODER_CONVS)

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return _build(nnUNetTrainerV2Star, configuration_manager, num_input_channels, num_output_channels,
                      enable_deep_supervision)


class nnUNetTrainerV2StarStar(nnUNetTrainerV2Star):
    """nnU-Net v2** of seed 000: 3 convolutions per encoder and per decoder stage."""

    DECODER_CONVS = CONVS

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return _build(nnUNetTrainerV2StarStar, configuration_manager, num_input_channels, num_output_channels,
                      enable_deep_supervision)


def _build(cls, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision):
    # staticmethod (nnU-Net calls it on the class at inference): the class is passed explicitly
    return get_network_from_plans(configuration_manager.network_arch_class_name, cls.arch_kwargs_for(
        configuration_manager), configuration_manager.network_arch_init_kwargs_req_import, num_input_channels,
        num_output_channels, allow_init=True, deep_supervision=enable_deep_supervision)
