"""Trained model -> a model-card folder the extension loads (``model.json`` + weights + sha256).

Two sources:

* an nnU-Net v2 results folder ``<Trainer>__<Plans>__<configuration>/`` (any of our trainers or
  nnU-Net's own): each ``fold_k/checkpoint_final.pth`` (else ``checkpoint_best.pth``) becomes
  ``fold_k.pt`` (the bare ``network_weights`` state_dict); the architecture is written out in
  full - ``STUNet`` with its size and the plan's strides for STU-Net trainers, else the plan's
  ``arch_kwargs`` *as the trainer edits them* (seed 000's v2*/v2** add convolutions), so the
  extension needs neither ``nnUNet_extTrainer`` nor the trainer code;
* a SegResNet run folder written by :mod:`hntumorseg_training.segresnet` (``run.json`` +
  ``fold_k.pt``).

Inputs and their normalisation come from the ``hntumorseg`` block our converters put in
dataset.json (nnU-Net's CT statistics filled in from the plans), else from the channel names
and the plans' normalisation schemes. Spacing and patch size come from the plans (x, y, z mm
and z, y, x voxels). Plans whose ``transpose_forward`` is not the identity are refused (the
card pipeline feeds arrays in z, y, x order; run such a folder directly instead). The written
folder is then loaded back with :func:`HNTumorSegLib.models.load_model` (strict, checksums) so a
broken export fails here, not in the clinic.

Example:
    >>> export_nnunet("nnUNet_results/Dataset502_HNTSMRGMidRT/nnUNetTrainer_Seed001__nnUNetPlans__3d_fullres",
    ...               "models/midrt-seed001", model_id="midrt-seed001", title="Mid-RT nnU-Net (seed 001)")
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from HNTumorSegLib.errors import InputError, ModelError
from HNTumorSegLib.fileio import read_json

_NORM = {"CTNormalization": "ct", "ZScoreNormalization": "zscore", "NoNormalization": "none",
         "RescaleTo01Normalization": "range"}
LABELS = {"background": 0, "GTVp": 1, "GTVn": 2}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path.name} not found", path, "give the results folder nnU-Net wrote (Trainer__Plans__config)")
    return read_json(path, path.name)   # depth-limited, strict: one reader for every JSON given


def trainer_architecture(trainer: str, cm: Any) -> dict:
    """The card ``architecture`` block of what ``trainer`` trains for configuration ``cm``."""
    from HNTumorSegLib.models.nnunet_folder import stunet_size
    from HNTumorSegLib.networks.stunet import stunet_strides

    size = stunet_size(trainer)
    if size is not None:  # the five strides STU-Net takes from the plan (official rule)
        return {"name": "STUNet", "kwargs": {"size": size, "pool_op_kernel_sizes": stunet_strides(cm.pool_op_kernel_sizes)}}
    kwargs = dict(cm.network_arch_init_kwargs)
    if trainer in ("nnUNetTrainerV2Star", "nnUNetTrainerV2StarStar"):
        from hntumorseg_training.nnunet_trainers import seed000_variants

        kwargs = getattr(seed000_variants, trainer).arch_kwargs_for(cm)
    class_name = cm.network_arch_class_name.split(".")[-1]
    if class_name not in ("PlainConvUNet", "ResidualEncoderUNet"):
        raise ModelError(f"architecture {cm.network_arch_class_name} cannot be described by a model card", None,
                         "run the nnU-Net results folder directly in the extension")
    kwargs = json.loads(json.dumps(kwargs, default=list))  # tuples -> lists
    kwargs["_kw_requires_import"] = list(cm.network_arch_init_kwargs_req_import)
    kwargs["network_class_name"] = cm.network_arch_class_name
    return {"name": class_name, "kwargs": kwargs}


def card_inputs(dataset_json: dict, plans: dict, cm: Any) -> list[dict]:
    """Model-card inputs (see the module docstring)."""
    props = plans.get("foreground_intensity_properties_per_channel", {}) or {}
    block = (dataset_json.get("hntumorseg") or {}).get("inputs")
    if block is None:
        block = []
        for i, (k, name) in enumerate(sorted(dataset_json["channel_names"].items(), key=lambda kv: int(kv[0]))):
            scheme = cm.normalization_schemes[i] if i < len(cm.normalization_schemes) else "ZScoreNormalization"
            block.append({"name": name, "normalisation": {"type": _NORM.get(scheme, "none")}})
    out = []
    for i, spec in enumerate(block):
        spec = json.loads(json.dumps(spec))
        if spec["normalisation"].get("type") == "ct":
            p = props.get(str(i), {})
            missing = [k for k in ("mean", "std", "percentile_00_5", "percentile_99_5") if k not in p]
            if missing:
                raise ModelError(f"plans.json has no CT statistics for channel {i} ({missing})", None,
                                 "export the folder nnU-Net trained (plans.json from nnUNetv2_plan_and_preprocess)")
            spec["normalisation"].update({k: float(p[k]) for k in ("mean", "std", "percentile_00_5", "percentile_99_5")})
        out.append(spec)
    return out


def _write_weights(out: Path, fold: Any, state: dict) -> tuple[str, str]:
    import torch

    from HNTumorSegLib.models.weights import sha256_file

    name = f"fold_{fold}.pt"
    torch.save({k: v.detach().cpu() for k, v in state.items()}, out / name)
    return name, sha256_file(out / name)


def _finish(out: Path, card: dict, tmp: Path) -> Path:
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.models.card import write_card

    write_card(card, tmp / "model.json")
    load_model(tmp)  # strict load + checksums: refuse to publish a card that does not load
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _prepare(out: str | os.PathLike, overwrite: bool) -> tuple[Path, Path]:
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output model folder exists", out, "choose another --out or pass --overwrite")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return out, tmp


def export_nnunet(results_folder: str | os.PathLike, out: str | os.PathLike, model_id: str | None = None,
                  title: str | None = None, task: str | None = None, folds: Sequence[int] | None = None,
                  postprocess: dict | None = None, overwrite: bool = False, **card_fields: Any) -> Path:
    """Export an nnU-Net results folder to a model-card folder (module docstring); returns it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from HNTumorSegLib.models.nnunet_folder import available_folds, find_checkpoint, split_folder_name
    from HNTumorSegLib.models.safe_load import load_checkpoint

    folder = Path(results_folder)
    plans, dataset_json = _read_json(folder / "plans.json"), _read_json(folder / "dataset.json")
    trainer, plans_name, configuration = split_folder_name(folder)
    if trainer is None:
        raise InputError("folder name is not Trainer__Plans__configuration", folder, "give nnU-Net's results folder")
    pm = PlansManager(json.loads(json.dumps(plans)))
    cm = pm.get_configuration(configuration)
    if list(pm.transpose_forward) != [0, 1, 2]:
        raise ModelError(f"plans transpose the axes ({pm.transpose_forward}); a model card cannot describe that",
                         folder / "plans.json", "run the nnU-Net results folder directly in the extension")
    present = [f for f in available_folds(folder) if f != "all"]
    chosen = list(folds) if folds is not None else present
    if not chosen or any(f not in present for f in chosen):
        raise InputError(f"folds {chosen} not all trained (present: {present})", folder, "train them or choose --folds")
    out, tmp = _prepare(out, overwrite)
    weights, sha, mirroring = {}, {}, None
    for f in chosen:
        ckpt = load_checkpoint(find_checkpoint(folder / f"fold_{f}"))
        mirroring = ckpt.get("inference_allowed_mirroring_axes", mirroring)
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt["network_weights"].items()}
        weights[str(f)], sha_val = _write_weights(tmp, f, state)
        sha[weights[str(f)]] = sha_val
    spacing_zyx = [float(s) for s in cm.spacing]
    card = {
        "format": "hntumorseg-model/1", "id": model_id or folder.parent.name.lower() + "-" + trainer.lower(),
        "title": title or f"{trainer} on {pm.dataset_name} ({configuration})", "version": "1",
        "task": task or (dataset_json.get("hntumorseg") or {}).get("task"),
        "inputs": card_inputs(dataset_json, plans, cm), "spacing": spacing_zyx[::-1],
        "patch_size": [int(p) for p in cm.patch_size], "architecture": trainer_architecture(trainer, cm),
        "output": "softmax", "labels": dict(LABELS), "folds": [int(f) for f in chosen], "weights": weights,
        "sha256": sha, "postprocess": postprocess or {},
        "tta_axes": [int(a) for a in mirroring] if mirroring is not None else [0, 1, 2],
        "source": f"nnU-Net v2 {trainer}__{plans_name}__{configuration}, {pm.dataset_name}",
        "trainer": trainer,
    }
    card.update(card_fields)
    return _finish(out, card, tmp)


def export_segresnet(run_folder: str | os.PathLike, out: str | os.PathLike, model_id: str | None = None,
                     title: str | None = None, postprocess: dict | None = None, overwrite: bool = False,
                     **card_fields: Any) -> Path:
    """Export a :mod:`hntumorseg_training.segresnet` run (``run.json`` + ``fold_k.pt``)."""
    from HNTumorSegLib.models.safe_load import load_checkpoint
    from HNTumorSegLib.models.weights import extract_state_dict

    run_folder = Path(run_folder)
    run = _read_json(run_folder / "run.json")
    folds = sorted(int(p.stem.split("_")[1]) for p in run_folder.glob("fold_*.pt"))
    if not folds:
        raise InputError("no fold_k.pt in the SegResNet run", run_folder, "train at least one fold first")
    out, tmp = _prepare(out, overwrite)
    weights, sha = {}, {}
    for f in folds:
        src = run_folder / f"fold_{f}.pt"
        name, digest = _write_weights(tmp, f, extract_state_dict(load_checkpoint(src), src))
        weights[str(f)], sha[name] = name, digest
    card = {
        "format": "hntumorseg-model/1", "id": model_id or f"segresnet-{run.get('task', 'model')}",
        "title": title or "MONAI SegResNetDS (seed 002 recipe)", "version": "1", "task": run.get("task"),
        "inputs": run["inputs"], "spacing": run.get("spacing"), "patch_size": run["patch_size"],
        "architecture": {"name": "SegResNetDS", "kwargs": run.get("network_kwargs", {})}, "output": "softmax",
        "labels": dict(LABELS), "folds": folds, "weights": weights, "sha256": sha, "postprocess": postprocess or {},
        "source": f"hntumorseg_training.segresnet run {run_folder.name}",
    }
    card.update(card_fields)
    return _finish(out, card, tmp)
