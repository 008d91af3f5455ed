"""Typed models (issue 21): one protocol the pipeline uses, one concrete type per model form, one
``EnsembleMember``, and the words a model card, a catalogue entry and a declaration share mean one type.

The loaded models are real: the bundled demo card, a tiny nnU-Net folder trained by nnunetv2
(``tiny_nnunet_results``) and an ensemble card naming them.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
from conftest import require_module

from HNTumorSegLib.models.card import ModelCard
from HNTumorSegLib.models.catalogue import CatalogueEntry, read_catalogue
from HNTumorSegLib.models.declaration import Declaration
from HNTumorSegLib.vocab import ModelKind, Task

LIB = Path(__file__).resolve().parents[1] / "HNTumorSegLib"
PROTOCOL = ("kind", "card", "folder", "folds", "networks", "user_inputs", "default_tta")
NNUNET_ONLY = ("plans_manager", "configuration_manager", "label_manager", "dataset_json", "declaration",
               "trainer_name", "configuration_name", "inference_allowed_mirroring_axes", "channel_names", "plans")


def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def test_shared_words_have_one_type():
    """Every field name two of ModelCard, CatalogueEntry and Declaration share has one type."""
    classes = {c.__name__: _hints(c) for c in (ModelCard, CatalogueEntry, Declaration)}
    names = set().union(*classes.values())
    clashes = []
    for name in sorted(names):
        types = {cls: hints[name] for cls, hints in classes.items() if name in hints}
        if len(types) > 1 and len(set(map(str, types.values()))) > 1:
            clashes.append(f"{name}: " + ", ".join(f"{c} {t}" for c, t in types.items()))
    assert not clashes, "same word, different types:\n" + "\n".join(clashes)
    assert {"task", "licence", "citation", "source"} <= set(classes["CatalogueEntry"]) & set(classes["Declaration"])


def test_catalogue_converts_its_task_and_keeps_its_json_keys():
    entries = read_catalogue()
    assert entries and all(isinstance(e.task, Task) for e in entries)
    demo = next(e for e in entries if e.id == "demo-midrt")
    spelled = demo.to_dict()   # models show prints the file's own keys
    assert spelled["inputs"] == demo.input_names and spelled["path"] == demo.bundled_path
    assert "input_names" not in spelled and "bundled_path" not in spelled


def test_one_ensemble_member_class():
    """``EnsembleMember`` names one thing (the fold networks a predictor averages)."""
    found = [str(p.relative_to(LIB)) for p in LIB.rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, ast.ClassDef) and node.name == "EnsembleMember"]
    assert found == ["inference/ensemble.py"]


def test_pipeline_and_inference_never_probe_a_model_with_getattr():
    """What a model has is its type's business: ``getattr(model, ...)`` probing is gone."""
    probes = []
    for folder in ("pipeline", "inference"):
        for path in (LIB / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                        and "model" in ast.unparse(node.args[0]).lower()):
                    probes.append(f"{folder}/{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not probes, "\n".join(probes)


def _check_protocol(model) -> None:
    for name in PROTOCOL:
        assert hasattr(model, name), f"{type(model).__name__} lacks {name}"
    assert isinstance(model.kind, ModelKind) and isinstance(model.card, ModelCard)
    assert isinstance(model.default_tta, bool) and all(isinstance(n, str) for n in model.user_inputs)


def test_each_form_loads_as_its_own_type(tmp_path, tiny_nnunet_results):
    require_module("torch")
    require_module("nnunetv2")
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.models.ensemble_card import EnsembleModel, MemberModel, write_ensemble
    from HNTumorSegLib.models.types import CardModel, NnUNetFolderModel
    from HNTumorSegLib.pipeline.validate import default_tta, expected_inputs

    card = load_model("demo-midrt")
    assert type(card) is CardModel and card.kind is ModelKind.CARD
    assert not any(hasattr(card, name) for name in NNUNET_ONLY), "a card model carries no nnU-Net fields"
    assert card.user_inputs == ["T2"] == expected_inputs(card) and default_tta(card) is False

    nnunet = load_model(tiny_nnunet_results, folds="0")
    assert type(nnunet) is NnUNetFolderModel and nnunet.kind is ModelKind.NNUNET
    assert nnunet.declaration.user_inputs == nnunet.user_inputs == ["CT", "PET"] and nnunet.default_tta is True

    write_ensemble(tmp_path / "ens", {"id": "mix", "title": "t", "tta": False, "inputs": ["CT", "PET"],
                                      "members": [{"model": str(tiny_nnunet_results), "folds": "0"},
                                                  {"model": str(tiny_nnunet_results), "folds": "1", "weight": 3}]})
    ensemble = load_model(tmp_path / "ens")
    assert type(ensemble) is EnsembleModel and ensemble.kind is ModelKind.ENSEMBLE
    assert all(type(m) is MemberModel for m in ensemble.members)
    assert [m.weight for m in ensemble.members] == pytest.approx([0.25, 0.75])
    assert ensemble.networks == [*ensemble.members[0].model.networks, *ensemble.members[1].model.networks]
    assert ensemble.user_inputs == ["CT", "PET"] and ensemble.default_tta is False and ensemble.folds == ["all"]
    for model in (card, nnunet, ensemble):
        _check_protocol(model)


def test_nnunet_view_refuses_another_form_in_one_line():
    require_module("torch")
    from HNTumorSegLib.errors import ModelError
    from HNTumorSegLib.inference.nnunet_inference import as_nnunet_model
    from HNTumorSegLib.models import load_model

    with pytest.raises(ModelError) as err:
        as_nnunet_model(load_model("demo-petct"))
    assert "is a card model, not an nnU-Net results folder" in str(err.value) and "\n" not in str(err.value)
