"""Write trained outcome folds as an outcome model folder (weights + ``model.json``).

Weights: ``<endpoint>_fold<k>.pt`` = ``torch.save(state_dict)`` (tensors only, so
``torch.load(weights_only=True)`` reads them), each with its sha256 in the card. The folder is
written next to its final place and renamed at the end; an existing folder is never replaced
unless ``overwrite``.

Example:
    >>> export_outcome_model("models/outcome", [rfs_result, hpv_result], PatchSpec(), config)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.models.weights import sha256_file
from HNTumorSegLib.outcome.card import RESEARCH_WARNING, write_outcome_card
from HNTumorSegLib.outcome.patch import PatchSpec

from .train import EndpointResult, TrainConfig

CITATION = ("Cai L, Liang X, Zhang T, Huang J, Tan T, Yin Y. Less is More: Efficient PET/CT Segmentation and "
            "Multimodal Prediction of Recurrence-Free Survival and HPV Status in Head and Neck Cancer. HECKTOR 2025.")


def export_outcome_model(out: str | os.PathLike, results: Sequence[EndpointResult], spec: PatchSpec,
                         config: TrainConfig, model_id: str = "outcome-seed004", title: str | None = None,
                         licence: str = "trained locally; licence of the training data applies",
                         overwrite: bool = False, training_info: dict | None = None) -> Path:
    import torch

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output folder exists", out, "choose a new folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        endpoints = {}
        for res in results:
            folds = []
            for f in res.folds:
                name = f"{res.endpoint}_fold{f.fold}.pt"
                torch.save({k: v.detach().cpu() for k, v in f.state_dict.items()}, tmp / name)
                folds.append({"fold": f.fold, "weights": name, "sha256": sha256_file(tmp / name),
                              "clinical": f.encoder.to_dict(), "best_epoch": f.best_epoch,
                              ("val_c_index" if res.endpoint == "rfs" else "val_balanced_accuracy"): f.best_metric,
                              **({"temperature": f.temperature, "threshold": f.threshold}
                                 if f.temperature is not None else {})})
            ep: dict = {"folds": folds, "cv": res.cv}
            if res.endpoint == "rfs":
                ep["cut_points_days"] = list(config.cut_points_days)
            else:
                ep.update(threshold=0.5, loss=config.hpv_loss)   # folds with temperature + threshold vote
            endpoints[res.endpoint] = ep
        write_outcome_card({"id": model_id, "title": title or "Seed 004 outcome model (RFS / HPV)",
                            "intended_use": RESEARCH_WARNING, "licence": licence,
                            "source": "trained with python -m hntumorseg_training outcome-train",
                            "citation": CITATION, "patch": spec.to_dict(), "architecture": config.architecture(),
                            "endpoints": endpoints,
                            "training": {**(training_info or {}), "config": results[0].config if results else {}}}, tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        os.chmod(out, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
