"""Which folds of a model to run: the one parser (:func:`parse_folds`) and the one check
against what a model has (:meth:`Folds.resolve`).

A model holds one network per cross-validation fold (``fold_0`` ... ``fold_4``), and nnU-Net
may also have trained one network on every case, ``fold_all``. A fold choice arrives as
command-line text (``--folds 0,1``), a JSON value in ``request.json``, or the Slicer
quality switch; all three go through :func:`parse_folds`, so they accept the same forms:

=====================================  =============================================
accepted                               meaning
=====================================  =============================================
``None``, ``"all"``                    every numbered fold the model has; a model with
                                       only ``fold_all`` runs that one
``"first"``                            the first fold the model has (lowest number,
                                       else ``fold_all``): Slicer's "fast" quality
``"fold_all"``                         nnU-Net's network trained on every case
``"0,1,2"``, ``"1"``, ``3``, ``[0, 1]`` these numbered folds
``"fold_2"``                           fold 2 (nnU-Net's folder name)
``[0, "all"]``, ``"0,fold_all"``       fold 0 and ``fold_all`` (inside a list ``all``
                                       means ``fold_all``, as in nnU-Net's ``-f 0 all``)
=====================================  =============================================

Refused, with one :class:`~HNTumorSegLib.errors.InputError` line listing the accepted forms:
``""``, ``"-1"`` (and any negative), ``"x"``, a repeated fold (``"0,0"``), ``true``/floats,
an empty list, ``"first"`` inside a list (``"0,first"``).

Example:
    >>> folds = parse_folds("0,fold_all")
    >>> folds.to_json()
    [0, 'all']
    >>> parse_folds("first").resolve([1, 2, 3, 4], None)
    [1]
    >>> parse_folds("all").resolve(["all"], None)
    ['all']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .errors import InputError, ModelError

FoldId = Union[int, str]      # a fold number, or "all" for nnU-Net's fold_all
FOLD_ALL = "all"

ACCEPTED_FORMS = "all, first, fold_all, fold numbers like 0,1,2, or a list such as [0, \"all\"]"

_ALL, _FIRST, _LIST = "all", "first", "list"


def _refuse(value: Any, why: str = "") -> InputError:
    detail = f" ({why})" if why else ""
    return InputError(f"folds {value!r} not understood{detail}", None, f"give {ACCEPTED_FORMS}")


def _one_fold(item: Any, whole: Any) -> FoldId:
    """One list element -> a fold number or ``"all"`` (fold_all)."""
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise _refuse(whole, f"{item!r} is not a fold")
    if isinstance(item, int):
        if item < 0:
            raise _refuse(whole, f"fold {item} is negative")
        return item
    text = item.strip().lower()
    if text in ("all", "fold_all"):
        return FOLD_ALL
    if text.startswith("fold_"):
        text = text[len("fold_"):]
    if text.isdigit():
        return int(text)
    if text.lstrip("-").isdigit():
        raise _refuse(whole, f"fold {item.strip()} is negative")
    raise _refuse(whole, f"{item.strip()!r} is not a fold" if text else "an empty fold")


@dataclass(frozen=True)
class Folds:
    """A fold choice, not yet checked against a model (that is :meth:`resolve`).

    ``mode`` is ``"all"`` (every numbered fold the model has), ``"first"`` (the first fold it
    has) or ``"list"`` (exactly ``items``: fold numbers and/or ``"all"`` = ``fold_all``).
    Build it with :func:`parse_folds` or :meth:`all` / :meth:`first` / :meth:`of`.
    """

    mode: str = _ALL
    items: tuple[FoldId, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in (_ALL, _FIRST, _LIST):
            raise ValueError(f"Folds mode must be all, first or list, not {self.mode!r}")
        if (self.mode == _LIST) != bool(self.items):
            raise ValueError("Folds: items are given exactly when mode is 'list'")

    # ---- constructors ------------------------------------------------------------------------
    @classmethod
    def all(cls) -> "Folds":
        return cls(_ALL)

    @classmethod
    def first(cls) -> "Folds":
        return cls(_FIRST)

    @classmethod
    def of(cls, *items: Any) -> "Folds":
        """``Folds.of(0, 1)``, ``Folds.of("all")`` (fold_all): checked like :func:`parse_folds` lists."""
        return parse_folds(list(items))

    # ---- questions ---------------------------------------------------------------------------
    @property
    def is_all(self) -> bool:
        return self.mode == _ALL

    @property
    def is_first(self) -> bool:
        return self.mode == _FIRST

    def resolve(self, present: list[FoldId] | tuple[FoldId, ...], where: str | Path | None = None) -> list[FoldId]:
        """The folds to load, given those the model has (``present``: numbers and/or ``"all"``).

        The single "fold not found" check: a fold asked for but absent is a
        :class:`~HNTumorSegLib.errors.ModelError` (an InputError) naming the folds present
        and ``where`` (the model folder).

        Example:
            >>> Folds.of(0, 3).resolve([0, 1, 2], "model")
            Traceback (most recent call last):
            HNTumorSegLib.errors.ModelError: model: fold(s) 3 not found; this model has fold(s) 0, 1, 2 - ...
        """
        have = _normalise_present(present)
        if not have:
            raise ModelError("model has no trained fold", where,
                             "give a model folder with fold_* subfolders (or a model.json listing folds)")
        numbered = sorted(f for f in have if f != FOLD_ALL)
        if self.mode == _ALL:
            return list(numbered) if numbered else [FOLD_ALL]
        if self.mode == _FIRST:
            return [numbered[0]] if numbered else [FOLD_ALL]
        absent = [f for f in self.items if f not in have]
        if absent:
            names = ", ".join(map(_fold_name, have))
            raise ModelError(f"fold(s) {', '.join(map(_fold_name, absent))} not found; this model has fold(s) {names}",
                             where, "choose --folds among those, or leave it out (all)")
        return list(self.items)

    # ---- spellings ---------------------------------------------------------------------------
    def to_json(self) -> str | list[FoldId]:
        """``"all"`` | ``"first"`` | ``[0, "all"]`` (the ``request.json`` value; :meth:`from_json` reads it)."""
        return self.mode if self.mode != _LIST else list(self.items)

    @classmethod
    def from_json(cls, value: Any) -> "Folds":
        return parse_folds(value)

    def to_text(self) -> str:
        """The ``--folds`` text that parses back to this choice (``"all"``, ``"first"``, ``"0,fold_all"``)."""
        return self.mode if self.mode != _LIST else ",".join(_fold_name(f) for f in self.items)

    def __str__(self) -> str:
        return self.to_text()


def _fold_name(f: FoldId) -> str:
    return "fold_all" if f == FOLD_ALL else str(f)


def _normalise_present(present: Any) -> list[FoldId]:
    out: list[FoldId] = []
    for f in present or []:
        text = str(f).strip().lower()
        if text in ("all", "fold_all"):
            out.append(FOLD_ALL)
        else:
            out.append(int(text[len("fold_"):] if text.startswith("fold_") else text))
    return list(dict.fromkeys(out))


#: What :func:`parse_folds` reads (the module docstring's table), for signatures that pass it on.
FoldsLike = Union[Folds, str, int, list[FoldId], tuple[FoldId, ...], None]


def parse_folds(value: Any) -> Folds:
    """Text, an int, a list or a :class:`Folds` -> :class:`Folds` (module docstring lists the forms).

    Example:
        >>> parse_folds("1,2").to_json(), parse_folds(None).is_all, parse_folds([0, "all"]).items
        ([1, 2], True, (0, 'all'))
    """
    if isinstance(value, Folds):
        return value
    if value is None:
        return Folds.all()
    if isinstance(value, str):
        text = value.strip().lower()
        if text == _ALL:
            return Folds.all()
        if text == _FIRST:
            return Folds.first()
        if not text:
            raise _refuse(value, "empty")
        items: list[Any] = [t for t in text.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise _refuse(value)
    if not items:
        raise _refuse(value, "empty")
    folds = [_one_fold(item, value) for item in items]
    repeated = sorted({_fold_name(f) for f in folds if folds.count(f) > 1})
    if repeated:
        raise _refuse(value, f"fold {', '.join(repeated)} repeated")
    return Folds(_LIST, tuple(folds))


__all__ = ["Folds", "FoldId", "FoldsLike", "FOLD_ALL", "ACCEPTED_FORMS", "parse_folds"]
