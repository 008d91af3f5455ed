"""Small STU-Net stage models for seed 002's coarse-to-fine pipeline, trained in-process (seconds to minutes).

The seed's own stages are nnU-Net folders trained with ``nnUNetv2_train`` on the datasets that
:func:`hntumorseg_training.converters.seed002.convert_seed002` writes (head, coarse, fine) and
put together with :func:`write_seed002_ensemble`. For tests, demos and a first try on a new
machine, :func:`train_stage` trains a small STU-Net model card per stage on the same samples
(:func:`~hntumorseg_training.converters.seed002.stage_samples`) with the demo models' loop
(:mod:`hntumorseg_training.demo_model`: random patches, flips, cross-entropy + Dice, AdamW),
so the whole pipeline can run end to end without a GPU.

Stage cards read the images the pipeline prepared (no second crop; inputs ``none``, the fine
stage's powers derived from them), with the grid the pipeline gives each stage: head region 2 x
2 x 3 mm, coarse 2 mm, fine 1 mm (``spacing`` may coarsen a stage for speed; the pipeline
resamples to it and back).

Example:
    >>> samples = [stage_samples(c["CT"], c["PET"], c["mask"]) for c in cases]
    >>> train_stage("head", [s.head for s in samples], out / "head", iterations=40)
    >>> write_seed002_ensemble(out / "seed002", out / "head", out / "coarse", [(out / "fine", 1.0)])
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from HNTumorSegLib.image import Image, resample_to, resample_to_spacing
from HNTumorSegLib.models.card import ModelCard, write_card
from HNTumorSegLib.models.ensemble_card import write_ensemble
from HNTumorSegLib.vocab import Checkpoint
from HNTumorSegLib.pipeline.channels import model_channels

from .converters.seed002 import HEAD_LABELS, PREPARED, fine_stage_inputs
from .demo_model import DIMS, _loss, _random_patch, build_network

GTV_LABELS = {"background": 0, "GTVp": 1, "GTVn": 2}
STRIDES = [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1]]


def stage_card(stage: str, patch_zyx: Sequence[int] = (16, 48, 48), spacing_xyz: Sequence[float] | None = None,
               fine_channels: int = 2) -> dict:
    """The model card of a small STU-Net for one stage (``head``, ``coarse`` or ``fine``)."""
    if stage == "head":
        inputs, labels = [{"name": "CT", "normalisation": dict(PREPARED)}], HEAD_LABELS
    elif stage == "coarse":
        inputs = [{"name": "CT", "normalisation": dict(PREPARED)}, {"name": "PET", "normalisation": dict(PREPARED)}]
        labels = GTV_LABELS
    elif stage == "fine":
        inputs, labels = fine_stage_inputs(fine_channels), GTV_LABELS
    else:
        raise ValueError(f"stage must be head, coarse or fine, got {stage!r}")
    n = len(DIMS)
    return {
        "format": "hntumorseg-model/1", "id": f"seed002-{stage}-tiny", "version": "1",
        "title": f"seed 002 {stage} stage, small STU-Net (phantoms)", "task": "petct",
        "inputs": inputs, "spacing": list(spacing_xyz) if spacing_xyz else None, "patch_size": list(patch_zyx),
        "architecture": {"name": "STUNet", "kwargs": {"depth": [1] * n, "dims": list(DIMS),
                                                      "pool_op_kernel_sizes": STRIDES,
                                                      "conv_kernel_sizes": [[3, 3, 3]] * n}},
        "output": "softmax", "labels": dict(labels), "folds": [0], "weights": {"0": "fold_0.pt"},
        "tta_axes": [0, 1, 2], "licence": "Apache-2.0",
        "source": "hntumorseg_training.seed002_stages on HNTumorSegLib.phantoms",
        "intended_use": "Synthetic phantoms only: tests and demonstrations of the coarse-to-fine pipeline.",
    }


def _arrays(card: ModelCard, sample: tuple[list[Image], Image]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    channels, label = sample
    names = [i.name for i in card.inputs if not i.derived_from]
    images = dict(zip(names, channels))
    if card.spacing_xyz is not None:
        images = {k: resample_to_spacing(v, tuple(card.spacing_xyz), interpolator="linear") for k, v in images.items()}
        label = resample_to(label, next(iter(images.values())), label=True)
    x = model_channels(card, images)
    y = label.array.astype(np.int64)
    return x, y, y > 0


def train_stage(stage: str, samples: Sequence[tuple[list[Image], Image]], out: str | Path, iterations: int = 40,
                patch_zyx: Sequence[int] = (16, 48, 48), spacing_xyz: Sequence[float] | None = None,
                fine_channels: int = 2, seed: int = 0, lr: float = 3e-3, batch: int = 2) -> Path:
    """Train one stage's small STU-Net on ``samples`` and write the model folder ``out``."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    card_dict = stage_card(stage, patch_zyx, spacing_xyz, fine_channels)
    card = ModelCard.from_dict(card_dict)
    data = [_arrays(card, s) for s in samples]
    net = build_network(card)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(int(iterations)):
        xs, ys = zip(*(_random_patch(*data[rng.integers(len(data))], card.patch_size_zyx, rng, 0.5)
                       for _ in range(batch)))
        loss = _loss(net(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys)), card.num_output_channels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net.eval()
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, out / "fold_0.pt")
    card_dict["sha256"] = {"fold_0.pt": hashlib.sha256((out / "fold_0.pt").read_bytes()).hexdigest()}
    card_dict["training"] = {"iterations": int(iterations), "cases": len(samples), "final_loss": round(float(loss.detach()), 4)}
    write_card(card_dict, out)
    return out


#: The checkpoint seed 002's released code loads for every stage (README's per-seed table).
SEED002_CHECKPOINT = Checkpoint.BEST.value


def write_seed002_ensemble(folder: str | Path, head: str | Path, coarse: str | Path,
                           fine_members: Sequence[tuple[str | Path, float]], tta: bool = False,
                           head_inputs: dict | None = None, coarse_inputs: dict | None = None,
                           checkpoint: str = SEED002_CHECKPOINT) -> Path:
    """The coarse-to-fine ensemble card tying the stages together (released: no TTA, ``--disable_tta``).

    ``head_inputs`` / ``coarse_inputs`` map a stage's own input names to ``CT``/``PET`` (released
    nnU-Net folders call them ``CT_norm`` / ``PET_norm``). ``checkpoint``: what the nnU-Net
    stages and members run, ``checkpoint_best`` as the released code loads for every stage (head
    and coarse fold "all", fine folds 0-4); card-folder stages run the weights their card names.
    """
    return write_ensemble(folder, {
        "id": Path(folder).name, "title": "seed 002 coarse-to-fine PET/CT (head -> coarse -> fine ensemble)",
        "task": "petct", "inputs": ["CT", "PET"], "pipeline": "seed002-coarse-to-fine", "tta": bool(tta),
        "checkpoint": str(Checkpoint.parse(checkpoint, "checkpoint")),
        "stages": {"head": {"model": str(head), "folds": "all", "inputs": dict(head_inputs or {})},
                   "coarse": {"model": str(coarse), "folds": "all", "inputs": dict(coarse_inputs or {})}},
        "members": [{"model": str(path), "weight": float(weight)} for path, weight in fine_members],
    })
