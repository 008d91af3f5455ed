"""Seed 003's random box margins for training: the released draw (default) and the paper's.

Seed 003 trains its mid-RT model on lesion boxes grown by a random margin so that the network
does not learn the box edge. The paper and the released code say different things:

| source | draw per box and axis | voxels below the lesion | voxels above |
|---|---|---|---|
| paper ("random perturbations of 2-6 voxels") | 2..6 | 2-6 | 2-6 |
| released code (Aarhus-RadOnc-AI/GradientSegHNTS, ``src/data_conversion.py`` and ``src/midRT/data_conversion.py``) | ``np.random.randint(4, 8)`` on each side, the box cut as ``slice(min - r_lo, max + r_hi)`` | **4-7** | **3-6** (the slice end is exclusive, so ``max + r_hi`` is not in the box) |

The released code made the published weights and scores, so :data:`SEED003_RELEASED` is the
training default (``hntumorseg_training`` converters); :data:`SEED003_PAPER` stays available
(``--random-margin paper``). Inference uses a fixed margin, never a draw
(:mod:`HNTumorSegLib.prompts.boxes`).

A :class:`MarginDraw` holds the inclusive range for the low sides (towards index 0 along each
array axis: "below") and for the high sides ("above"). :meth:`MarginDraw.draw` returns one box's
margins, shape (2, 3): row 0 the low sides (i, j, k), row 1 the high sides, each uniform over
its range and independent, as ``randint`` gives.

Example:
    >>> SEED003_RELEASED.draw(np.random.default_rng(0))
    array([[7, 6, 6],
           [4, 4, 3]])
    >>> MarginDraw.parse("paper") == SEED003_PAPER
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class MarginDraw:
    """Inclusive voxel ranges of the random margin below (low index side) and above (high side)."""

    below: tuple[int, int]
    above: tuple[int, int]

    def __post_init__(self) -> None:
        for side, (lo, hi) in (("below", self.below), ("above", self.above)):
            if int(lo) < 0 or int(hi) < int(lo):
                raise ValueError(f"random margin {side} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")

    @classmethod
    def symmetric(cls, lo: int, hi: int) -> "MarginDraw":
        """The same inclusive range on both sides (``(2, 6)`` = the paper)."""
        return cls((int(lo), int(hi)), (int(lo), int(hi)))

    @classmethod
    def coerce(cls, value: "MarginDraw | Sequence[int] | str") -> "MarginDraw":
        """A MarginDraw, a symmetric ``(lo, hi)`` pair, or a preset name (:meth:`parse`)."""
        if isinstance(value, MarginDraw):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        lo, hi = (int(v) for v in value)
        return cls.symmetric(lo, hi)

    @classmethod
    def parse(cls, text: str) -> "MarginDraw":
        """``released`` | ``paper`` | ``LO-HI`` (symmetric, inclusive), e.g. ``2-6``."""
        key = str(text).strip().lower()
        if key in PRESETS:
            return PRESETS[key]
        parts = key.split("-")
        if len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) <= int(parts[1]):
            return cls.symmetric(int(parts[0]), int(parts[1]))
        raise InputError(f"unknown random margin {text!r}", None,
                         "use released (seed 003's code: 4-7 below, 3-6 above), paper (2-6) or LO-HI voxels")

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One box's margins, int array (2, 3): row 0 below (i, j, k), row 1 above."""
        low = rng.integers(self.below[0], self.below[1] + 1, size=3)
        high = rng.integers(self.above[0], self.above[1] + 1, size=3)
        return np.stack([low, high])

    def to_json(self) -> dict:
        return {"below": list(self.below), "above": list(self.above)}


SEED003_RELEASED = MarginDraw(below=(4, 7), above=(3, 6))
SEED003_PAPER = MarginDraw.symmetric(2, 6)
PRESETS = {"released": SEED003_RELEASED, "paper": SEED003_PAPER}
