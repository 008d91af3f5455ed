"""MONAI SegResNetDS training with seed 002's recipe, on the splits of a converted dataset (torchrun-ready).

Recipe (seed 002, Table 4, an Auto3DSeg ``segresnet``): SegResNetDS (init filters 32, blocks
down [1, 2, 2, 4, 4], deep supervision depth 4, instance norm; :data:`HNTumorSegLib.networks.segresnet.SEED002_SEGRESNET`),
AdamW (weight decay 1e-5), Dice + cross-entropy (background included, squared prediction,
softmax) on every deep-supervision output (MONAI ``DeepSupervisionLoss``, exponential weights),
AMP on CUDA, batch 1, 144^3 patches at 1 mm, 300 epochs, on two RTX 3090 GPUs.

Choices where the seed is vague:

* learning rate 2e-4 with cosine decay (Auto3DSeg segresnet's default; the seed gives none);
* patches: MONAI ``RandCropByPosNegLabeld`` (pos 1 : neg 1) plus random flips on all three axes;
* "Range normalisation": CT windowed [-110, 190] HU -> [-1, 1] and PET min-max -> [0, 1] (what
  seed 002 states for its inputs); other tasks keep the converter's schemes (T2 z-score);
  channels stored already normalised (``noNorm`` in dataset.json, the 4-channel CT) are not
  normalised again. The normalisation is HNTumorSegLib's :func:`~HNTumorSegLib.prompts.normalisation.normalise`
  and is written to ``run.json``, so inference (the model card) computes exactly the same;
* the checkpoint kept for a fold is the one with the best mean validation Dice (GTVp, GTVn)
  (Auto3DSeg keeps its best model), evaluated every ``val_every`` epochs by MONAI sliding-window
  inference; the last one is kept too (``fold_k_last.pt``);
* images are resampled to ``spacing`` (default 1 mm, the seed's fine ROI) with HNTumorSegLib and
  held in memory.

Several GPUs: ``torchrun --nproc_per_node=2 -m hntumorseg_training segresnet ...`` (DDP, one
process per GPU, each sees a disjoint shard of the training cases; rank 0 validates and saves).

Example:
    >>> train_segresnet("Dataset504_HECKTORPETCTCrop/datalist.json", fold=0, out="runs/segresnet")
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import read_json, write_json_atomic
from HNTumorSegLib.image import read_image, resample_to_spacing
from HNTumorSegLib.metrics.report import to_jsonable
from HNTumorSegLib.prompts.ct_channels import CT_WINDOW_HU
from HNTumorSegLib.prompts.normalisation import normalise

SEED002 = {"roi": (144, 144, 144), "spacing": (1.0, 1.0, 1.0), "epochs": 300, "lr": 2e-4, "weight_decay": 1e-5,
           "batch_size": 1}


def training_inputs(datalist: dict) -> list[dict]:
    """The card inputs SegResNet trains with (seed 002's range normalisation for PET/CT)."""
    out = []
    for spec in datalist["inputs"]:
        spec = json.loads(json.dumps(spec))
        if datalist.get("task") == "petct" and spec["name"] == "CT" and spec["normalisation"]["type"] == "ct":
            spec["normalisation"] = {"type": "window", "lo": CT_WINDOW_HU[0], "hi": CT_WINDOW_HU[1]}
        elif datalist.get("task") == "petct" and spec["name"] == "PET" and spec["normalisation"]["type"] == "zscore":
            spec["normalisation"] = {"type": "range"}
        out.append(spec)
    return out


def load_case(entry: dict, inputs: Sequence[dict], stored_normalised: Sequence[bool],
              spacing: Sequence[float] | None) -> dict:
    """``{"image": (C, z, y, x) float32, "label": (1, z, y, x)}`` of one datalist entry."""
    channels = []
    for path, spec, done in zip(entry["image"], inputs, stored_normalised):
        img = read_image(path)
        if spacing is not None:
            img = resample_to_spacing(img, tuple(spacing))
        channels.append(img.array.astype(np.float32) if done else normalise(img.array, spec["normalisation"]))
    label = read_image(entry["label"], label=True)
    if spacing is not None:
        label = resample_to_spacing(label, tuple(spacing), label=True)
    return {"image": np.stack(channels), "label": label.array[None].astype(np.uint8), "case_id": entry["case_id"]}


def _dist() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (1 process without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def train_segresnet(datalist_path: str | os.PathLike, fold: int, out: str | os.PathLike, epochs: int | None = None,
                    roi: Sequence[int] | None = None, spacing: Sequence[float] | None | str = "seed",
                    iterations_per_epoch: int | None = None, val_every: int = 10, lr: float | None = None,
                    network_overrides: dict | None = None, device: str = "auto", seed: int = 0) -> Path:
    """Train one fold; writes ``run.json``, ``fold_<k>.pt`` (best) and ``fold_<k>_last.pt`` under ``out``."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DeepSupervisionLoss, DiceCELoss
    from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, SpatialPadd

    from HNTumorSegLib.metrics.overlap import dsc
    from HNTumorSegLib.networks.segresnet import SEED002_SEGRESNET, build_segresnet_ds
    from hntumorseg_training.converters.monai_datalist import fold_lists

    rank, world, local_rank = _dist()
    if world > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() and device in ("auto", "cuda") else "cpu")
    torch.manual_seed(seed + rank)
    datalist = read_json(datalist_path, "datalist")   # depth-limited, strict: one reader for every JSON given
    train_entries, val_entries = fold_lists(datalist, fold)
    if not train_entries:
        raise InputError(f"fold {fold} has no training case", Path(datalist_path), "convert more cases")
    inputs = training_inputs(datalist)
    raw = read_json(Path(train_entries[0]["label"]).parents[1] / "dataset.json", "dataset.json")
    stored = [raw["channel_names"][str(i)].lower() == "nonorm" for i in range(len(inputs))]
    spacing = SEED002["spacing"] if spacing == "seed" else spacing
    roi = tuple(int(r) for r in (roi or SEED002["roi"]))
    epochs = int(epochs or SEED002["epochs"])
    train_entries = train_entries[rank::world]  # each DDP process trains on its own shard
    train_data = [load_case(e, inputs, stored, spacing) for e in train_entries]
    val_data = [load_case(e, inputs, stored, spacing) for e in val_entries] if rank == 0 else []
    augment = Compose([SpatialPadd(["image", "label"], roi),
                       RandCropByPosNegLabeld(["image", "label"], "label", roi, pos=1, neg=1, num_samples=1),
                       RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
                       RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
                       RandFlipd(["image", "label"], prob=0.5, spatial_axis=2)])
    kwargs = dict(network_overrides or {})
    net = build_segresnet_ds(in_channels=len(inputs), out_channels=3, **kwargs).to(dev)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr or SEED002["lr"], weight_decay=SEED002["weight_decay"])
    steps = int(iterations_per_epoch or max(1, len(train_data)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps)
    loss_fn = DeepSupervisionLoss(DiceCELoss(include_background=True, to_onehot_y=True, softmax=True,
                                             squared_pred=True), weight_mode="exp")
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    best, log = -math.inf, []
    rng = np.random.default_rng(seed + rank)
    for epoch in range(epochs):
        model.train()
        t0, losses = time.time(), []
        for _ in range(steps):
            sample = augment(dict(train_data[int(rng.integers(len(train_data)))]))[0]
            x = torch.as_tensor(np.asarray(sample["image"]))[None].float().to(dev)
            y = torch.as_tensor(np.asarray(sample["label"]))[None].float().to(dev)  # float: DS loss resizes it
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, enabled=use_amp):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
        record: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.time() - t0}
        if rank == 0 and val_data and ((epoch + 1) % val_every == 0 or epoch == epochs - 1):
            net.eval()
            scores = []
            with torch.no_grad(), torch.autocast(dev.type, enabled=use_amp):
                for case in val_data:
                    x = torch.as_tensor(case["image"])[None].to(dev)
                    pred = sliding_window_inference(x, roi, 1, net, overlap=0.5).argmax(1)[0].cpu().numpy()
                    for lab in (1, 2):
                        score = dsc(pred == lab, case["label"][0] == lab)
                        scores.append(1.0 if score is None else score)  # both empty: perfect, as HNTS-MRG
            record["val_dice"] = float(np.mean(scores))
            if record["val_dice"] > best:
                best = record["val_dice"]
                torch.save(net.state_dict(), out / f"fold_{fold}.pt")
        log.append(record)
        if rank == 0:
            print(json.dumps(to_jsonable(record), allow_nan=False), flush=True)   # strict: a NaN loss -> null
    if rank == 0:
        torch.save(net.state_dict(), out / f"fold_{fold}_last.pt")
        if not (out / f"fold_{fold}.pt").exists():  # no validation case: keep the last
            torch.save(net.state_dict(), out / f"fold_{fold}.pt")
        network_kwargs = {k: v for k, v in {**SEED002_SEGRESNET, **kwargs}.items()
                          if k not in ("in_channels", "out_channels")}
        write_json_atomic(out / "run.json", to_jsonable({
            "task": datalist.get("task"), "inputs": inputs, "spacing": list(spacing) if spacing else None,
            "patch_size": list(roi), "network_kwargs": json.loads(json.dumps(network_kwargs, default=list)),
            "recipe": {"optimizer": "AdamW", "lr": lr or SEED002["lr"], "weight_decay": SEED002["weight_decay"],
                       "epochs": epochs, "iterations_per_epoch": steps, "amp": use_amp, "world_size": world},
            "datalist": str(Path(datalist_path).resolve()), "log_fold_%d" % fold: log}))   # strict JSON
    if world > 1:
        torch.distributed.destroy_process_group()
    return out
