"""``python -m hntumorseg_training ...``: the training glue as commands (see README section 8, "Training the seeds' models").

Subcommands: ``convert-hntsmrg``, ``convert-hecktor``, ``splits``, ``install-splits``, ``datalist``,
``env`` (prints the nnU-Net environment line for our trainers), ``segresnet``, ``cv-evaluate``,
``ensemble``, ``threshold``, ``export-nnunet``, ``export-segresnet``, ``outcome-train`` (seed 004's
RFS/HPV networks). nnU-Net itself is run with
its own commands (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train``, ``nnUNetv2_predict``).
Every user mistake prints one line on stderr and exits with code 2.

Example:
    $ python -m hntumorseg_training convert-hntsmrg --data HNTSMRG24_train --raw $nnUNet_raw --dataset-id 502 --task midrt
    $ python -m hntumorseg_training splits --dataset $nnUNet_raw/Dataset502_HNTSMRGMidRT --folds 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from HNTumorSegLib.errors import InputError
from HNTumorSegLib.fileio import read_json, write_text_atomic
from HNTumorSegLib.metrics.report import to_jsonable
from HNTumorSegLib.vocab import MRI_TASKS, SplitScheme, Task

TRAINERS_DIR = Path(__file__).resolve().parent / "nnunet_trainers"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hntumorseg_training", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert-hntsmrg", help="HNTS-MRG 2024 folder -> nnU-Net raw dataset")
    c.add_argument("--data", required=True)
    c.add_argument("--raw", default=os.environ.get("nnUNet_raw"), help="nnU-Net raw root (default $nnUNet_raw)")
    c.add_argument("--dataset-id", type=int, required=True)
    c.add_argument("--task", choices=[t.value for t in MRI_TASKS], required=True)
    c.add_argument("--name")
    c.add_argument("--no-prert-extras", action="store_true", help="task 2 without seed 003's pre-RT extra cases")
    c.add_argument("--seed", type=int, default=0, help="seed of the random box margins")
    c.add_argument("--random-margin", default="released", metavar="released|paper|LO-HI",
                   help="seed 003's training box margin: released (its code: 4-7 voxels below, 3-6 above; "
                        "default), paper (2-6 on every side) or LO-HI voxels")
    c = sub.add_parser("convert-hecktor", help="HECKTOR 2025 folder -> nnU-Net raw dataset")
    c.add_argument("--data", required=True)
    c.add_argument("--raw", default=os.environ.get("nnUNet_raw"))
    c.add_argument("--dataset-id", type=int, required=True)
    c.add_argument("--name")
    c.add_argument("--head-crop", action="store_true", help="seed 004's 200x200x310 mm crop at 1 mm")
    c.add_argument("--enhanced", action="store_true",
                   help="seed 002's 4 channels [x, x^2, x^(1/3), PET] (= --channel-set seed002 --channels 4)")
    c.add_argument("--channel-set", choices=["seed002", "seed002_paper"], default=None,
                   help="seed002: the released code's CT window [-105, 195] HU -> [0, 1] (default set); "
                        "seed002_paper: the paper's [-110, 190] -> [-1, 1]")
    c.add_argument("--channels", type=int, default=None, help="how many channels of the set: 2, 4 or 6")
    c = sub.add_parser("splits", help="patient-wise folds -> <dataset>/splits_final.json")
    c.add_argument("--dataset", required=True)
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--seed", type=int, default=12345)
    c.add_argument("--split", choices=SplitScheme.values(), default=SplitScheme.KFOLD.value,
                   help="kfold (default: a true k-fold split by patient, every patient validated once) or "
                        "medai-released (seed 004's fork as it runs: 5-fold KFold for folds 0-4, a random "
                        "80:20 split for each fold >= 5)")
    c = sub.add_parser("install-splits", help="copy splits_final.json into nnUNet_preprocessed (after planning)")
    c.add_argument("--dataset", required=True)
    c.add_argument("--preprocessed", default=os.environ.get("nnUNet_preprocessed"))
    c = sub.add_parser("datalist", help="MONAI datalist JSON (after splits)")
    c.add_argument("--dataset", required=True)
    c.add_argument("--out")
    sub.add_parser("env", help="print the export line that lets nnU-Net find our trainers")
    c = sub.add_parser("segresnet", help="train one SegResNetDS fold (seed 002); use torchrun for several GPUs")
    c.add_argument("--datalist", required=True)
    c.add_argument("--fold", type=int, required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--epochs", type=int)
    c.add_argument("--roi", type=int, nargs=3, help="patch z y x (default 144 144 144)")
    c.add_argument("--native-spacing", action="store_true", help="do not resample to 1 mm")
    c.add_argument("--val-every", type=int, default=10)
    c = sub.add_parser("cv-evaluate", help="score every fold's validation predictions")
    c.add_argument("--results", required=True, help="nnU-Net results folder Trainer__Plans__config")
    c.add_argument("--dataset", required=True, help="the raw dataset folder (labelsTr)")
    c.add_argument("--json")
    c = sub.add_parser("ensemble", help="probability-average prediction folders holding <case>.npz")
    c.add_argument("--out", required=True)
    c.add_argument("folders", nargs="+")
    c = sub.add_parser("threshold", help="search the minimum lesion volume per label on CV predictions")
    c.add_argument("--results", required=True)
    c.add_argument("--dataset", required=True)
    c.add_argument("--thresholds", type=float, nargs="+")
    c.add_argument("--json")
    for kind in ("nnunet", "segresnet"):
        c = sub.add_parser(f"export-{kind}", help=f"{kind} -> model-card folder the extension loads")
        c.add_argument("--source", required=True, help="results folder" if kind == "nnunet" else "run folder")
        c.add_argument("--out", required=True)
        c.add_argument("--id")
        c.add_argument("--title")
        c.add_argument("--postprocess-json", help="JSON from `threshold` (its min_volume_ml goes into the card)")
        c.add_argument("--overwrite", action="store_true")
        if kind == "nnunet":
            c.add_argument("--folds", type=int, nargs="+")
            c.add_argument("--task", choices=Task.values())
    from hntumorseg_training.outcome import command as outcome_command

    outcome_command.add_parser(sub)
    return p


def _need(value, what: str, flag: str) -> str:
    if not value:
        raise InputError(f"no {what} given", None, f"pass {flag} or set the nnU-Net environment variable")
    return value


def _dump(data, path) -> None:
    text = json.dumps(to_jsonable(data), indent=2, default=str, allow_nan=False)   # strict: NaN -> null
    if path:
        write_text_atomic(path, text + "\n")
    print(text if not path else f"wrote {path}")


def run(args: argparse.Namespace) -> None:
    from hntumorseg_training import converters, crossval, export

    cmd = args.command
    if cmd == "convert-hntsmrg":
        print(converters.convert_hntsmrg(args.data, _need(args.raw, "raw root", "--raw"), args.dataset_id, args.task,
                                         args.name, prert_extras=not args.no_prert_extras, seed=args.seed,
                                         random_margin_vox=args.random_margin))
    elif cmd == "convert-hecktor":
        print(converters.convert_hecktor(args.data, _need(args.raw, "raw root", "--raw"), args.dataset_id, args.name,
                                         head_crop=args.head_crop, enhanced=args.enhanced,
                                         channel_set=(args.channel_set or "seed002", args.channels or 4)
                                         if (args.channel_set or args.channels) else None))
    elif cmd == "splits":
        if args.split == SplitScheme.MEDAI_RELEASED.value:
            print(crossval.write_case_splits(args.dataset, args.folds, args.split, args.seed))
        else:
            print(converters.write_dataset_splits(args.dataset, args.folds, args.seed))
    elif cmd == "install-splits":
        print(converters.install_splits(args.dataset, _need(args.preprocessed, "preprocessed root", "--preprocessed")))
    elif cmd == "datalist":
        print(converters.write_datalist(args.dataset, args.out))
    elif cmd == "env":
        print(f"export nnUNet_extTrainer={TRAINERS_DIR}")
    elif cmd == "segresnet":
        from hntumorseg_training.segresnet import train_segresnet

        print(train_segresnet(args.datalist, args.fold, args.out, epochs=args.epochs, roi=args.roi,
                              spacing=None if args.native_spacing else "seed", val_every=args.val_every))
    elif cmd == "cv-evaluate":
        _dump(crossval.evaluate_folds(args.results, args.dataset), args.json)
    elif cmd == "ensemble":
        print("\n".join(crossval.ensemble_folders(args.folders, args.out)))
    elif cmd == "threshold":
        pairs = crossval.pairs_from_folds(args.results, args.dataset)
        _dump(crossval.search_min_volume(pairs, args.thresholds or crossval.DEFAULT_THRESHOLDS_ML), args.json)
    elif cmd in ("export-nnunet", "export-segresnet"):
        post = None
        if args.postprocess_json:
            post = {"min_volume_ml": read_json(args.postprocess_json, "--postprocess-json")["min_volume_ml"]}
        if cmd == "export-nnunet":
            print(export.export_nnunet(args.source, args.out, args.id, args.title, args.task, args.folds, post,
                                       args.overwrite))
        else:
            print(export.export_segresnet(args.source, args.out, args.id, args.title, post, args.overwrite))
    elif cmd == "outcome-train":
        from hntumorseg_training.outcome import command as outcome_command

        outcome_command.run(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except InputError as exc:  # ModelError is an InputError too
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    return 0
