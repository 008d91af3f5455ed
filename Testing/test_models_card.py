"""Model cards: validation, card folders (checksums, strict load), SegResNet checkpoints, catalogue."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import require_module, unavailable

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import InputError, ModelError
from HNTumorSegLib.models.card import ModelCard, read_card

CARD = {
    "format": "hntumorseg-model/1", "id": "tiny-midrt", "title": "tiny STU-Net", "version": "1", "task": "midrt",
    "inputs": [{"name": "T2", "normalisation": {"type": "zscore"}},
               {"name": "gradient_map", "derived_from": "T2", "normalisation": {"type": "none"}}],
    "spacing": [0.9, 0.9, 3.0], "patch_size": [16, 64, 64],
    "architecture": {"name": "STUNet", "kwargs": {"depth": [1] * 6, "dims": [4, 8, 8, 8, 8, 8],
                                                  "pool_op_kernel_sizes": [[1, 2, 2], [2, 2, 2], [2, 2, 2],
                                                                           [1, 2, 2], [1, 1, 1]]}},
    "output": "softmax", "labels": {"background": 0, "GTVp": 1, "GTVn": 2}, "folds": [0, 1],
    "weights": {"0": "fold_0.pt", "1": "fold_1.pt"}, "sha256": {},
    "postprocess": {"min_volume_ml": {"1": 0.1, "2": 0.05}}, "tta_axes": [0, 1, 2],
    "licence": "Apache-2.0", "source": "test", "citation": "test", "intended_use": "tests",
}


def test_valid_card_round_trip(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(CARD))
    card = read_card(tmp_path)
    assert card.input_names == ["T2", "gradient_map"] and card.inputs[1].derived_from == "T2"
    assert card.folds == [0, 1] and card.num_output_channels == 3 and card.spacing_xyz == [0.9, 0.9, 3.0]
    assert ModelCard.from_dict(card.to_dict()).to_dict() == card.to_dict()


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("weights"), "misses the field"),
    (lambda c: c.update(format="other/2"), "has format"),
    (lambda c: c.update(task="ct"), "task 'ct'"),
    (lambda c: c["architecture"].update(name="UNETR"), "architecture.name"),
    (lambda c: c.update(labels={"GTVp": 1, "GTVn": 2}), "labels must map"),
    (lambda c: c.update(folds=[0, 2]), "fold"),
    (lambda c: c.update(weights={"0": "../../etc/passwd", "1": "a.pt"}), "plain name"),
    (lambda c: c["inputs"][0].update(normalisation={"type": "ct", "mean": 1.0}), "needs numbers for std"),
    (lambda c: c["inputs"][1].update(derived_from="PET"), "derived from 'PET'"),
    (lambda c: c.update(patch_size=[16, 64]), "patch_size"),
    (lambda c: c.update(sha256={"fold_0.pt": "abc"}), "sha256"),
    (lambda c: c.update(output="argmax"), "output"),
])
def test_bad_cards_are_one_line_model_errors(tmp_path, change, message):
    data = copy.deepcopy(CARD)
    change(data)
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message) as err:
        read_card(tmp_path / "model.json")
    assert isinstance(err.value, InputError) and "model.json" in err.value.one_line()


def test_card_not_json(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_card(tmp_path)


# ---- card folders with weights (torch needed) ----

def _write_card_folder(folder: Path, card: dict, with_sha: bool = True) -> Path:
    import torch

    from HNTumorSegLib.models.weights import sha256_file
    from HNTumorSegLib.networks import build_network

    folder.mkdir(parents=True, exist_ok=True)
    sha = {}
    for fold, name in card["weights"].items():
        torch.manual_seed(int(fold))
        net = build_network(card["architecture"], len(card["inputs"]), len(card["labels"]))
        torch.save(net.state_dict(), folder / name)
        sha[name] = sha256_file(folder / name)
    card = dict(card, sha256=sha if with_sha else {})
    (folder / "model.json").write_text(json.dumps(card, indent=1))
    return folder


def test_card_folder_loads_verified_and_strict(tmp_path):
    torch = require_module("torch")
    from HNTumorSegLib.models import load_model

    folder = _write_card_folder(tmp_path / "m", CARD)
    model = load_model(folder)
    assert model.kind == "card" and model.folds == [0, 1] and len(model.networks) == 2
    assert model.card.id == "tiny-midrt" and model.patch_size == [16, 64, 64] and model.num_classes == 3
    with torch.no_grad():
        assert model.networks[0](torch.zeros(1, 2, 16, 64, 64)).shape == (1, 3, 16, 64, 64)
    assert load_model(folder / "model.json", folds="1").folds == [1]
    with pytest.raises(ModelError, match=r"fold\(s\) 4 not found; this model has fold\(s\) 0, 1"):
        load_model(folder, folds=[4])
    # a changed weights file is refused by its checksum
    data = bytearray((folder / "fold_1.pt").read_bytes())
    data[-40] ^= 0xFF
    (folder / "fold_1.pt").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(folder, folds="1")
    (folder / "fold_1.pt").unlink()
    with pytest.raises(ModelError, match="no checkpoint for fold 1"):
        load_model(folder)


def test_card_architecture_mismatch_is_reported(tmp_path):
    require_module("torch")
    from HNTumorSegLib.models import load_model

    folder = _write_card_folder(tmp_path / "m", CARD, with_sha=False)
    data = json.loads((folder / "model.json").read_text())
    data["labels"] = {"background": 0, "tumour": 1}  # 2 outputs, weights have 3
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"of other shape \(e.g. seg_outputs.0.weight"):
        load_model(folder)


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model"])
def test_monai_segresnet_checkpoint_folder(tmp_path, wrap):
    torch = require_module("torch")
    require_module("monai")
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.models.segresnet_checkpoint import make_segresnet_folder
    from HNTumorSegLib.networks.segresnet import build_segresnet_ds

    kwargs = {"init_filters": 8, "blocks_down": [1, 1, 1]}
    net = build_segresnet_ds(in_channels=2, out_channels=3, **kwargs)
    sd = net.state_dict()
    ckpt = sd if wrap == "bare" else {wrap: sd, "epoch": 300, "best_metric": 0.71}
    torch.save(ckpt, tmp_path / "model.pt")
    loaded = make_segresnet_folder(tmp_path / "model.pt", tmp_path / "srn", "srn-test", ["CT", "PET"],
                                   task="petct", kwargs=kwargs, patch_size=(32, 32, 32))
    assert loaded.kind == "segresnet" and loaded.card.inputs[0].normalisation == {"type": "range"}
    again = load_model(tmp_path / "srn")
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again.networks[0](x), net.eval()(x))


def test_single_checkpoint_file_is_explained(tmp_path):
    from HNTumorSegLib.models import load_model

    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="single file; a model is a folder"):
        load_model(tmp_path / "model.pt")


# ---- catalogue and the command ----

def test_catalogue_entries_of_the_seeds():
    from HNTumorSegLib.models.catalogue import get_entry, read_catalogue

    ids = {e.id for e in read_catalogue()}
    assert {"demo-midrt", "demo-petct", "hntsmrg24-sztu-stunet-b", "GradientSegHNTS", "HECKTOR2025-MEDAI"} <= ids
    for e in read_catalogue():
        assert e.task in ("prert", "midrt", "petct") and e.input_names and e.licence and e.citation
    assert get_entry("hntsmrg24-sztu-stunet-b").homepage == "https://github.com/Duskwang/Weight/releases"
    assert get_entry("demo-midrt").bundled_path == "resources/models/demo-midrt"
    with pytest.raises(ModelError, match="choose one of"):
        get_entry("nope")


def test_models_list_and_show(capsys, tmp_path):
    assert main(["models", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GradientSegHNTS" in out and "hub" in out and "not installed" in out
    assert "CC-BY-NC-4.0 [non-commercial]" in out   # list shows task, source and licence (issue 12)
    assert main(["models", "show", "HECKTOR2025-MEDAI"]) == 0
    out = capsys.readouterr().out
    assert "CC-BY-NC-4.0" in out and "Cai L" in out
    assert main(["models", "show", "unknown-model"]) == 2
    assert "no catalogue entry named 'unknown-model'" in capsys.readouterr().err


def test_fetch_refusals(capsys, tmp_path):
    assert main(["models", "fetch", "GradientSegHNTS", "--cache", str(tmp_path)]) == 2
    assert "has no pinned revision" in capsys.readouterr().err   # not verifiable here: the user gives --revision
    assert main(["models", "fetch", "hntsmrg24-sztu-stunet-b", "--cache", str(tmp_path)]) == 2
    assert "its licence was not accepted" in capsys.readouterr().err   # unstated licence (issue 12)
    assert main(["models", "fetch", "hntsmrg24-sztu-stunet-b", "--cache", str(tmp_path), "--accept-licence"]) == 2
    assert "no direct download link" in capsys.readouterr().err
    assert main(["models", "fetch", "hntsmrg24-sztu-stunet-b", "--url", "http://127.0.0.1:9/x.zip",
                 "--cache", str(tmp_path), "--accept-licence"]) == 2
    assert "--url needs --sha256" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written, nothing downloaded


def test_uninstalled_catalogue_id_says_how_to_install(monkeypatch, tmp_path):
    from HNTumorSegLib.models import load_model

    monkeypatch.setenv("HNTUMORSEG_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="hntumorseg models fetch hntsmrg24-sztu-stunet-b"):
        load_model("hntsmrg24-sztu-stunet-b")


def test_verify_card_folder_command(tmp_path, capsys):
    require_module("torch")
    folder = _write_card_folder(tmp_path / "m", CARD)
    assert main(["models", "verify", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "fold_0.pt: sha256 OK" in out and "2 fold(s) [0, 1] load strictly" in out
    (folder / "fold_0.pt").write_bytes(b"tampered")
    assert main(["models", "verify", str(folder)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("model_id", ["demo-midrt", "demo-petct"])
def test_bundled_demo_models_load_by_id(model_id):
    require_module("torch")
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.models.catalogue import entry_model_folder, get_entry

    if not (entry_model_folder(get_entry(model_id)) / "model.json").is_file():
        unavailable(f"{model_id} not trained into the package yet")
    model = load_model(model_id)
    assert model.card.id == model_id and model.card.task == get_entry(model_id).task
    assert model.card.input_names == get_entry(model_id).input_names
    assert model.card.sha256  # bundled weights are checksummed


def test_parse_folds_and_absent_device():
    # the loaders take HNTumorSegLib.folds (the one parser); its every form is tested by the fold tests
    from HNTumorSegLib.errors import DeviceError
    from HNTumorSegLib.folds import parse_folds
    from HNTumorSegLib.models.types import move_networks

    assert parse_folds(None).is_all and parse_folds("all").is_all and parse_folds(" ALL ").is_all
    assert parse_folds("0, 2").items == (0, 2) and parse_folds(3).items == (3,) and parse_folds(["1", 0]).items == (1, 0)
    assert parse_folds("fold_all").items == ("all",)
    with pytest.raises(InputError, match="negative"):
        parse_folds("-1")
    torch = require_module("torch")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA was asked for"):
            move_networks([torch.nn.Linear(1, 1)], "cuda")


@pytest.mark.parametrize("margin", [-1, 2.5, "4", True, None, [4]])
def test_box_margin_must_be_a_whole_number_of_voxels(tmp_path, margin):
    data = dict(copy.deepcopy(CARD), box_margin_vox=margin)
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="box_margin_vox must be a whole number") as err:
        read_card(tmp_path)
    assert isinstance(err.value, ModelError) and "model.json" in err.value.one_line()


def test_box_margin_default_round_trip_and_axis_order_keys(tmp_path):
    from HNTumorSegLib.models.card import DEFAULT_BOX_MARGIN_VOX

    card = ModelCard.from_dict(copy.deepcopy(CARD))
    assert DEFAULT_BOX_MARGIN_VOX == 4 and card.box_margin_vox == 4 and "box_margin_vox" not in card.extra
    assert ModelCard.from_dict(dict(copy.deepcopy(CARD), box_margin_vox=0)).box_margin_vox == 0
    # model.json keeps its keys; the Python names say the axis order
    out = ModelCard.from_dict(dict(copy.deepcopy(CARD), box_margin_vox=6)).to_dict()
    assert out["spacing"] == [0.9, 0.9, 3.0] and out["patch_size"] == [16, 64, 64] and out["box_margin_vox"] == 6
    assert "spacing_xyz" not in out and "patch_size_zyx" not in out
    assert card.patch_size_zyx == [16, 64, 64]


def test_bundled_demo_cards_declare_the_box_margin():
    from HNTumorSegLib.models.loader import box_margin_vox_of, resolve_model_path

    for model_id in ("demo-midrt", "demo-petct"):
        raw = json.loads((resolve_model_path(model_id) / "model.json").read_text())
        assert raw["box_margin_vox"] == 4
        assert read_card(resolve_model_path(model_id)).box_margin_vox == box_margin_vox_of(model_id) == 4
    assert box_margin_vox_of("") == 4   # no model chosen: the card default
