"""Seed 004's released STU-Net-S recipe (``STUNetTrainer_small_MEDAI``): read back from a constructed trainer.

The trainer is found the way ``nnUNetv2_train -tr`` finds it (``recursive_find_python_class`` over
the ``nnUNet_extTrainer`` folder), instantiated and initialised on a tiny planned dataset on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("nnunetv2")
torch = require_module("torch")

from training_fixture import make_trainer, planned_dataset  # noqa: E402

TRAINERS = Path(__file__).resolve().parents[1] / "training" / "hntumorseg_training" / "nnunet_trainers"


@pytest.fixture(scope="module")
def planned(test_cache_dir, tmp_path_factory):
    torch.set_num_threads(1)
    info = planned_dataset(test_cache_dir)
    mp = pytest.MonkeyPatch()
    mp.setenv("nnUNet_results", str(tmp_path_factory.mktemp("results")))
    for key, value in info["env"].items():
        if key != "nnUNet_results":
            mp.setenv(key, value)
    yield info
    mp.undo()


def test_nnunet_finds_the_medai_trainer_beside_the_upstream_ones(monkeypatch):
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(TRAINERS))
    for name in ("STUNetTrainer_small_MEDAI", "STUNetTrainer_small"):
        cls = recursive_find_trainer_class_by_name(name)   # what nnUNetv2_train -tr NAME calls
        assert cls.__name__ == name
        # and nnU-Net's recursive_find over the folder itself
        found = recursive_find_python_class(str(TRAINERS), name, None, base_folder=str(TRAINERS),
                                            cleanup_imports_from_base_folder=True)
        assert found is not None and found.__name__ == name


def test_medai_optimiser_lr_weight_decay_and_no_deep_supervision(planned):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from HNTumorSegLib.networks.stunet import STUNet

    trainer = make_trainer(planned, "STUNetTrainer_small_MEDAI")
    trainer.initialize()
    assert isinstance(trainer.network, STUNet)
    assert [s[0].conv1.out_channels for s in trainer.network.conv_blocks_context] == [16, 32, 64, 128, 256, 256]
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"], group["nesterov"]) == (1e-4, 1e-3, 0.99, True)
    assert trainer.num_epochs == 1000
    # deep supervision off: plain loss, no scales, one output tensor == weights [1, 0, 0, 0, 0]
    assert trainer.enable_deep_supervision is False
    assert not isinstance(trainer.loss, DeepSupervisionWrapper)
    assert trainer._get_deep_supervision_scales() is None
    assert trainer.DS_WEIGHTS == [1.0, 0.0, 0.0, 0.0, 0.0]
    x = torch.zeros((1, 2, *trainer.configuration_manager.patch_size))
    with torch.no_grad():
        out = trainer.network.eval()(x)
    assert torch.is_tensor(out) and out.shape[1] == 3


def test_upstream_stunet_trainer_differs(planned):
    """Guard: the upstream recipe really has other numbers, so the test above can fail."""
    trainer = make_trainer(planned, "STUNetTrainer_small")
    trainer.initialize()
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-2, 3e-5)
    assert trainer.enable_deep_supervision is True and len(trainer.loss.weight_factors) == 5


def test_medai_writes_nnunet_kfold_split_when_none_exists(planned, tmp_path, monkeypatch):
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    trainer = make_trainer(planned, "STUNetTrainer_small_MEDAI")
    module_globals = type(trainer).do_split.__globals__  # nnU-Net drops its ext modules from sys.modules
    assert module_globals["MEDAI_FOLDS"] == 10 and module_globals["MEDAI_SPLIT_SEED"] == 12345
    monkeypatch.setitem(module_globals, "MEDAI_FOLDS", 6)  # the tiny dataset has 6 patients, not 10
    trainer.preprocessed_dataset_folder_base = str(tmp_path)  # no splits_final.json there
    tr, val = trainer.do_split()
    written = json.loads((tmp_path / "splits_final.json").read_text())
    ids = sorted(trainer.dataset_class.get_identifiers(trainer.preprocessed_dataset_folder))
    assert written == [{k: list(v) for k, v in s.items()} for s in generate_crossval_split(ids, 12345, 6)]
    assert sorted(val) == sorted(written[0]["val"]) and sorted(tr) == sorted(written[0]["train"])
    # an existing split file is used as it is (the planned dataset's 3 folds)
    trainer2 = make_trainer(planned, "STUNetTrainer_small_MEDAI")
    tr2, val2 = trainer2.do_split()
    installed = json.loads((Path(trainer2.preprocessed_dataset_folder_base) / "splits_final.json").read_text())
    assert len(installed) == 3 and sorted(val2) == sorted(installed[0]["val"])
    assert np.intersect1d(tr2, val2).size == 0
