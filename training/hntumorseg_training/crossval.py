"""Cross-validation: score every fold, ensemble by probability averaging, tune the clean-up threshold.

* :func:`evaluate_folds`: nnU-Net writes each fold's validation predictions to
  ``fold_k/validation/<case>.nii.gz``; they are scored against ``labelsTr`` with
  :func:`HNTumorSegLib.metrics.evaluate_pairs` (DSCagg per label and their mean, F1agg of
  GTVn, HD95, ...), per fold and pooled over all folds (the CV estimate the seeds report).
* :func:`ensemble_folders`: probability averaging of several prediction folders holding
  ``<case>.npz`` (``probabilities``, as ``nnUNetv2_predict --save_probabilities`` and
  ``nnUNetv2_train --npz`` write them) - fold ensembles, or cross-architecture ensembles
  (seed 002: nnU-Net ResEnc-L + SegResNet) - then argmax, written on the grid of the first
  folder's ``<case>.nii.gz``. Members must predict the same classes on the same grid.
* :func:`search_min_volume`: for each label separately, the minimum lesion volume (mL) of
  :func:`HNTumorSegLib.postprocess.remove_small_components` that maximises that label's
  aggregated score on the CV predictions (DSCagg; for GTVn the mean of DSCagg and F1agg, the
  HECKTOR 2025 ranking pair). Ties go to the smaller threshold (remove as little as possible).
  The result goes into the model card's ``postprocess.min_volume_ml``.

Example:
    >>> result = evaluate_folds(results_folder, raw_folder)
    >>> result["pooled"]["aggregate"]["DSCagg_mean"]
    >>> best = search_min_volume(pairs_from_folds(results_folder, raw_folder))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.image import Image, read_image, write_image
from HNTumorSegLib.metrics import evaluate_pairs
from HNTumorSegLib.postprocess import remove_small_components

DEFAULT_THRESHOLDS_ML = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _case_id(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def pairs_from_folder(pred_folder: str | os.PathLike, labels_folder: str | os.PathLike) -> list[tuple[str, Image, Image]]:
    """(case, prediction, reference) for every ``<case>.nii.gz`` of ``pred_folder`` with a reference."""
    pred_folder, labels_folder = Path(pred_folder), Path(labels_folder)
    preds = sorted(pred_folder.glob("*.nii.gz"))
    if not preds:
        raise InputError("no predictions (*.nii.gz)", pred_folder, "run nnU-Net's validation (nnUNetv2_train --val)")
    out = []
    for p in preds:
        ref = labels_folder / p.name
        if not ref.is_file():
            raise InputError(f"no reference for prediction {p.name}", ref, "give the dataset's labelsTr folder")
        out.append((_case_id(p), read_image(p, label=True), read_image(ref, label=True)))
    return out


def pairs_from_folds(results_folder: str | os.PathLike, raw_folder: str | os.PathLike,
                     folds: Sequence[int] | None = None) -> dict[int, list]:
    """fold -> its validation pairs (see :func:`pairs_from_folder`)."""
    results_folder = Path(results_folder)
    found = sorted(int(p.parent.name[5:]) for p in results_folder.glob("fold_*/validation")
                   if p.parent.name[5:].isdigit())
    folds = list(folds) if folds is not None else found
    if not folds:
        raise InputError("no fold_k/validation folder", results_folder, "train (and validate) at least one fold")
    return {k: pairs_from_folder(results_folder / f"fold_{k}" / "validation", Path(raw_folder) / "labelsTr")
            for k in folds}


def evaluate_folds(results_folder: str | os.PathLike, raw_folder: str | os.PathLike,
                   folds: Sequence[int] | None = None) -> dict:
    """``{"folds": {k: result}, "pooled": result}`` with HNTumorSegLib.metrics results."""
    by_fold = pairs_from_folds(results_folder, raw_folder, folds)
    pooled = [p for pairs in by_fold.values() for p in pairs]
    return {"folds": {k: evaluate_pairs(v) for k, v in by_fold.items()}, "pooled": evaluate_pairs(pooled)}


def average_probabilities(members: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of probability maps ``(K, z, y, x)`` (equal weights by default)."""
    shapes = {m.shape for m in members}
    if len(shapes) != 1:
        raise InputError(f"ensemble members disagree in shape {sorted(shapes)}", None,
                         "ensemble predictions of the same cases on the same grid and classes")
    w = np.ones(len(members)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    out = np.zeros(members[0].shape, np.float32)
    for m, wi in zip(members, w):
        out += np.asarray(m, np.float32) * np.float32(wi)
    return out


def ensemble_folders(folders: Sequence[str | os.PathLike], out_folder: str | os.PathLike,
                     weights: Sequence[float] | None = None) -> list[str]:
    """Probability-average ``<case>.npz`` over ``folders``; write ``<case>.nii.gz`` (+ ``.npz``) to ``out_folder``."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise InputError("an ensemble needs at least two prediction folders", None, "give two or more folders")
    common = set.intersection(*({p.stem for p in f.glob("*.npz")} for f in folders))
    if not common:
        raise InputError("no case has probabilities (*.npz) in every folder", folders[0],
                         "predict with --save_probabilities (nnUNetv2_predict) or validate with --npz")
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    for case in sorted(common):
        probs = average_probabilities([np.load(f / f"{case}.npz")["probabilities"] for f in folders], weights)
        geometry = read_image(folders[0] / f"{case}.nii.gz", label=True)
        labels = probs.argmax(0).astype(np.uint8)
        if labels.shape != geometry.array.shape:
            raise InputError(f"probabilities {labels.shape} are not on the grid of {case}.nii.gz "
                             f"{geometry.array.shape}", folders[0], "export probabilities on the image grid")
        write_image(geometry.with_array(labels), out / f"{case}.nii.gz")
        np.savez_compressed(out / f"{case}.npz", probabilities=probs)
    return sorted(common)


def _label_score(result: dict, label: str) -> float:
    agg = result["aggregate"].get(label, {})
    vals = [agg.get("DSCagg")] + ([agg.get("F1agg")] if label == "GTVn" else [])
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else 0.0


def search_min_volume(pairs: Iterable[tuple[str, Image, Image]] | dict,
                      thresholds_ml: Sequence[float] = DEFAULT_THRESHOLDS_ML) -> dict:
    """Best minimum lesion volume per label on CV predictions (module docstring).

    Returns ``{"min_volume_ml": {"1": t, "2": t}, "scores": {label: {threshold: score}}}``.
    """
    if isinstance(pairs, dict):
        pairs = [p for v in pairs.values() for p in v]
    pairs = list(pairs)
    if not pairs:
        raise InputError("no cross-validation predictions to tune on", None, "evaluate the folds first")
    best, scores = {}, {}
    for label_value, label in ((1, "GTVp"), (2, "GTVn")):
        scores[label] = {}
        for t in sorted(float(x) for x in thresholds_ml):
            cleaned = [(cid, pred.with_array(remove_small_components(pred.array, pred.spacing, {label_value: t})), ref)
                       for cid, pred, ref in pairs]
            scores[label][t] = _label_score(evaluate_pairs(cleaned, warn=lambda _m: None), label)
        top = max(scores[label].values())
        best[str(label_value)] = min(t for t, s in scores[label].items() if s >= top - 1e-12)
    return {"min_volume_ml": best, "scores": scores}
