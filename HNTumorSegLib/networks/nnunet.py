"""nnU-Net's PlainConvUNet / ResidualEncoderUNet, built from plans exactly as nnunetv2 builds them.

Nothing is re-implemented: the configuration is read by nnunetv2's own
``ConfigurationManager`` (which also upgrades old-format plans) and the network is made
by ``nnunetv2.utilities.get_network_from_plans`` with the classes of
dynamic-network-architectures, so the module tree (and the state_dict keys) are those of
the nnU-Net version installed.

Seed 000 compares the default nnU-Net v2 with two variants that add convolutions:
``nnUNetv2*`` (3 convolutions per encoder stage) and ``nnUNetv2**`` (3 per encoder and 3
per decoder stage). :data:`SEED000_VARIANTS` names them; pass one to
:func:`build_from_plans` as ``variant=``, or give ``n_conv_per_stage`` /
``n_conv_per_stage_decoder`` yourself. For a ResidualEncoderUNet the encoder count is
``n_blocks_per_stage`` (residual blocks of two convolutions each); seed 000 only varied
the plain U-Net, so the variant applies to PlainConvUNet plans and raises otherwise.

Example:
    >>> arch = {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
    ...         "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
    ...         "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
    ...         "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    ...         "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    >>> plans = {"configurations": {"3d_fullres": {"architecture": {   # the part of a plans.json the network needs
    ...     "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet", "arch_kwargs": arch,
    ...     "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}}}
    >>> net = build_from_plans(plans, "3d_fullres", 2, 3, variant="nnUNetv2**")
    >>> type(net).__name__, len(net.encoder.stages[0][0].convs)     # 3 convolutions per stage, not 2
    ('PlainConvUNet', 3)
"""

from __future__ import annotations

import copy
from typing import Any

#: seed 000's nnU-Net variants -> changes to the plans' architecture kwargs.
SEED000_VARIANTS: dict[str, dict[str, int]] = {
    "nnUNetv2": {},
    "nnUNetv2*": {"n_conv_per_stage": 3},
    "nnUNetv2**": {"n_conv_per_stage": 3, "n_conv_per_stage_decoder": 3},
}


def configuration_manager(plans: Any, configuration: str):
    """nnunetv2's ConfigurationManager for ``configuration`` (plans: dict, path or PlansManager)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if isinstance(plans, PlansManager):
        manager = plans
    else:
        # PlansManager upgrades old plans in place: never touch the caller's dict
        manager = PlansManager(copy.deepcopy(plans) if isinstance(plans, dict) else str(plans))
    if configuration not in manager.available_configurations and configuration not in manager.plans["configurations"]:
        raise KeyError(f"configuration {configuration!r} not in plans (has {manager.available_configurations})")
    return manager.get_configuration(configuration)


def with_conv_counts(arch_kwargs: dict, n_conv_per_stage: int | None = None,
                     n_conv_per_stage_decoder: int | None = None) -> dict:
    """A copy of nnU-Net ``arch_kwargs`` with every encoder / decoder stage set to the given counts."""
    kwargs = copy.deepcopy(arch_kwargs)
    n_stages = int(kwargs["n_stages"])
    if n_conv_per_stage is not None:
        if "n_conv_per_stage" not in kwargs:
            raise ValueError("n_conv_per_stage applies to PlainConvUNet plans only "
                             "(ResidualEncoderUNet counts residual blocks: n_blocks_per_stage)")
        kwargs["n_conv_per_stage"] = [int(n_conv_per_stage)] * n_stages
    if n_conv_per_stage_decoder is not None:
        kwargs["n_conv_per_stage_decoder"] = [int(n_conv_per_stage_decoder)] * (n_stages - 1)
    return kwargs


def build_from_arch(network_class_name: str, arch_kwargs: dict, num_input_channels: int,
                    num_output_channels: int, kw_requires_import=("conv_op", "norm_op", "dropout_op", "nonlin"),
                    deep_supervision: bool = False, allow_init: bool = True):
    """nnunetv2's get_network_from_plans on an ``architecture`` block of plans.json (or a card)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if "." not in network_class_name:  # a card may name the class only
        module = "residual_unet" if "Residual" in network_class_name else "unet"
        network_class_name = f"dynamic_network_architectures.architectures.{module}.{network_class_name}"
    return get_network_from_plans(network_class_name, copy.deepcopy(arch_kwargs), list(kw_requires_import),
                                  num_input_channels, num_output_channels, allow_init=allow_init,
                                  deep_supervision=deep_supervision)


def build_from_plans(plans: Any, configuration: str, num_input_channels: int, num_output_channels: int,
                     deep_supervision: bool = False, variant: str | None = None,
                     n_conv_per_stage: int | None = None, n_conv_per_stage_decoder: int | None = None):
    """The network nnunetv2's default trainer builds for ``configuration`` of ``plans``.

    ``variant`` is a key of :data:`SEED000_VARIANTS`; the explicit counts override it.
    """
    cm = configuration_manager(plans, configuration)
    if variant is not None and variant not in SEED000_VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; choose one of {list(SEED000_VARIANTS)}")
    counts = dict(SEED000_VARIANTS[variant]) if variant else {}
    if n_conv_per_stage is not None:
        counts["n_conv_per_stage"] = n_conv_per_stage
    if n_conv_per_stage_decoder is not None:
        counts["n_conv_per_stage_decoder"] = n_conv_per_stage_decoder
    kwargs = with_conv_counts(cm.network_arch_init_kwargs, **counts) if counts else cm.network_arch_init_kwargs
    return build_from_arch(cm.network_arch_class_name, kwargs, num_input_channels, num_output_channels,
                           cm.network_arch_init_kwargs_req_import, deep_supervision=deep_supervision)
