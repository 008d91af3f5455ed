"""Each custom nnU-Net trainer really uses its seed's hyper-parameters (instantiated and initialised
on a tiny planned dataset on the CPU, found through ``nnUNet_extTrainer`` like nnUNetv2_train does)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module

require_module("nnunetv2")
torch = require_module("torch")

from training_fixture import make_trainer, planned_dataset  # noqa: E402


@pytest.fixture(scope="module")
def planned(test_cache_dir, tmp_path_factory, monkeypatch_module):
    torch.set_num_threads(1)
    info = planned_dataset(test_cache_dir)
    # results of these unit tests go to a throw-away folder, not the shared cache
    monkeypatch_module.setenv("nnUNet_results", str(tmp_path_factory.mktemp("results")))
    for key, value in info["env"].items():
        if key != "nnUNet_results":
            monkeypatch_module.setenv(key, value)
    return info


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _transforms(trainer):
    from hntumorseg_training.nnunet_common import walk_transforms

    rot, do_2d, _, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    pipeline = trainer.get_training_transforms(trainer.configuration_manager.patch_size, rot,
                                               trainer._get_deep_supervision_scales(), mirror, do_2d)
    return list(walk_transforms(pipeline))


def _random_of(transforms, inner_type):
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    found = [t for t in transforms if isinstance(t, RandomTransform) and isinstance(t.transform, inner_type)]
    assert len(found) == 1
    return found[0]


def test_seed001_loss_augmentation_and_deep_supervision(planned):
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    trainer = make_trainer(planned, "nnUNetTrainer_Seed001")
    trainer.initialize()
    assert trainer.loss.loss.weight_dice == 1.5 and trainer.loss.loss.weight_ce == 0.5
    # 4 planned stages -> 3 deep-supervision outputs; seed 001 choice: 0.25**i, last 0, normalised
    np.testing.assert_allclose(trainer.loss.weight_factors, [0.8, 0.2, 0.0])
    tr = _transforms(trainer)
    spatial = [t for t in tr if isinstance(t, SpatialTransform)]
    assert len(spatial) == 1 and spatial[0].p_rotation == 0.3
    noise = _random_of(tr, GaussianNoiseTransform)
    assert noise.apply_probability == 0.15 and tuple(noise.transform.noise_variance) == (0.0, 0.2)
    lowres = _random_of(tr, SimulateLowResolutionTransform)
    assert lowres.apply_probability == 0.3 and tuple(lowres.transform.scale) == (0.7, 1.0)
    # everything else unchanged: SGD nesterov 0.99, lr 1e-2, wd 3e-5
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (1e-2, 0.99, True, 3e-5)


def test_default_trainer_differs_where_seed001_changes_it(planned):
    """Guard: the same checks fail on the stock trainer, so the test above can fail."""
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform

    trainer = make_trainer(planned, "nnUNetTrainer")
    trainer.initialize()
    assert trainer.loss.loss.weight_dice == 1 and trainer.loss.loss.weight_ce == 1
    np.testing.assert_allclose(trainer.loss.weight_factors, [2 / 3, 1 / 3, 0.0])
    assert _random_of(_transforms(trainer), GaussianNoiseTransform).apply_probability == 0.1


def _convs_per_stage(stages) -> list[int]:
    return [sum(isinstance(m, torch.nn.Conv3d) for m in stage.modules()) for stage in stages]


@pytest.mark.parametrize("name, enc, dec", [("nnUNetTrainer", 2, 2), ("nnUNetTrainerV2Star", 3, 2),
                                            ("nnUNetTrainerV2StarStar", 3, 3)])
def test_seed000_variant_depth(planned, name, enc, dec):
    trainer = make_trainer(planned, name)
    trainer.initialize()
    net = trainer.network
    assert _convs_per_stage(net.encoder.stages) == [enc] * 4
    assert _convs_per_stage(net.decoder.stages) == [dec] * 3
    # the class's static builder (what nnUNetv2_predict calls) builds the same network
    again = type(trainer).build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 2, 3, True)
    assert [k for k in again.state_dict()] == [k for k in net.state_dict()]


@pytest.mark.parametrize("name, lr", [("STUNetTrainer_small", 1e-2), ("STUNetTrainer_small_ft", 1e-3)])
def test_stunet_trainer_network_and_optimiser(planned, name, lr, tmp_path, monkeypatch):
    from HNTumorSegLib.networks.stunet import STUNet, build_stunet
    from hntumorseg_training.pretrained import ENV_PRETRAINED

    if name.endswith("_ft"):
        # a "pre-trained" STU-Net-S with 1 input channel and 105 classes, nnU-Net v1 format
        src = build_stunet("small", 1, 105)
        ckpt = tmp_path / "small_ep4k.model"
        torch.save({"state_dict": src.state_dict(), "epoch": 4000}, ckpt)
        monkeypatch.setenv(ENV_PRETRAINED, str(ckpt))
    trainer = make_trainer(planned, name)
    trainer.initialize()
    assert isinstance(trainer.network, STUNet)
    assert [b.conv1.out_channels for b in (s[0] for s in trainer.network.conv_blocks_context)] == \
        [16, 32, 64, 128, 256, 256]
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (lr, 0.99, True, 3e-5)
    # 5 STU-Net heads <-> 5 deep-supervision scales and 5 loss weights
    assert len(trainer._get_deep_supervision_scales()) == 5 == len(trainer.loss.weight_factors)
    if name.endswith("_ft"):
        w = trainer.network.conv_blocks_context[0][0].conv1.weight.detach()
        w_src = src.conv_blocks_context[0][0].conv1.weight.detach()
        torch.testing.assert_close(w, torch.cat([w_src, w_src], 1) / 2)
        torch.testing.assert_close(trainer.network.conv_blocks_context[3][0].conv2.weight, 
                                   src.conv_blocks_context[3][0].conv2.weight)


def test_stunet_ft_refuses_without_checkpoint(planned, monkeypatch):
    from HNTumorSegLib.errors import InputError
    from hntumorseg_training.pretrained import ENV_PRETRAINED

    monkeypatch.delenv(ENV_PRETRAINED, raising=False)
    trainer = make_trainer(planned, "STUNetTrainer_small_ft")
    with pytest.raises(InputError, match=ENV_PRETRAINED):
        trainer.initialize()


def test_short_run_environment(planned, monkeypatch):
    monkeypatch.setenv("HNTUMORSEG_NUM_EPOCHS", "2")
    monkeypatch.setenv("HNTUMORSEG_ITERS_PER_EPOCH", "3")
    trainer = make_trainer(planned, "nnUNetTrainerV2Star")
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (2, 3)
    monkeypatch.setenv("HNTUMORSEG_NUM_EPOCHS", "zero")
    with pytest.raises(ValueError):
        make_trainer(planned, "nnUNetTrainerV2Star")
