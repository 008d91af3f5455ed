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
* :func:`make_case_splits` / :func:`write_case_splits`: folds over case ids by
  :class:`HNTumorSegLib.vocab.SplitScheme` (issue 28 item 4). ``kfold`` is nnU-Net's own
  ``generate_crossval_split`` (``KFold(n_splits, shuffle=True, random_state=seed)`` over the
  sorted ids): a true k-fold split. ``medai-released`` is what seed 004's fork
  (Liiiii2101/HECKTOR2025-MEDAI, its ``nnUNetTrainer.do_split``) really trains on when asked for
  10 folds: it hard-codes ``n_splits=5``, so folds 0-4 are that 5-fold KFold (seed 12345) and
  each fold f >= 5 is a random 80:20 split drawn with ``np.random.RandomState(12345 + f)``
  (``choice(n, int(0.8 n), replace=False)`` training indices into the sorted ids, the rest
  validation). Its folds 5-9 overlap each other and folds 0-4: some cases are validated several
  times, some never. **Default** :data:`DEFAULT_SPLIT` = ``kfold``: every case is validated
  exactly once, which the pooled CV estimate (:func:`evaluate_folds`) and the clean-up threshold
  search (:func:`search_min_volume`) assume; the paper reports a 10-fold ensemble, and its
  10-fold split was never published. Choose ``medai-released`` to train on the fork's folds.

Example:
    >>> result = evaluate_folds(results_folder, raw_folder)
    >>> result["pooled"]["aggregate"]["DSCagg_mean"]
    >>> best = search_min_volume(pairs_from_folds(results_folder, raw_folder))
    >>> ids = [f"CHUM-{i:03d}" for i in range(20)]
    >>> folds = make_case_splits(ids, 10, scheme="medai-released")
    >>> [len(f["val"]) for f in folds]      # folds 0-4: 5-fold KFold; 5-9: random 80:20
    [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
    >>> [len(f["val"]) for f in make_case_splits(ids, 10)]   # the default: a true 10-fold split
    [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
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
from HNTumorSegLib.vocab import SplitScheme

DEFAULT_THRESHOLDS_ML = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: the default fold scheme (module docstring: every case validated exactly once)
DEFAULT_SPLIT = SplitScheme.KFOLD
#: nnU-Net's split seed, hard-coded in the fork's do_split (KFold and 12345 + fold)
SPLIT_SEED = 12345
#: the fork's hard-coded number of KFold splits; folds from here on are random 80:20 splits
MEDAI_RELEASED_KFOLD = 5


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


def _kfold(ids: Sequence[str], n_splits: int, seed: int) -> list[dict[str, list[str]]]:
    """nnU-Net's ``generate_crossval_split`` (KFold, shuffled, seeded) without importing nnunetv2."""
    from sklearn.model_selection import KFold

    arr = np.array(list(ids))
    return [{"train": [str(x) for x in arr[tr]], "val": [str(x) for x in arr[va]]}
            for tr, va in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(arr)]


def _random_80_20(ids: Sequence[str], fold: int, seed: int) -> dict[str, list[str]]:
    """The fork's split for a fold beyond its split file: RandomState(seed + fold), 80 % training."""
    keys = np.sort(np.array(list(ids)))
    rnd = np.random.RandomState(seed=seed + fold)
    idx_tr = rnd.choice(len(keys), int(len(keys) * 0.8), replace=False)
    chosen = set(int(i) for i in idx_tr)
    return {"train": [str(keys[i]) for i in idx_tr], "val": [str(keys[i]) for i in range(len(keys)) if i not in chosen]}


def make_case_splits(case_ids: Iterable[str], n_folds: int = 10, scheme: SplitScheme | str = DEFAULT_SPLIT,
                     seed: int = SPLIT_SEED) -> list[dict[str, list[str]]]:
    """``[{"train": [...], "val": [...]}, ...]`` over the sorted case ids by ``scheme`` (module docstring)."""
    scheme = SplitScheme.parse(scheme, "split")
    ids = sorted(str(c) for c in case_ids)
    k = MEDAI_RELEASED_KFOLD if scheme == SplitScheme.MEDAI_RELEASED else n_folds
    if n_folds < 2 or len(ids) < k:
        raise InputError(f"{len(ids)} cases cannot fill {max(n_folds, k)} folds ({scheme.value})", None,
                         "use at least 2 folds and at most as many folds as cases")
    kfold = _kfold(ids, k, seed)
    return [kfold[f] if f < k else _random_80_20(ids, f, seed) for f in range(n_folds)]


def write_case_splits(raw_folder: str | os.PathLike, n_folds: int = 10, scheme: SplitScheme | str = DEFAULT_SPLIT,
                      seed: int = SPLIT_SEED) -> Path:
    """:func:`make_case_splits` over every case of a converted raw dataset -> its ``splits_final.json``.

    Like the fork, every case counts (extra cases included); for patient-wise folds that keep
    seed 003's extras out of validation use ``splits --split kfold`` (converters.splits).
    """
    from hntumorseg_training.converters.nnunet_raw import read_raw_dataset
    from hntumorseg_training.converters.splits import SPLITS_NAME, write_splits

    cases = read_raw_dataset(raw_folder)["hntumorseg"]["cases"]
    return write_splits(make_case_splits(cases, n_folds, scheme, seed), Path(raw_folder) / SPLITS_NAME)
