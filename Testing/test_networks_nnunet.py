"""nnU-Net networks from plans (as nnunetv2 builds them), seed 000's variants, SegResNetDS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import require_module

torch = require_module("torch")
require_module("nnunetv2")

sys.path.insert(0, str(Path(__file__).parent))
import helpers_models as h  # noqa: E402

from HNTumorSegLib.networks import build_network  # noqa: E402
from HNTumorSegLib.networks.nnunet import build_from_plans, configuration_manager  # noqa: E402
from HNTumorSegLib.networks.segresnet import SEED002_SEGRESNET, build_segresnet_ds  # noqa: E402


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("cls", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_same_network_as_nnunet_trainer(cls):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = h.plans(cls)
    pm = PlansManager(plans)
    theirs = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 2, 3, False)
    ours = build_from_plans(plans, "3d_fullres", 2, 3)
    assert type(ours) is type(theirs) and type(ours).__name__ == cls
    assert _shapes(ours) == _shapes(theirs)
    assert "architecture" in plans["configurations"]["3d_fullres"]  # caller's dict untouched


def test_old_plans_format_is_upgraded_by_nnunet():
    old = h.plans("PlainConvUNet", old_format=True)
    net = build_from_plans(old, "3d_fullres", 2, 3)
    assert "UNet_class_name" in old["configurations"]["3d_fullres"]  # not mutated
    assert configuration_manager(old, "3d_fullres").pool_op_kernel_sizes == h.STRIDES
    assert len(net.encoder.stages) == 6


def _convs(prefix, sd):
    """Number of convolutions in each stage under prefix (keys like prefix.i.convs.j.conv.weight)."""
    counts = {}
    for k in sd:
        if k.startswith(prefix) and k.endswith(".conv.weight") and ".convs." in k:
            stage = int(k[len(prefix):].split(".")[0])
            counts[stage] = counts.get(stage, 0) + 1
    return [counts[s] for s in sorted(counts)]


def test_seed000_variants():
    plans = h.plans("PlainConvUNet")
    default = build_from_plans(plans, "3d_fullres", 1, 3).state_dict()
    star = build_from_plans(plans, "3d_fullres", 1, 3, variant="nnUNetv2*").state_dict()
    star2 = build_from_plans(plans, "3d_fullres", 1, 3, variant="nnUNetv2**").state_dict()
    assert _convs("encoder.stages.", default) == [2] * 6 and _convs("decoder.stages.", default) == [2] * 5
    assert _convs("encoder.stages.", star) == [3] * 6 and _convs("decoder.stages.", star) == [2] * 5
    assert _convs("encoder.stages.", star2) == [3] * 6 and _convs("decoder.stages.", star2) == [3] * 5
    with pytest.raises(KeyError):
        build_from_plans(plans, "3d_fullres", 1, 3, variant="nnUNetv3")
    with pytest.raises(ValueError, match="PlainConvUNet"):
        build_from_plans(h.plans("ResidualEncoderUNet"), "3d_fullres", 1, 3, variant="nnUNetv2*")


def test_card_architecture_for_nnunet_classes():
    arch = h.plans("ResidualEncoderUNet")["configurations"]["3d_fullres"]["architecture"]
    net = build_network({"name": "ResidualEncoderUNet", "kwargs": arch["arch_kwargs"]}, 4, 3)
    assert type(net).__name__ == "ResidualEncoderUNet"
    assert net.encoder.stem.convs[0].conv.weight.shape[1] == 4  # seed 002: 4 channels CT, CT^2, CT^(1/3), PET
    with pytest.raises(ValueError, match="do not fit"):
        build_network({"name": "PlainConvUNet", "kwargs": {"n_stages": 2}}, 1, 2)


def test_segresnet_ds_seed002():
    torch.set_num_threads(1)
    net = build_segresnet_ds()
    assert SEED002_SEGRESNET["blocks_down"] == [1, 2, 2, 4, 4] and SEED002_SEGRESNET["dsdepth"] == 4
    assert net.encoder.conv_init.weight.shape == (32, 2, 3, 3, 3)  # init filters 32, 2 inputs
    assert len(net.encoder.layers) == 5
    assert [len(layer.blocks) for layer in net.encoder.layers] == [1, 2, 2, 4, 4]
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 3, 32, 32, 32)
        outs = net.train()(x)  # dsdepth 4: four deep-supervision outputs
    assert [tuple(o.shape[2:]) for o in outs] == [(32, 32, 32), (16, 16, 16), (8, 8, 8), (4, 4, 4)]
    # the CUDA-only fused instance norm of Auto3DSeg gives the same parameters
    assert _shapes(build_segresnet_ds(norm="INSTANCE_NVFUSER")) == _shapes(net)
