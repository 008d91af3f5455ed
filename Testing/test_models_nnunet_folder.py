"""nnU-Net v2 results folders used as they are: STU-Net, default and ResEnc trainers.

The folders are written by ``helpers_models.make_nnunet_folder`` with nnunetv2's real
``nnUNetTrainer.save_checkpoint`` (numpy values in the logger and ``_best_ema``), and
loaded with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")
require_module("nnunetv2")

sys.path.insert(0, str(Path(__file__).parent))
import helpers_models as h  # noqa: E402

from HNTumorSegLib.errors import InputError, ModelError  # noqa: E402
from HNTumorSegLib.models import load_model  # noqa: E402
from HNTumorSegLib.models.safe_load import load_checkpoint  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stunet_folder(tmp_path_factory) -> Path:
    return h.make_nnunet_folder(tmp_path_factory.mktemp("stunet"), "STUNetTrainer_small", folds=(0, 1))


@pytest.fixture
def stunet_copy(stunet_folder, tmp_path) -> Path:
    dst = tmp_path / stunet_folder.name
    shutil.copytree(stunet_folder, dst)
    return dst


def test_stunet_small_folder_loads_strictly_and_predicts(stunet_folder):
    model = load_model(stunet_folder)
    assert model.kind == "nnunet" and model.folds == [0, 1] and len(model.networks) == 2
    assert model.trainer_name == "STUNetTrainer_small" and model.configuration_name == "3d_fullres"
    saved = load_checkpoint(stunet_folder / "fold_1" / "checkpoint_final.pth")["network_weights"]
    for key, value in model.networks[1].state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not torch.equal(model.networks[0].seg_outputs[4].weight, model.networks[1].seg_outputs[4].weight)
    net = model.networks[0]
    assert not net.training and type(net).__name__ == "STUNet"
    assert net.pool_op_kernel_sizes == h.STRIDES[1:]  # official rule: plan strides without stage 0
    with torch.no_grad():
        out = net(torch.randn(1, 2, *h.PATCH))
    assert out.shape == (1, 3, *h.PATCH) and torch.isfinite(out).all()


def test_exposes_nnunet_objects_for_preprocessing_and_export(stunet_folder):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

    model = load_model(stunet_folder, folds="0")
    assert isinstance(model.plans_manager, PlansManager)
    assert isinstance(model.configuration_manager, ConfigurationManager)
    assert list(model.configuration_manager.patch_size) == h.PATCH and model.patch_size == h.PATCH
    assert model.label_manager.num_segmentation_heads == 3 and model.num_classes == 3
    assert model.dataset_json["labels"] == {"background": 0, "GTVp": 1, "GTVn": 2}
    assert model.inference_allowed_mirroring_axes == (0, 1, 2)
    assert model.channel_names == {"0": "CT", "1": "PET"} and model.input_names == ["CT", "PET"]
    ct = model.card.inputs[0].normalisation
    assert ct["type"] == "ct" and ct["mean"] == h.CT_PROPS["mean"] and ct["percentile_99_5"] == h.CT_PROPS["percentile_99_5"]
    assert model.card.spacing_xyz == [1.0, 1.0, 3.0]  # x, y, z
    assert model.card.architecture["name"] == "STUNet"


def test_checkpoint_holds_numpy_values_and_loads_weights_only(stunet_folder):
    path = stunet_folder / "fold_0" / "checkpoint_final.pth"
    with pytest.raises(Exception, match="numpy"):  # plain weights_only load refuses the numpy scalars
        torch.load(path, weights_only=True)
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt["_best_ema"], np.float64) and ckpt["_best_ema"] == 0.55
    assert isinstance(ckpt["logging"]["mean_fg_dice"][0], np.float64)
    assert ckpt["trainer_name"] == "STUNetTrainer_small" and ckpt["init_args"]["configuration"] == "3d_fullres"


def test_fold_selection(stunet_folder):
    assert load_model(stunet_folder, folds="1").folds == [1]
    assert load_model(stunet_folder, folds=[1, 0]).folds == [1, 0]
    with pytest.raises(ModelError, match=r"fold\(s\) 3 not found; this model has fold\(s\) 0, 1") as err:
        load_model(stunet_folder, folds="3")
    assert isinstance(err.value, InputError) and "\n" not in err.value.one_line()
    with pytest.raises(InputError, match="folds 'zero' not understood"):   # the one parser, HNTumorSegLib.folds
        load_model(stunet_folder, folds="zero")


def test_best_checkpoint_fallback_and_missing_checkpoint(stunet_copy):
    (stunet_copy / "fold_1" / "checkpoint_final.pth").rename(stunet_copy / "fold_1" / "checkpoint_best.pth")
    assert load_model(stunet_copy, folds="1").checkpoints[0].name == "checkpoint_best.pth"
    (stunet_copy / "fold_1" / "checkpoint_best.pth").unlink()
    with pytest.raises(ModelError, match="fold_1: has no checkpoint_final.pth or checkpoint_best.pth"):
        load_model(stunet_copy)
    assert load_model(stunet_copy, folds="0").folds == [0]


def test_missing_and_unrecognised_folders(tmp_path):
    with pytest.raises(ModelError, match="model folder not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="neither a model folder"):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelError, match="no catalogue entry named 'no-such-model-id'"):
        load_model("no-such-model-id")


def test_corrupt_checkpoint(stunet_copy):
    path = stunet_copy / "fold_0" / "checkpoint_final.pth"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="corrupt") as err:
        load_model(stunet_copy, folds="0")
    assert err.value.path == str(path)


SIDE_EFFECTS: list[str] = []


def _record(text):  # would run on unpickling if the loader were unsafe
    SIDE_EFFECTS.append(text)
    return text


class Payload:
    def __reduce__(self):
        return (_record, ("executed",))


def test_arbitrary_pickled_object_is_refused(stunet_copy):
    path = stunet_copy / "fold_0" / "checkpoint_final.pth"
    ckpt = load_checkpoint(path)
    ckpt["logging"]["extra"] = Payload()
    torch.save(ckpt, path)
    with pytest.raises(ModelError, match="not plain weights") as err:
        load_model(stunet_copy, folds="0")
    assert "_record" in str(err.value) and SIDE_EFFECTS == []


def test_strict_key_mismatch_is_one_line(stunet_copy):
    path = stunet_copy / "fold_0" / "checkpoint_final.pth"
    ckpt = load_checkpoint(path)
    sd = ckpt["network_weights"]
    sd["seg_outputs.4.weight"] = torch.zeros(5, 16, 1, 1, 1)
    sd["extra.weight"] = sd.pop("upsample_layers.0.conv.bias")
    torch.save(ckpt, path)
    with pytest.raises(ModelError) as err:
        load_model(stunet_copy, folds="0")
    line = err.value.one_line()
    assert "1 missing (e.g. upsample_layers.0.conv.bias)" in line and "1 unexpected (e.g. extra.weight)" in line
    assert "seg_outputs.4.weight: checkpoint [5, 16, 1, 1, 1] vs network [3, 16, 1, 1, 1]" in line
    assert "\n" not in line


def test_old_plans_format_as_published_stunet_folders(tmp_path):
    # the published STU-Net HECKTOR folder has pre-2.4 plans (UNet_class_name, pool_op_kernel_sizes ...)
    folder = h.make_nnunet_folder(tmp_path, "STUNetTrainer_small_ft", old_format=True)
    model = load_model(folder)
    assert model.networks[0].pool_op_kernel_sizes == h.STRIDES[1:]


@pytest.mark.parametrize("trainer, cls", [("nnUNetTrainer", "PlainConvUNet"),
                                          ("nnUNetTrainer", "ResidualEncoderUNet"),
                                          ("MyLabTrainer_250epochs", "PlainConvUNet")])
def test_default_resenc_and_custom_trainer_folders(tmp_path, trainer, cls):
    folder = h.make_nnunet_folder(tmp_path, trainer, network_class=cls)
    model = load_model(tmp_path)  # the parent holding exactly one results folder works too
    assert model.folder == folder and type(model.networks[0]).__name__ == cls
    with torch.no_grad():
        assert model.networks[0](torch.randn(1, 2, *h.PATCH)).shape == (1, 3, *h.PATCH)


def test_predictor_runs_on_the_folder_when_available(stunet_folder):
    from HNTumorSegLib.inference import EnsemblePredictor

    model = load_model(stunet_folder, folds="0")
    predictor = EnsemblePredictor(model.networks, patch_size=model.patch_size, num_classes=model.num_classes,
                                  device="cpu")
    probs = predictor.predict_probabilities(np.random.default_rng(0).normal(size=(2, 33, 64, 64)).astype(np.float32))
    assert probs.shape == (3, 33, 64, 64)


def test_models_verify_command(stunet_copy, capsys, tmp_path):
    from HNTumorSegLib.cli import main

    assert main(["models", "verify", str(stunet_copy)]) == 0
    assert "nnunet model, 2 fold(s) [0, 1] load strictly" in capsys.readouterr().out
    (stunet_copy / "fold_1" / "checkpoint_final.pth").unlink()
    assert main(["models", "verify", str(stunet_copy)]) == 2
    err = capsys.readouterr().err
    assert "fold_1: has no checkpoint_final.pth" in err and err.count("\n") == 1
    assert main(["models", "verify", str(tmp_path / "missing")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["models", "verify", "no-such-id"]) == 2
    assert "no model folder, no catalogue entry and no imported model" in capsys.readouterr().err


def test_fold_all_folders_load_through_the_one_folds_resolver(stunet_copy):
    """A folder with only nnU-Net's fold_all loads by default, by "fold_all" and by "first"
    (Slicer's fast quality); with numbered folds beside it, "all" means the numbered ones."""
    from HNTumorSegLib.folds import parse_folds
    from HNTumorSegLib.inference.nnunet_inference import load_nnunet_model

    shutil.copytree(stunet_copy / "fold_1", stunet_copy / "fold_all")
    assert load_model(stunet_copy).folds == [0, 1]
    assert load_model(stunet_copy, folds="0,fold_all").folds == [0, "all"]
    shutil.rmtree(stunet_copy / "fold_0")
    shutil.rmtree(stunet_copy / "fold_1")
    for asked in (None, "all", "fold_all", "first", parse_folds("fold_all")):
        model = load_model(stunet_copy, folds=asked)
        assert model.folds == ["all"] and len(model.networks) == 1
        assert model.checkpoints[0].parent.name == "fold_all"
    assert load_nnunet_model(stunet_copy, folds="fold_all").folds == ("all",)
    with pytest.raises(ModelError, match=r"fold\(s\) 0 not found; this model has fold\(s\) fold_all"):
        load_model(stunet_copy, folds="0")
