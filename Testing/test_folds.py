"""The one folds parser (HNTumorSegLib/folds.py): every accepted and every refused form, the
JSON/text round trips, and Folds.resolve, the one "fold not found" check."""

from __future__ import annotations

import pytest

from HNTumorSegLib.errors import InputError, ModelError
from HNTumorSegLib.folds import ACCEPTED_FORMS, FOLD_ALL, Folds, parse_folds

ACCEPTED = [
    # (value, mode, items)
    (None, "all", ()),
    ("all", "all", ()),
    (" ALL ", "all", ()),
    ("first", "first", ()),
    ("First", "first", ()),
    ("fold_all", "list", (FOLD_ALL,)),
    ("0,1,2", "list", (0, 1, 2)),
    ("0, 1 ,2", "list", (0, 1, 2)),
    ("1", "list", (1,)),
    ("fold_3", "list", (3,)),
    ("0,fold_all", "list", (0, FOLD_ALL)),
    (3, "list", (3,)),
    (0, "list", (0,)),
    ([0, 1], "list", (0, 1)),
    ((2, 4), "list", (2, 4)),
    ([0, "all"], "list", (0, FOLD_ALL)),
    (["fold_all"], "list", (FOLD_ALL,)),
    (["1", "2"], "list", (1, 2)),
]


@pytest.mark.parametrize("value, mode, items", ACCEPTED)
def test_accepted_forms(value, mode, items):
    folds = parse_folds(value)
    assert (folds.mode, folds.items) == (mode, items)
    assert parse_folds(folds.to_json()) == folds          # request.json round trip
    assert parse_folds(folds.to_text()) == folds          # --folds round trip
    assert Folds.from_json(folds.to_json()) == folds
    assert parse_folds(folds) is folds


REFUSED = ["-1", "", "\t", "x", "0,x", "0,0", "1,fold_1", "all,fold_all", "0,-1", -1, -3, [], [0, -1], [0, 0],
           [0, "x"], [None], True, False, 1.5, {"folds": 0}, "0,first", ["first"], "1,,2"]


@pytest.mark.parametrize("value", REFUSED)
def test_refused_forms_give_one_input_error_listing_the_accepted_forms(value):
    with pytest.raises(InputError) as info:
        parse_folds(value)
    line = info.value.one_line()
    assert "\n" not in line
    assert ACCEPTED_FORMS in line
    assert repr(value) in line


def test_refusal_says_why():
    with pytest.raises(InputError, match="negative"):
        parse_folds("-1")
    with pytest.raises(InputError, match="repeated"):
        parse_folds("2,2")
    with pytest.raises(InputError, match="empty"):
        parse_folds("")


def test_resolve_all_uses_numbered_folds_then_fold_all():
    assert Folds.all().resolve([0, 1, 2, 3, 4, "all"]) == [0, 1, 2, 3, 4]
    assert Folds.all().resolve([3, 1]) == [1, 3]
    assert Folds.all().resolve(["all"]) == ["all"]
    assert Folds.all().resolve(["fold_all"]) == ["all"]


def test_resolve_first_is_the_first_fold_the_model_has():
    assert Folds.first().resolve([1, 2, 3, 4]) == [1]
    assert Folds.first().resolve([4, 2]) == [2]
    assert Folds.first().resolve(["all"]) == ["all"]
    assert Folds.first().resolve([0, "all"]) == [0]


def test_resolve_explicit_folds():
    assert parse_folds("fold_all").resolve([0, 1, "all"]) == ["all"]
    assert parse_folds("1,0").resolve(["0", "1"]) == [1, 0]


def test_resolve_missing_fold_names_the_folds_present_and_the_folder(tmp_path):
    with pytest.raises(ModelError) as info:
        parse_folds("0,5").resolve([1, 2, "all"], tmp_path)
    line = info.value.one_line()
    assert isinstance(info.value, InputError)
    assert "fold(s) 0, 5 not found" in line and "1, 2, fold_all" in line and str(tmp_path) in line
    with pytest.raises(ModelError, match="fold_all not found"):
        parse_folds("fold_all").resolve([0, 1], tmp_path)


def test_resolve_on_a_model_without_folds(tmp_path):
    for folds in (Folds.all(), Folds.first(), Folds.of(0)):
        with pytest.raises(ModelError, match="no trained fold"):
            folds.resolve([], tmp_path)


def test_folds_is_frozen_and_checked():
    folds = Folds.of(0, 1)
    with pytest.raises(Exception):
        folds.mode = "all"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Folds("list", ())
    with pytest.raises(ValueError):
        Folds("some")
    assert str(Folds.of(0, "all")) == "0,fold_all"
