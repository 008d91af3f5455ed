"""Which checkpoint an nnU-Net fold runs (issue 28): ``checkpoint_final`` / ``checkpoint_best``
(``vocab.Checkpoint``) from ``segment --checkpoint``, an ensemble card's ``"checkpoint"`` (seed
002's preset: ``checkpoint_best``, as its released code loads for every stage) or a folder's
declaration; default ``checkpoint_final``. A fold folder lacking the chosen file is exit 2 naming
the folder and the files it has.

On a copy of the tiny real nnU-Net folder (Testing/nnunet_fixture.py, trained by nnunetv2) whose
``checkpoint_best.pth`` is the final one's weights with the GTVp logit's bias raised by 3, so the
two checkpoints give measurably different contours.
"""

from __future__ import annotations

import argparse
import shutil

import pytest
from conftest import require_module

require_module("nnunetv2")

from nnunet_fixture import tiny_nnunet_test_cases  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.errors import InputError, ModelError  # noqa: E402
from HNTumorSegLib.fileio import read_json, write_json_atomic  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402
from HNTumorSegLib.models.declaration import DECLARATION_FORMAT, DECLARATION_NAME  # noqa: E402
from HNTumorSegLib.models.ensemble_card import write_ensemble  # noqa: E402
from HNTumorSegLib.models.loader import load_model  # noqa: E402
from HNTumorSegLib.models.nnunet_folder import DEFAULT_CHECKPOINT  # noqa: E402
from HNTumorSegLib.pipeline.request import SegmentRequest  # noqa: E402
from HNTumorSegLib.vocab import Checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BIAS_SHIFT = 3.0   # added to the GTVp logit's bias in checkpoint_best.pth


@pytest.fixture
def two_checkpoints(tiny_nnunet_results, tmp_path):
    """A copy of the tiny folder whose folds hold checkpoint_final.pth and a different checkpoint_best.pth."""
    import torch

    from HNTumorSegLib.models.safe_load import load_checkpoint

    folder = tmp_path / "results" / tiny_nnunet_results.name
    shutil.copytree(tiny_nnunet_results, folder)
    for fold_dir in sorted(folder.glob("fold_*")):
        ckpt = load_checkpoint(fold_dir / "checkpoint_final.pth")
        weights = ckpt["network_weights"]
        last = sorted(k for k in weights if k.startswith("decoder.seg_layers.") and k.endswith(".bias"))[-1]
        weights[last] = weights[last].clone()
        weights[last][1] += BIAS_SHIFT
        torch.save(ckpt, fold_dir / "checkpoint_best.pth")
    return folder


def _segment(folder, ct, pet, out, *extra):
    return main(["segment", "--model", str(folder), "--input", f"CT={ct}", "--input", f"PET={pet}",
                 "--output", str(out), "--folds", "0", "--no-tta", "--device", "cpu", "--progress", "none", *extra])


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_default_is_final_and_the_choice_is_exact(two_checkpoints):
    assert DEFAULT_CHECKPOINT is Checkpoint.FINAL
    assert [p.name for p in load_model(two_checkpoints, folds="0,1").checkpoints] == ["checkpoint_final.pth"] * 2
    best = load_model(two_checkpoints, folds="0,1", checkpoint="checkpoint_best")
    assert [p.name for p in best.checkpoints] == ["checkpoint_best.pth"] * 2
    assert [p.name for p in load_model(two_checkpoints, folds="0", checkpoint="best").checkpoints] == \
        ["checkpoint_best.pth"]   # the short form reads too


@pytest.mark.slow
def test_segment_checkpoint_best_changes_the_contours(two_checkpoints, tiny_nnunet_results, tmp_path, capsys):
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    final_out, best_out = tmp_path / "final.nii.gz", tmp_path / "best.nii.gz"
    assert _segment(two_checkpoints, ct, pet, final_out) == 0, capsys.readouterr().err
    assert _segment(two_checkpoints, ct, pet, best_out, "--checkpoint", "checkpoint_best") == 0, capsys.readouterr().err
    final, best = read_image(final_out, label=True).array, read_image(best_out, label=True).array
    # the raised GTVp logit: more GTVp voxels, measurably
    assert int((best == 1).sum()) > int((final == 1).sum()) + 10
    assert int((best != final).sum()) > 10


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_missing_chosen_checkpoint_is_one_line_naming_the_fold_folder(two_checkpoints, tiny_nnunet_results, tmp_path, capsys):
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    (two_checkpoints / "fold_0" / "checkpoint_best.pth").unlink()
    out = tmp_path / "labels.nii.gz"
    rc = _segment(two_checkpoints, ct, pet, out, "--checkpoint", "checkpoint_best")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "fold_0" in err[0] and "checkpoint_best.pth" in err[0] and "checkpoint_final.pth" in err[0]
    assert "--checkpoint checkpoint_final" in err[0]   # the fix names the checkpoint it has
    assert not out.exists()
    # without a choice a missing final is stood in for by best (training stopped early), as before
    (two_checkpoints / "fold_1" / "checkpoint_final.pth").unlink()
    assert load_model(two_checkpoints, folds="1").checkpoints[0].name == "checkpoint_best.pth"
    with pytest.raises(ModelError, match="fold_1: has no checkpoint_final.pth"):
        load_model(two_checkpoints, folds="1", checkpoint=Checkpoint.FINAL)


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_unknown_checkpoint_word_is_exit_2(two_checkpoints, tiny_nnunet_results, tmp_path, capsys):
    ct, pet = tiny_nnunet_test_cases(tiny_nnunet_results)[0]
    out = tmp_path / "labels.nii.gz"
    assert _segment(two_checkpoints, ct, pet, out, "--checkpoint", "checkpoint_latest") == 2
    err = capsys.readouterr().err
    assert "checkpoint_latest" in err and "checkpoint_final, checkpoint_best" in err and not out.exists()


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_ensemble_card_choice_and_cli_override(two_checkpoints, tmp_path):
    card = write_ensemble(tmp_path / "ens", {"id": "e", "checkpoint": "checkpoint_best",
                                             "members": [{"model": str(two_checkpoints), "folds": "0"},
                                                         {"model": str(two_checkpoints), "folds": "1",
                                                          "checkpoint": "checkpoint_final"}]}).parent
    model = load_model(card)
    assert [m.model.checkpoints[0].name for m in model.members] == ["checkpoint_best.pth", "checkpoint_final.pth"]
    model = load_model(card, checkpoint="checkpoint_final")   # --checkpoint wins over the card
    assert [m.model.checkpoints[0].name for m in model.members] == ["checkpoint_final.pth"] * 2
    spec = read_json(card / "ensemble.json")
    spec["members"][1]["checkpoint"] = "checkpoint_last"
    write_json_atomic(card / "ensemble.json", spec)
    with pytest.raises(ModelError, match=r"ensemble.json: unknown members\[1\].checkpoint 'checkpoint_last'"):
        load_model(card)


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_seed002_preset_loads_checkpoint_best_for_every_stage(two_checkpoints, tmp_path):
    from hntumorseg_training.seed002_stages import SEED002_CHECKPOINT, write_seed002_ensemble

    assert SEED002_CHECKPOINT == "checkpoint_best"
    card = write_seed002_ensemble(tmp_path / "seed002", two_checkpoints, two_checkpoints,
                                  [(two_checkpoints, 1.0)]).parent
    assert read_json(card / "ensemble.json")["checkpoint"] == "checkpoint_best"
    model = load_model(card, folds="0")
    loaded = [model.stages["head"], model.stages["coarse"], *model.members]
    names = [p.name for m in loaded for p in m.model.checkpoints]   # head and coarse: their own folds "all"
    assert len(names) == 2 + 2 + 1 and set(names) == {"checkpoint_best.pth"}
    assert all(p.name == "checkpoint_final.pth" for p in load_model(card, checkpoint="final").members[0].model.checkpoints)


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_folder_declaration_names_its_checkpoint(two_checkpoints):
    write_json_atomic(two_checkpoints / DECLARATION_NAME, {"format": DECLARATION_FORMAT, "checkpoint": "checkpoint_best"})
    assert load_model(two_checkpoints, folds="0").checkpoints[0].name == "checkpoint_best.pth"
    assert load_model(two_checkpoints, folds="0", checkpoint="final").checkpoints[0].name == "checkpoint_final.pth"
    write_json_atomic(two_checkpoints / DECLARATION_NAME, {"format": DECLARATION_FORMAT, "checkpoint": "newest"})
    with pytest.raises(ModelError, match=DECLARATION_NAME):
        load_model(two_checkpoints, folds="0")


def test_request_carries_the_choice_in_every_spelling(tmp_path):
    req = SegmentRequest(model="m", input_paths={"CT": "ct.nii.gz", "PET": "pet.nii.gz"}, output_path="o.nii.gz",
                         checkpoint="best")
    assert req.checkpoint is Checkpoint.BEST and req.to_dict()["checkpoint"] == "checkpoint_best"
    assert SegmentRequest.from_dict(req.to_dict()) == req                    # request.json, session, batch
    argv = req.to_argv()
    assert argv[argv.index("--checkpoint") + 1] == "checkpoint_best"
    from HNTumorSegLib.commands.segment import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert SegmentRequest.from_args(parser.parse_args(argv[1:])) == req     # command line
    assert SegmentRequest(model="m", input_paths={"T2": "t"}, output_path="o").checkpoint is None
    with pytest.raises(InputError, match="unknown --checkpoint 'newest'"):
        SegmentRequest.from_dict({**req.to_dict(), "checkpoint": "newest"})


def test_batch_refuses_an_unknown_checkpoint_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rc = main(["batch", "--model", "demo-petct", "--data", str(data), "--layout", "folder", "--task", "petct",
               "--out", str(tmp_path / "out"), "--checkpoint", "newest"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown --checkpoint 'newest'" in err and not (tmp_path / "out").exists()


@pytest.mark.slow   # two trained checkpoints: ~33 s of set-up (default run kept under 15 min)
def test_a_cache_loader_blind_to_the_choice_is_passed_by(two_checkpoints):
    """A warm session's cache keys on model, folds and device: a chosen checkpoint must not be lost in it."""
    from HNTumorSegLib.folds import parse_folds
    from HNTumorSegLib.models.loader import with_checkpoint
    from HNTumorSegLib.session.model_cache import ModelCache

    cache = ModelCache()
    warm = cache.loader_for(device="cpu")
    default = with_checkpoint(warm, None)(str(two_checkpoints), folds=parse_folds("0"), device="cpu")
    assert default.checkpoints[0].name == "checkpoint_final.pth" and cache.loads == 1
    best = with_checkpoint(warm, "checkpoint_best")(str(two_checkpoints), folds=parse_folds("0"), device="cpu")
    assert best.checkpoints[0].name == "checkpoint_best.pth"
