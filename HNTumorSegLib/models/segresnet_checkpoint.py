"""MONAI SegResNet(DS) checkpoints as model folders.

A MONAI / Auto3DSeg checkpoint is a bare state_dict or a dict holding it under
``state_dict`` (Auto3DSeg's ``model.pt``) or ``model``; it says nothing about the network's
settings or the inputs. :func:`make_segresnet_folder` wraps one into a model folder: it
copies the file, writes a small ``model.json`` describing the SegResNetDS kwargs (seed
002's by default), the inputs and the labels, records the sha256, and checks that the
weights load strictly. ``load_model`` then treats the folder as ``kind == "segresnet"``.

When the checkpoint comes with its Auto3DSeg ``hyper_parameters.yaml`` (as seed 002's does),
:func:`inputs_from_auto3dseg` reads how it normalised its input: ``normalize_mode: range``
(or ``ct``) with ``intensity_bounds`` becomes ``{"type": "auto3dseg_range", "lo", "hi"}`` -
Auto3DSeg's ``ScaleIntensityRange`` to [-1, 1] followed by a sigmoid - on the image channels,
and each ``extra_modalities`` channel gets its own mode (seed 002's PET, ``pet``:
``{"type": "auto3dseg_pet"}``, sigmoid((x - min) / std)), as the segmenter stacks them
(:func:`HNTumorSegLib.prompts.normalisation.auto3dseg_schemes`, issue 28).

Example:
    >>> import os, torch
    >>> from HNTumorSegLib.networks.segresnet import build_segresnet_ds
    >>> os.mkdir("fold0")          # an (untrained) Auto3DSeg model.pt: two sigmoid maps, GTVp and GTVn
    >>> torch.save({"state_dict": build_segresnet_ds(out_channels=2).state_dict()}, "fold0/model.pt")
    >>> model = make_segresnet_folder("fold0/model.pt", "models/my-segresnet", model_id="my-segresnet",
    ...                               inputs=["CT", "PET"], task="petct", output="sigmoid_regions")
    >>> str(model.kind), sorted(os.listdir("models/my-segresnet"))
    ('segresnet', ['fold_0.pt', 'model.json'])
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ModelError
from .card import CARD_FORMAT, ModelCard, write_card
from .weights import sha256_file

if TYPE_CHECKING:
    from .catalogue import CatalogueEntry
    from .types import CardModel

#: seed 002: inputs scaled to [0, 1] ("Range normalization"), CT windowed beforehand.
DEFAULT_NORMALISATION = {"type": "range"}


def segresnet_card(model_id: str, inputs: Sequence[str | dict], weights: dict[str, str],
                   sha256: dict[str, str], task: str | None = None, kwargs: dict | None = None,
                   output: str = "softmax", labels: dict | None = None, patch_size: Sequence[int] = (144, 144, 144),
                   spacing: Sequence[float] | None = (1.0, 1.0, 1.0), **fields: Any) -> dict:
    """The model.json dict of a SegResNetDS model (seed 002 defaults: 1 mm, 144^3 ROI)."""
    items = [i if isinstance(i, dict) else {"name": i, "normalisation": dict(DEFAULT_NORMALISATION)} for i in inputs]
    card = {
        "format": CARD_FORMAT, "id": model_id, "title": fields.pop("title", f"SegResNetDS {model_id}"),
        "version": "1", "task": task, "inputs": items,
        "spacing": list(spacing) if spacing else None, "patch_size": list(patch_size),
        "architecture": {"name": "SegResNetDS", "kwargs": dict(kwargs or {})},
        "output": output, "labels": labels or {"background": 0, "GTVp": 1, "GTVn": 2},
        "folds": [int(f) if str(f).isdigit() else f for f in weights], "weights": weights, "sha256": sha256,
    }
    card.update(fields)
    return card


def inputs_from_auto3dseg(hyper_parameters: dict, names: Sequence[str]) -> list[dict]:
    """Card inputs for ``names`` from an Auto3DSeg SegResNet config (``normalize_mode``, ``extra_modalities``).

    Example:
        >>> inputs_from_auto3dseg({"normalize_mode": "range", "intensity_bounds": [0.32, 0.63]}, ["CT", "PET"])
        [{'name': 'CT', 'normalisation': {'type': 'auto3dseg_range', 'lo': 0.32, 'hi': 0.63}}, ...]
        >>> [i["normalisation"]["type"] for i in inputs_from_auto3dseg(
        ...     {"normalize_mode": "range", "intensity_bounds": [0.32, 0.63], "extra_modalities": {"image2": "pet"}},
        ...     ["CT", "PET"])]
        ['auto3dseg_range', 'auto3dseg_pet']
    """
    from ..prompts.normalisation import auto3dseg_schemes

    schemes = auto3dseg_schemes(hyper_parameters, len(names))
    return [{"name": str(n), "normalisation": dict(scheme)} for n, scheme in zip(names, schemes)]


def make_segresnet_folder(checkpoints: str | Path | Sequence[str | Path], folder: str | Path, model_id: str,
                          inputs: Sequence[str | dict], task: str | None = None, kwargs: dict | None = None,
                          output: str = "softmax", **fields: Any) -> CardModel:
    """Copy MONAI checkpoint(s) (one per fold) into ``folder`` with a card; returns it loaded."""
    from .loader import load_card_folder

    paths = [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(p) for p in checkpoints]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights, sha = {}, {}
    for fold, src in enumerate(paths):
        if not src.is_file():
            raise ModelError("checkpoint file not found", src, "give the MONAI model.pt of each fold")
        name = f"fold_{fold}{src.suffix or '.pt'}"
        shutil.copyfile(src, folder / name)
        weights[str(fold)] = name
        sha[name] = sha256_file(folder / name)
    card = segresnet_card(model_id, inputs, weights, sha, task=task, kwargs=kwargs, output=output, **fields)
    ModelCard.from_dict(card, folder / "model.json")  # validate before writing
    write_card(card, folder / "model.json")
    return load_card_folder(folder)  # proves the weights fit (strict load)


# ---- UW LAIR (HNTS-MRG 2024 task 1) -----------------------------------------------------------------
#: What UW LAIR's released checkpoints need (their Dropbox release: ``model_0.pt`` ... ``model_9.pt``,
#: dicts with ``state_dict``): MONAI SegResNetDS, blocks_down [1, 2, 2, 4, 4, 4], dsdepth 4, one T2
#: input, 3 classes; ``NormalizeIntensity(nonzero=True)`` (z-score over non-zero voxels); MONAI arrays in
#: x, y, z order; sliding window ROI [128, 192, 192] (x, y, z). Assumed where the release says nothing:
#: init_filters 32 and act relu (MONAI's defaults), instance norm (Auto3DSeg's); a checkpoint made otherwise
#: fails the strict load (a batch-norm one has running statistics) - exit 2, not a silent wrong network.
UW_LAIR = {"kwargs": {"blocks_down": [1, 2, 2, 4, 4, 4], "dsdepth": 4, "init_filters": 32, "norm": "INSTANCE",
                      "act": "relu", "in_channels": 1, "out_channels": 3},
           "roi_xyz": [128, 192, 192], "spacing": None, "axis_order": "xyz",
           "inputs": [{"name": "T2", "normalisation": {"type": "zscore", "nonzero": True}}]}


def uw_lair_card_fields(spec: dict[str, Any], entry: CatalogueEntry | None = None) -> dict[str, Any]:
    """Card fields for UW LAIR-style checkpoints from a catalogue ``segresnet`` block (defaults: :data:`UW_LAIR`).

    ``roi_xyz`` is MONAI's ROI in the network's x, y, z array order; the card's ``patch_size`` is
    z, y, x (the order our sliding window runs in), and ``axis_order: xyz`` makes the loader wrap
    each network so it still sees x, y, z arrays (:mod:`HNTumorSegLib.networks.axis_order`).
    """
    spec = {**UW_LAIR, **(spec or {})}
    kwargs = {k: v for k, v in spec["kwargs"].items() if k not in ("in_channels", "out_channels")}
    fields = {"kwargs": kwargs, "inputs": spec["inputs"], "task": (entry and entry.task) or spec.get("task"),
              "patch_size": list(spec["roi_xyz"])[::-1], "spacing": spec.get("spacing"),
              "axis_order": spec["axis_order"], "title": (entry and entry.title) or "SegResNetDS ensemble",
              "licence": entry.licence if entry else "", "citation": entry.citation if entry else ""}
    return fields


def write_segresnet_card(folder: str | Path, model_id: str, checkpoints: Sequence[Path], **fields: Any) -> Path:
    """Write ``model.json`` for checkpoints already in ``folder``: one fold per checkpoint (an ensemble).

    The card is validated and every checkpoint must load strictly (a ModelError otherwise).
    """
    from .loader import load_card_folder

    folder = Path(folder)
    inputs, kwargs = fields.pop("inputs"), fields.pop("kwargs")
    weights = {str(i): Path(p).name for i, p in enumerate(checkpoints)}
    sha = {Path(p).name: sha256_file(folder / Path(p).name) for p in checkpoints}
    card = segresnet_card(model_id, inputs, weights, sha, kwargs=kwargs, **fields)
    ModelCard.from_dict(card, folder / "model.json")
    write_card(card, folder / "model.json")
    load_card_folder(folder, folds="0")  # the first checkpoint loads strictly: the description is right
    return folder / "model.json"
