"""Benchmark of outcome inference (seed 004's RFS + HPV networks) per case on this machine.

Builds an outcome model folder of the **product's default size** (96^3 patch at 1 mm, ResNet-18
blocks 32-64-128-256, 5 folds for RFS and 5 for HPV = 10 networks) with randomly initialised
weights (inference time does not depend on the weights' values), then times on a synthetic
HECKTOR-size PET/CT case (CT 128 x 128 x 88 at 2 x 2 x 3 mm, PET at 4 mm):

* model load (card, sha256, weights-only load of 10 networks);
* per case: biomarkers + patch extraction, the 10 networks, and the whole ``predict``;
* the ``hntumorseg outcome`` command end to end in a child process (start-up included).

Writes ``bench/results/outcome.json`` and ``bench/results/outcome.md`` (machine noted).

Example:
    $ .venv/bin/python bench/bench_outcome.py --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine_info  # noqa: E402

from HNTumorSegLib.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from HNTumorSegLib.image import write_image  # noqa: E402
from HNTumorSegLib.outcome.clinical import CATEGORICAL, ClinicalEncoder  # noqa: E402
from HNTumorSegLib.outcome.patch import PatchSpec  # noqa: E402
from HNTumorSegLib.phantoms.petct import make_petct_case  # noqa: E402


def build_model(folder: Path, n_folds: int) -> Path:
    import numpy as np

    from hntumorseg_training.outcome.export import export_outcome_model
    from hntumorseg_training.outcome.train import EndpointResult, FoldResult, TrainConfig
    from HNTumorSegLib.outcome.network import OutcomeNet

    config = TrainConfig()
    records = [{"Age": 50 + i, **{c: str(i % 2) for c in CATEGORICAL}, "MTV_ml": float(i), "NTV_ml": 1.0,
                "SUVmax_T": 9.0, "SUVmax_N": 5.0, "TLG": 30.0, "NLG": 5.0} for i in range(6)]
    enc = ClinicalEncoder.fit(records)
    results = []
    for endpoint, n_out in (("rfs", 4), ("hpv", 1)):
        folds = []
        for k in range(n_folds):
            net = OutcomeNet(enc.size, n_out)
            folds.append(FoldResult(k, net.state_dict(), enc, 1, None, [], np.zeros(0)))
        results.append(EndpointResult(endpoint, folds, {}, {}))
    return export_outcome_model(folder, results, PatchSpec(), config, model_id="bench-untrained")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    import torch

    from HNTumorSegLib.outcome.biomarkers import compute_biomarkers
    from HNTumorSegLib.outcome.patch import make_patch
    from HNTumorSegLib.outcome.predictor import OutcomePredictor

    torch.set_num_threads(args.threads)
    load_before = [round(v, 2) for v in os.getloadavg()]
    case = make_petct_case(seed=3)
    clinical = {"Age": 63, "Gender": "M", "Tobacco Consumption": 1, "Alcohol Consumption": 0,
                "Performance Status": 0, "M-stage": "M0", "Treatment": "Chemoradiotherapy"}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = build_model(tmp / "model", args.folds)
        t = time.perf_counter()
        pred = OutcomePredictor(model)
        load_s = time.perf_counter() - t
        pred.predict(case["CT"], case["PET"], case["mask"], clinical)  # warm-up
        prep, nets, whole, bm_s = [], [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            compute_biomarkers(case["PET"], case["mask"])
            bm_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = pred.predict(case["CT"], case["PET"], case["mask"], clinical)
            whole.append(time.perf_counter() - t)
            prep.append(out["timings_s"]["preprocess"])
            nets.append(out["timings_s"]["networks"])
        patch_s = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            make_patch(case["CT"], case["PET"], case["mask"], PatchSpec())
            patch_s.append(time.perf_counter() - t)
        for key, name in (("CT", "ct"), ("PET", "pet"), ("mask", "labels")):
            write_image(case[key], tmp / f"{name}.nii.gz")
        (tmp / "ehr.json").write_text(json.dumps(clinical))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "HNTumorSegLib", "outcome", "--model", str(model), "--input",
               f"CT={tmp / 'ct.nii.gz'}", "--input", f"PET={tmp / 'pet.nii.gz'}", "--labels",
               str(tmp / "labels.nii.gz"), "--clinical", str(tmp / "ehr.json")]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        command_s = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)

    med = statistics.median
    result = {"name": "outcome", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine_info(), "note": args.note, "threads": args.threads, "repeats": args.repeats,
              "networks": 2 * args.folds, "patch": "96^3 at 1 mm", "block_inplanes": [32, 64, 128, 256],
              "case": {"ct_shape_zyx": list(case["CT"].array.shape), "pet_shape_zyx": list(case["PET"].array.shape)},
              "seconds": {"model_load": round(load_s, 2), "biomarkers": round(med(bm_s), 2),
                          "patch": round(med(patch_s), 2), "preprocess_in_predict": round(med(prep), 2),
                          "networks": round(med(nets), 2), "predict_per_case": round(med(whole), 2),
                          "outcome_command_end_to_end": round(command_s, 2)},
              "all_predict_runs_s": [round(v, 2) for v in whole],
              "load_average_before_after": [load_before, [round(v, 2) for v in os.getloadavg()]]}
    out_dir = ROOT / "bench" / "results"
    write_json_atomic(out_dir / "outcome.json", result)
    s = result["seconds"]
    m = result["machine"]
    md = f"""# Outcome inference benchmark (outcome)

Machine: {m['cpu_model']}, {m['nproc']} usable cores, torch {m['torch']} on CPU, {args.threads} threads. {args.note}
Date: {result['date']}. Load average before / after: {result['load_average_before_after']}.
Model: product default size (96^3 patch at 1 mm, ResNet-18 blocks 32-64-128-256), {args.folds} folds RFS +
{args.folds} folds HPV = {2 * args.folds} networks, untrained weights (time does not depend on their values).
Case: synthetic PET/CT, CT {result['case']['ct_shape_zyx']} (z, y, x) at 2 x 2 x 3 mm, PET {result['case']['pet_shape_zyx']} at 4 mm.

| measure | seconds |
|---|---|
| model load (card, sha256, {2 * args.folds} weights-only loads) | {s['model_load']} |
| PET biomarkers (incl. SUVpeak) | {s['biomarkers']} |
| 96^3 patch (CT, PET, mask resampled) | {s['patch']} |
| {2 * args.folds} networks (fold ensembles, batch 1) | {s['networks']} |
| **predict, per case** (biomarkers + patch + networks) | **{s['predict_per_case']}** |
| `hntumorseg outcome` end to end (child process: start-up, reading, load, predict) | {s['outcome_command_end_to_end']} |

Median of {args.repeats} runs after one warm-up (all predict runs: {result['all_predict_runs_s']}).
Reproduce: `.venv/bin/python bench/bench_outcome.py --repeats {args.repeats} --threads {args.threads}`.
"""
    write_text_atomic(out_dir / "outcome.md", md)
    print(md)


if __name__ == "__main__":
    main()
