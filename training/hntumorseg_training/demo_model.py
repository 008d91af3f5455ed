"""Train the bundled demo models on synthetic phantoms (CPU, minutes).

    python -m hntumorseg_training.demo_model --task midrt --out HNTumorSegLib/resources/models/demo-midrt
    python -m hntumorseg_training.demo_model --task petct --out HNTumorSegLib/resources/models/demo-petct

The demo models exist so that ``hntumorseg demo`` runs offline, end to end, on a fresh
install. They are trained on phantoms only (:mod:`HNTumorSegLib.phantoms`) and are **not** for
use on patient images; the model card says so.

What is trained (choices; the seeds describe far bigger models):

* network: a small STU-Net (:class:`HNTumorSegLib.networks.stunet.STUNet`, 6 stages,
  channels 8-16-24-32-48-48, one residual block per stage, ~0.68 M parameters, ~2.7 MB),
  softmax over background / GTVp / GTVn;
* ``midrt``: seed 003's recipe in miniature - inputs ``[T2 (z-score), gradient_map]``; the
  gradient map lives in boxes around the *registered pre-RT* lesions with a random margin of
  4-7 voxels below and 3-6 above (seed 003's released perturbation; the bundled demo-midrt
  weights predate this and were drawn with the paper's 2-6); pre-RT images with boxes from their own
  mask are added as extra training cases (as seed 003 does). Spacing 0.9 x 0.9 x 3.0 mm (the
  phantoms' own), patch 16 x 48 x 48. Patches are centred on a box voxel (2/3) or anywhere
  (1/3): at inference only tiles near the boxes run;
* ``petct``: inputs ``[CT window [-110, 190] HU -> [-1, 1] (seed 002), PET clip 0-15 SUV -> [0, 1]]``
  on seed 004's head crop (:func:`HNTumorSegLib.prompts.head_localisation.locate_head`) made at
  2 mm isotropic, patch 16 x 64 x 64; patches centred on a lesion voxel half of the time.
  Choice: a fixed SUV range rather than min-max, so the channel does not depend on the crop.
* loss: cross-entropy + soft Dice of GTVp and GTVn (batch Dice, nnU-Net's pairing);
  AdamW, learning rate 3e-3 with polynomial decay (power 0.9); random flips on all three
  axes (so mirroring TTA is valid) and a +/-10 % intensity scale of the first channel;
* phantom seeds ``--first-seed`` (1000) onwards; tests score seeds 0-4, never trained on.

Training stops after ``--iterations`` or ``--minutes``, whichever comes first; ``--resume DIR``
continues from a model folder's weights (the card keeps the earlier runs under
``training.earlier_runs``). The bundled models were trained in two runs each on the shared
2-core machine (see their cards). The weights are
saved as a ``state_dict`` (``fold_0.pt``) and the card (``model.json``) records their sha256.
The inference side (channels) is shared with the pipeline: :mod:`HNTumorSegLib.pipeline.channels`.

Example:
    >>> card = demo_card("midrt")
    >>> x, y, sample_mask = midrt_training_cases(card, seeds=[1000])[0]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from HNTumorSegLib.fileio import read_json
from HNTumorSegLib.image import Image, resample_to, resample_to_spacing
from HNTumorSegLib.models.card import DEFAULT_BOX_MARGIN_VOX, ModelCard, write_card
from HNTumorSegLib.pipeline.channels import model_channels
from HNTumorSegLib.prompts.boxes import boxes_from_mask, boxes_to_mask
from HNTumorSegLib.prompts.margins import SEED003_RELEASED

#: deterministic per-side box margin at inference (voxels), written as the card's declared
#: ``box_margin_vox``: seed 003's fixed inference margin (why 4: HNTumorSegLib/models/card.py).
INFERENCE_BOX_MARGIN_VOX = DEFAULT_BOX_MARGIN_VOX
TRAIN_RANDOM_MARGIN_VOX = SEED003_RELEASED  # seed 003's released draw (4-7 below, 3-6 above)

DIMS = (8, 16, 24, 32, 48, 48)
STRIDES = {  # STU-Net always has 5 strides; the last is 1 so small patches fit
    "midrt": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 1, 1]],
    "petct": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1]],
}
PATCH = {"midrt": [16, 48, 48], "petct": [16, 64, 64]}
SPACING = {"midrt": [0.9, 0.9, 3.0], "petct": [2.0, 2.0, 2.0]}

DEMO_NOTICE = ("For demonstration on synthetic data only: trained on HNTumorSeg's phantoms, "
               "never on patient images. Do not use it for patients or for research results.")


def demo_card(task: str) -> dict:
    """The model card (``model.json`` content, without weights digests) of a demo model."""
    if task == "midrt":
        inputs = [{"name": "T2", "normalisation": {"type": "zscore"}},
                  {"name": "gradient_map", "derived_from": "T2", "normalisation": {"type": "none"}}]
        title = "Demo mid-RT T2 model (synthetic phantoms only)"
        post = {"min_volume_ml": {"1": 0.05, "2": 0.02}, "keep_largest_gtvp": False}
    elif task == "petct":
        inputs = [{"name": "CT", "normalisation": {"type": "window", "lo": -110.0, "hi": 190.0}},
                  {"name": "PET", "normalisation": {"type": "range", "lo": 0.0, "hi": 15.0}}]
        title = "Demo PET/CT model (synthetic phantoms only)"
        post = {"min_volume_ml": {"1": 0.2, "2": 0.1}, "keep_largest_gtvp": False}
    else:
        raise ValueError(f"task must be midrt or petct, got {task!r}")
    n = len(DIMS)
    card = {
        "format": "hntumorseg-model/1",
        "id": f"demo-{task}", "title": title, "version": "1", "task": task,
        "inputs": inputs,
        "spacing": SPACING[task], "patch_size": PATCH[task],
        "architecture": {"name": "STUNet", "kwargs": {
            "depth": [1] * n, "dims": list(DIMS), "pool_op_kernel_sizes": STRIDES[task],
            "conv_kernel_sizes": [[3, 3, 3]] * n}},
        "output": "softmax",
        "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
        "folds": [0], "weights": {"0": "fold_0.pt"},
        "postprocess": post,
        "tta_axes": [0, 1, 2],
        "licence": "Apache-2.0",
        "source": "trained by training/hntumorseg_training/demo_model.py on HNTumorSegLib.phantoms",
        "citation": "HNTumorSeg demo model (synthetic). Recipe after seed 003 (midrt) / seeds 002, 004 (petct).",
        "intended_use": DEMO_NOTICE,
        # boxes around the prior's lesions at inference (pipeline and Slicer read the same field)
        "box_margin_vox": INFERENCE_BOX_MARGIN_VOX,
    }
    return card


# ---- data ------------------------------------------------------------------------------------

def _sample(card: ModelCard, images: dict[str, Image], label: Image, boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = model_channels(card, images, boxes)
    focus = boxes_to_mask(boxes, label) if boxes else label.array > 0
    return x, label.array.astype(np.int64), focus


def midrt_training_cases(card: ModelCard, seeds: Sequence[int], rng: np.random.Generator | None = None):
    """(channels, labels, focus mask) per training image: mid-RT with registered pre-RT boxes, plus pre-RT."""
    from HNTumorSegLib.phantoms import make_midrt_case

    rng = rng or np.random.default_rng(0)
    out = []
    for seed in seeds:
        case = make_midrt_case(seed=int(seed))
        for image, prior, truth in ((case["midRT_T2"], case["preRT_mask_registered"], case["midRT_mask"]),
                                    (case["preRT_T2"], case["preRT_mask"], case["preRT_mask"])):
            grid = resample_to_spacing(image, card.spacing_xyz, interpolator="linear") \
                if not np.allclose(image.spacing, card.spacing_xyz) else image
            boxes = boxes_from_mask(resample_to(prior, image, label=True),
                                    random_margin_vox=TRAIN_RANDOM_MARGIN_VOX, rng=rng)
            out.append(_sample(card, {"T2": grid}, resample_to(truth, grid, label=True), boxes))
    return out


def petct_training_cases(card: ModelCard, seeds: Sequence[int], rng: np.random.Generator | None = None):
    """(channels, labels, lesion mask) per phantom on seed 004's head crop at the card's spacing."""
    from HNTumorSegLib.phantoms import make_petct_case
    from HNTumorSegLib.prompts.head_localisation import locate_head

    out = []
    for i, seed in enumerate(seeds):
        case = make_petct_case(seed=int(seed), tall=(i % 4 == 3))
        crop = locate_head(case["CT"], case["PET"], spacing=float(card.spacing_xyz[0]))
        label = resample_to(case["mask"], crop.ct, label=True)
        out.append(_sample(card, {"CT": crop.ct, "PET": crop.pet}, label, None))
    return out


def _random_patch(x: np.ndarray, y: np.ndarray, focus: np.ndarray, patch: Sequence[int],
                  rng: np.random.Generator, p_focus: float) -> tuple[np.ndarray, np.ndarray]:
    shape = np.array(y.shape)
    patch = np.array(patch)
    pad = np.maximum(patch - shape, 0)
    if pad.any():  # images smaller than the patch: pad (zero channels, background labels)
        widths = [(0, 0)] + [(0, int(p)) for p in pad]
        x = np.pad(x, widths)
        y = np.pad(y, widths[1:])
        focus = np.pad(focus, widths[1:])
        shape = np.array(y.shape)
    if rng.random() < p_focus and focus.any():
        idx = np.argwhere(focus)
        centre = idx[rng.integers(len(idx))]
        start = np.clip(centre - patch // 2 + rng.integers(-patch // 4, patch // 4 + 1), 0, shape - patch)
    else:
        start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, patch)])
    sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch))
    xp, yp = x[(slice(None),) + sl].copy(), y[sl].copy()
    for axis in range(3):  # mirroring: keeps TTA valid
        if rng.random() < 0.5:
            xp, yp = np.flip(xp, axis + 1), np.flip(yp, axis)
    xp = np.ascontiguousarray(xp)
    xp[0] *= np.float32(rng.uniform(0.9, 1.1))
    return xp, np.ascontiguousarray(yp)


# ---- training -------------------------------------------------------------------------------

def build_network(card: ModelCard):
    """The STU-Net the card describes (the same construction the model loader uses)."""
    from HNTumorSegLib.networks import build_network as build

    return build(card.architecture, card.num_input_channels, card.num_output_channels)


def _loss(logits, target, num_classes: int):
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target)
    prob = torch.softmax(logits, 1)
    onehot = F.one_hot(target, num_classes).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)  # batch Dice per class
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean())


def train(task: str, out: Path, n_cases: int = 40, first_seed: int = 1000, iterations: int = 1500,
          minutes: float = 12.0, batch: int = 2, threads: int = 1, seed: int = 0, log=print,
          resume: Path | None = None, lr: float = 3e-3) -> dict:
    """Train one demo model and write ``fold_0.pt`` + ``model.json`` into ``out``; returns the card dict."""
    import torch

    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    card_dict = demo_card(task)
    card = ModelCard.from_dict(card_dict)
    t0 = time.time()
    seeds = list(range(first_seed, first_seed + n_cases))
    data = (midrt_training_cases(card, seeds, rng) if task == "midrt" else petct_training_cases(card, seeds, rng))
    log(f"{len(data)} training images from phantom seeds {seeds[0]}-{seeds[-1]} in {time.time() - t0:.0f} s")

    net = build_network(card)
    if resume is not None:  # continue from earlier weights (e.g. a run the time limit cut short)
        net.load_state_dict(torch.load(Path(resume) / "fold_0.pt", weights_only=True))
        log(f"resumed from {resume}")
    log(f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    p_focus = 2 / 3 if task == "midrt" else 0.5
    t_start, losses = time.time(), []
    it = 0
    for it in range(1, iterations + 1):
        frac = min(1.0, max(it / iterations, (time.time() - t_start) / (minutes * 60)))
        for group in opt.param_groups:
            group["lr"] = lr * (1 - frac) ** 0.9
        xs, ys = zip(*(_random_patch(*data[rng.integers(len(data))], card.patch_size_zyx, rng, p_focus)
                       for _ in range(batch)))
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys))
        loss = _loss(net(x), y, card.num_output_channels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if it % 50 == 0:
            log(f"iteration {it}: loss {np.mean(losses[-50:]):.3f} ({time.time() - t_start:.0f} s)")
        if frac >= 1.0:
            break

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "fold_0.pt"
    net.eval()
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, weights)
    card_dict["sha256"] = {"fold_0.pt": hashlib.sha256(weights.read_bytes()).hexdigest()}
    card_dict["training"] = {"phantom_seeds": [seeds[0], seeds[-1]], "iterations": it, "batch": batch,
                             "resumed_from_earlier_run": resume is not None,
                             "final_loss": round(float(np.mean(losses[-50:])), 4),
                             "minutes": round((time.time() - t_start) / 60, 1)}
    if resume is not None:  # keep the history: what the resumed weights had already seen
        earlier = read_json(Path(resume) / "model.json", "model.json").get("training", {})   # depth-limited
        history = earlier.pop("earlier_runs", [])
        card_dict["training"]["earlier_runs"] = history + [earlier]
    write_card(card_dict, out)
    log(f"wrote {weights} and {out / 'model.json'} after {it} iterations")
    return card_dict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train a bundled demo model on synthetic phantoms (CPU).")
    p.add_argument("--task", choices=("midrt", "petct"), required=True)
    p.add_argument("--out", type=Path, required=True, help="model folder to write (model.json + fold_0.pt)")
    p.add_argument("--cases", type=int, default=40, help="phantoms to train on (default 40)")
    p.add_argument("--first-seed", type=int, default=1000, help="first phantom seed (tests use 0-4)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--minutes", type=float, default=12.0, help="stop after this wall time")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--resume", type=Path, default=None, help="start from the weights in this model folder")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate (default 3e-3)")
    args = p.parse_args(argv)
    train(args.task, args.out, n_cases=args.cases, first_seed=args.first_seed, iterations=args.iterations,
          minutes=args.minutes, threads=args.threads, log=lambda m: print(m, flush=True),
          resume=args.resume, lr=args.lr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
