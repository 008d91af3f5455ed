"""``python -m hntumorseg_training outcome-train``: seed 004's RFS / HPV networks, 5-fold CV, export.

Example:
    $ python -m hntumorseg_training outcome-train --data HECKTOR2025/Task2 \\
          --clinical HECKTOR_2025_Training_Task_2.csv --out models/outcome --endpoints rfs hpv
    $ hntumorseg outcome --model models/outcome --input CT=... --input PET=... --labels L --clinical ehr.json

Prints progress lines (endpoint, fold, epoch, validation metric) and at the end the pooled
out-of-fold C-index / HPV metrics; writes the outcome model folder (weights + model.json, whose
``endpoints.<name>.cv`` keeps those estimates). Patch size and spacing default to the seed (96^3 at 1 mm).

``--preset medai-hpv`` trains seed 004's released HPV recipe (:mod:`.presets`: focal loss,
KFold seed 3407, 30 epochs, batch 8, lr 5e-5, wd 1e-2, balanced batches, temperature scaling
and a Youden threshold per fold); it trains the HPV endpoint only, and an option given
explicitly (``--epochs``, ``--batch-size``, ``--folds``, ``--seed``, ``--hpv-loss``) wins over it.
"""

from __future__ import annotations

import argparse
import json
import time

from HNTumorSegLib.metrics.report import to_jsonable
from HNTumorSegLib.outcome.classification import DEFAULT_HPV_LOSS, HPV_LOSSES
from HNTumorSegLib.outcome.patch import PatchSpec
from HNTumorSegLib.vocab import EmptyLabel, OutcomePreset


def add_parser(sub) -> None:
    c = sub.add_parser("outcome-train", help="seed 004 RFS/HPV networks: 5-fold CV -> outcome model folder")
    c.add_argument("--data", required=True, help="folder holding <id>__CT, <id>__PT and <id> label images")
    c.add_argument("--clinical", required=True, help="clinical CSV (HECKTOR 2025 columns, RFS, Relapse, HPV Status)")
    c.add_argument("--out", required=True, help="outcome model folder to write")
    c.add_argument("--endpoints", nargs="+", choices=("rfs", "hpv"), default=None,
                   help="default: rfs hpv (with --preset: the preset's)")
    c.add_argument("--preset", choices=OutcomePreset.values(), default=None,
                   help="medai-hpv: seed 004's released HPV recipe (focal loss, KFold seed 3407, 30 epochs, "
                        "batch 8, lr 5e-5, wd 1e-2, balanced batches, temperature scaling, Youden threshold)")
    c.add_argument("--empty-label", choices=EmptyLabel.values(), default=None,
                   help="the volume (MTV, NTV) of an empty label: median (default, as released: the training "
                        "median) or zero (0.0 mL)")
    c.add_argument("--epochs", type=int, default=None, help="default: 20 (RFS), 30 (HPV)")
    c.add_argument("--batch-size", type=int, default=None, help="default 16")
    c.add_argument("--folds", type=int, default=None, help="default 5")
    c.add_argument("--seed", type=int, default=None, help="default 0")
    c.add_argument("--hpv-loss", choices=HPV_LOSSES, default=None, help=f"default {DEFAULT_HPV_LOSS.value}")
    c.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96], metavar=("Z", "Y", "X"))
    c.add_argument("--spacing", type=float, default=1.0, help="patch voxel size in mm (isotropic)")
    c.add_argument("--width", type=int, nargs=4, default=[32, 64, 128, 256], help="ResNet-18 block widths")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    c.add_argument("--id", default="outcome-seed004")
    c.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> None:
    import torch

    from HNTumorSegLib.errors import InputError

    from .data import load_cohort
    from .export import export_outcome_model
    from .train import TrainConfig, train_endpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "n_folds": args.folds, "seed": args.seed,
             "hpv_loss": args.hpv_loss, "empty_label": args.empty_label}
    if args.preset:
        from .presets import PRESET_ENDPOINTS, preset_config

        preset = OutcomePreset.parse(args.preset, "preset")
        endpoints = args.endpoints or list(PRESET_ENDPOINTS[preset])
        if set(endpoints) - set(PRESET_ENDPOINTS[preset]):
            raise InputError(f"the {preset.value} preset trains {' and '.join(PRESET_ENDPOINTS[preset])} only", None,
                             f"pass --endpoints {' '.join(PRESET_ENDPOINTS[preset])} or leave --preset out")
        config = preset_config(preset, **given, block_inplanes=tuple(args.width))
    else:
        endpoints = args.endpoints or ["rfs", "hpv"]
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None}, block_inplanes=tuple(args.width))
    if min(args.patch) < 8 or args.spacing <= 0 or config.batch_size < 2:
        raise InputError("patch must be at least 8 voxels, spacing positive, batch size at least 2", None,
                         "check --patch, --spacing and --batch-size")
    spec = PatchSpec(size_zyx=tuple(args.patch), spacing_xyz_mm=(args.spacing,) * 3)
    t0 = time.perf_counter()
    cases = load_cohort(args.data, args.clinical, spec, progress=lambda m: print(m, flush=True))
    results = []
    for endpoint in endpoints:
        res = train_endpoint(cases, endpoint, config, progress=lambda m: print(m, flush=True))
        cv = json.dumps(to_jsonable(res.cv), allow_nan=False)   # strict: an undefined score is null
        print(f"{endpoint} cross-validation (pooled out-of-fold): {cv}", flush=True)
        results.append(res)
    out = export_outcome_model(args.out, results, spec, config, model_id=args.id, overwrite=args.overwrite,
                               training_info={"patients": len(cases), "seconds": round(time.perf_counter() - t0, 1)})
    print(f"wrote {out}")
