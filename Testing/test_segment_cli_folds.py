"""`hntumorseg segment --folds` on a real nnU-Net v2 results folder that has only ``fold_all``
(nnU-Net's network trained on every case): made from the tiny folder nnunetv2 trains in the
test suite (Testing/nnunet_fixture.py) by renaming its ``fold_0`` to ``fold_all``, exactly the
layout ``nnUNetv2_train ... all`` leaves."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import require_module

require_module("nnunetv2")

from nnunet_fixture import tiny_nnunet_test_cases  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.image import read_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fold_all_only(tiny_nnunet_results, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fold_all") / tiny_nnunet_results.name
    folder.mkdir()
    for child in tiny_nnunet_results.iterdir():
        if child.is_file():
            shutil.copy2(child, folder / child.name)
    shutil.copytree(tiny_nnunet_results / "fold_0", folder / "fold_all")
    return folder


@pytest.fixture(scope="module")
def ct_pet(tiny_nnunet_results):
    return tiny_nnunet_test_cases(tiny_nnunet_results)[0]


def _segment(model, ct_pet, out, *extra) -> int:
    ct, pet = ct_pet
    return main(["segment", "--model", str(model), "--input", f"CT={ct}", "--input", f"PET={pet}",
                 "--output", str(out), "--device", "cpu", "--progress", "none", *extra])


@pytest.mark.slow
def test_folds_fold_all_on_a_folder_with_only_fold_all(fold_all_only, tiny_nnunet_results, ct_pet, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    rc = _segment(fold_all_only, ct_pet, out, "--folds", "fold_all")
    assert rc == 0, capsys.readouterr().err
    labels = read_image(out, label=True)
    assert labels.same_grid(read_image(ct_pet[0])) and set(np.unique(labels.array)) <= {0, 1, 2}
    # the same network as fold_0 of the original folder: the same labels
    ref = tmp_path / "fold0.nii.gz"
    assert _segment(tiny_nnunet_results, ct_pet, ref, "--folds", "0") == 0
    np.testing.assert_array_equal(labels.array, read_image(ref, label=True).array)
    # "all" (the default) and "first" also run the only network there is
    for i, words in enumerate((["--folds", "all"], ["--folds", "first"], [])):
        again = tmp_path / f"again{i}.nii.gz"
        assert _segment(fold_all_only, ct_pet, again, *words) == 0, (words, capsys.readouterr().err)
        np.testing.assert_array_equal(read_image(again, label=True).array, labels.array)


@pytest.mark.parametrize("folds, expect", [("0", "fold(s) 0 not found"), ("-1", "negative"),
                                           ("0,0", "repeated"), ("x", "not a fold")])
def test_bad_or_absent_folds_are_one_line(fold_all_only, ct_pet, tmp_path, capsys, folds, expect):
    out = tmp_path / "labels.nii.gz"
    rc = _segment(fold_all_only, ct_pet, out, "--folds", folds)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and expect in err[0], err
    if folds == "0":
        assert "fold_all" in err[0]          # names the folds the model has
    assert not out.exists()
