"""Voxel-overlap scores between a predicted and a reference binary mask on the same grid.

Definitions (A = prediction, B = reference, |.| = number of voxels; on one grid the voxel
volume cancels out of every ratio):

* DSC = 2|A∩B| / (|A| + |B|)                undefined (``None``) when both are empty;
* IoU = |A∩B| / |A∪B|                       undefined when both are empty;
* sensitivity = |A∩B| / |B|                 undefined when the reference is empty;
* specificity = |¬A∩¬B| / |¬B|              undefined when the reference fills the grid;
* volumes in mL = voxels x voxel volume (mm³) / 1000.

A prediction that is empty where the reference is not scores DSC = IoU = sensitivity = 0,
and so does a prediction that is not empty where the reference is: both are real errors,
only "nothing to find and nothing found" has no score.

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 4), bool); a[1:3, 1:3, 1:3] = True
    >>> b = np.zeros((4, 4, 4), bool); b[1:3, 1:3, 1:2] = True
    >>> counts = OverlapCounts.from_masks(a, b)
    >>> counts.dsc(), counts.iou()
    (0.6666666666666666, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OverlapCounts:
    """Voxel counts of one label in one case: |A∩B|, |A|, |B| and the grid size."""

    intersection: int
    pred: int
    ref: int
    total: int

    @classmethod
    def from_masks(cls, pred: np.ndarray, ref: np.ndarray) -> "OverlapCounts":
        pred = np.asarray(pred, dtype=bool)
        ref = np.asarray(ref, dtype=bool)
        if pred.shape != ref.shape:
            raise ValueError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
        return cls(
            intersection=int(np.count_nonzero(pred & ref)),
            pred=int(np.count_nonzero(pred)),
            ref=int(np.count_nonzero(ref)),
            total=int(pred.size),
        )

    @property
    def union(self) -> int:
        return self.pred + self.ref - self.intersection

    def dsc(self) -> float | None:
        """2|A∩B| / (|A|+|B|); ``None`` when both masks are empty."""
        denominator = self.pred + self.ref
        return None if denominator == 0 else 2.0 * self.intersection / denominator

    def iou(self) -> float | None:
        """|A∩B| / |A∪B| (Jaccard); ``None`` when both masks are empty."""
        union = self.union
        return None if union == 0 else self.intersection / union

    def sensitivity(self) -> float | None:
        """True-positive rate |A∩B| / |B|; ``None`` when the reference is empty."""
        return None if self.ref == 0 else self.intersection / self.ref

    def specificity(self) -> float | None:
        """True-negative rate over the whole grid; ``None`` when the reference has no background."""
        negatives = self.total - self.ref
        true_negatives = self.total - self.union
        return None if negatives == 0 else true_negatives / negatives


def dsc(pred: np.ndarray, ref: np.ndarray) -> float | None:
    """Dice similarity coefficient of two binary masks on one grid (``None`` when both are empty)."""
    return OverlapCounts.from_masks(pred, ref).dsc()


def iou(pred: np.ndarray, ref: np.ndarray) -> float | None:
    """Intersection over union of two binary masks on one grid (``None`` when both are empty)."""
    return OverlapCounts.from_masks(pred, ref).iou()


def volume_ml(voxels: int, voxel_volume_mm3: float) -> float:
    """Volume in millilitres (1 mL = 1000 mm³)."""
    return float(voxels) * float(voxel_volume_mm3) / 1000.0
