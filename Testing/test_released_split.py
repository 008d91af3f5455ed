"""Issue 28 item 4: seed 004's fork split as released (``--split medai-released``) beside the true k-fold split.

The released fork (Liiiii2101/HECKTOR2025-MEDAI, ``STU-Net/nnunetv2/training/nnUNetTrainer/
nnUNetTrainer.py``, ``do_split``) writes ``generate_crossval_split(sorted keys, seed=12345,
n_splits=5)`` when no split file exists and, for a fold beyond the file, draws a random 80:20
split. Both are written out below from that code, independently of ours.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import KFold

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.vocab import SplitScheme
from hntumorseg_training import cli
from hntumorseg_training.crossval import DEFAULT_SPLIT, make_case_splits

IDS = [f"CHUM-{i:03d}" for i in range(47)][::-1]   # unsorted on purpose: the fork sorts the keys


def released_fork_split(keys, fold):
    """The fork's do_split for one fold, written out (no splits_final.json at the start)."""
    all_keys_sorted = list(np.sort(list(keys)))
    splits = []
    for tr, va in KFold(n_splits=5, shuffle=True, random_state=12345).split(all_keys_sorted):
        splits.append({"train": list(np.array(all_keys_sorted)[tr]), "val": list(np.array(all_keys_sorted)[va])})
    if fold < len(splits):
        return splits[fold]["train"], splits[fold]["val"]
    rnd = np.random.RandomState(seed=12345 + fold)
    keys = np.sort(list(keys))
    idx_tr = rnd.choice(len(keys), int(len(keys) * 0.8), replace=False)
    idx_val = [i for i in range(len(keys)) if i not in idx_tr]
    return [keys[i] for i in idx_tr], [keys[i] for i in idx_val]


def test_medai_released_equals_the_fork_for_every_fold():
    ours = make_case_splits(IDS, 10, scheme="medai-released")
    assert len(ours) == 10
    for fold in range(10):
        tr, va = released_fork_split(IDS, fold)
        assert ours[fold]["train"] == [str(x) for x in tr], fold
        assert ours[fold]["val"] == [str(x) for x in va], fold


def test_default_is_a_true_kfold_split_and_differs_from_the_fork():
    assert DEFAULT_SPLIT is SplitScheme.KFOLD
    ours = make_case_splits(IDS, 10)
    vals = [v for f in ours for v in f["val"]]
    assert sorted(vals) == sorted(IDS)           # every case validated exactly once
    for f in ours:
        assert not set(f["train"]) & set(f["val"]) and len(f["train"]) + len(f["val"]) == len(IDS)
    # nnU-Net's own generator with 10 splits (what the MEDAI trainer writes by default)
    expected = [va for _, va in KFold(n_splits=10, shuffle=True, random_state=12345).split(sorted(IDS))]
    assert [f["val"] for f in ours] == [list(np.array(sorted(IDS))[va]) for va in expected]
    fork = make_case_splits(IDS, 10, scheme="medai-released")
    fork_vals = [v for f in fork for v in f["val"]]
    assert len(fork_vals) > len(IDS)              # the fork validates some cases several times ...
    # ... and its fold-0 validation is the 5-fold one: half of it is our fold 0
    overlap = len(set(ours[0]["val"]) & set(fork[0]["val"])) / len(fork[0]["val"])
    assert overlap == pytest.approx(0.5, abs=0.07)


def test_too_few_cases_is_one_line():
    with pytest.raises(InputError, match="cannot fill"):
        make_case_splits(["a", "b", "c"], 10, scheme="medai-released")


def test_splits_command_writes_the_released_split(tmp_path, capsys):
    raw = tmp_path / "Dataset504_HECKTOR"
    raw.mkdir()
    cases = {c: {"patient": c, "primary": True} for c in IDS}
    (raw / "dataset.json").write_text(json.dumps({"hntumorseg": {"cases": cases}}))
    assert cli.main(["splits", "--dataset", str(raw), "--folds", "10", "--split", "medai-released"]) == 0
    written = json.loads((raw / "splits_final.json").read_text())
    assert written == make_case_splits(IDS, 10, scheme="medai-released")
    assert cli.main(["splits", "--dataset", str(raw), "--folds", "10"]) == 0   # default: patient-wise k-fold
    default = json.loads((raw / "splits_final.json").read_text())
    assert sorted(v for f in default for v in f["val"]) == sorted(IDS)
    assert default != written


@pytest.mark.slow   # ~26 s idle
def test_released_split_trainer_writes_the_forks_split(test_cache_dir, tmp_path, monkeypatch):
    """``STUNetTrainer_small_MEDAI_releasedsplit`` writes what the fork's do_split makes, fold by fold."""
    from conftest import require_module

    require_module("nnunetv2")
    torch = require_module("torch")
    from training_fixture import make_trainer, planned_dataset

    torch.set_num_threads(1)
    info = planned_dataset(test_cache_dir)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    for key, value in info["env"].items():
        if key != "nnUNet_results":
            monkeypatch.setenv(key, value)
    trainer = make_trainer(info, "STUNetTrainer_small_MEDAI_releasedsplit", fold=0)
    module_globals = type(trainer).do_split.__globals__
    monkeypatch.setitem(module_globals, "MEDAI_FOLDS", 6)   # the tiny dataset has 6 cases: 5 KFold + 1 random
    trainer.preprocessed_dataset_folder_base = str(tmp_path)  # no splits_final.json there
    tr, val = trainer.do_split()
    written = json.loads((tmp_path / "splits_final.json").read_text())
    ids = sorted(trainer.dataset_class.get_identifiers(trainer.preprocessed_dataset_folder))
    assert len(written) == 6
    for fold in range(6):
        rtr, rva = released_fork_split(ids, fold)
        assert written[fold] == {"train": [str(x) for x in rtr], "val": [str(x) for x in rva]}
    assert sorted(val) == sorted(written[0]["val"]) and sorted(tr) == sorted(written[0]["train"])
