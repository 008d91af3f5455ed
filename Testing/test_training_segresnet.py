"""SegResNetDS (seed 002 recipe) trains a few iterations on a converted dataset, exports to a model card,
and the extension's pipeline segments with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module

torch = require_module("torch")
require_module("monai")


@pytest.mark.slow  # ~75 s at load ~18 on 2 shared cores: CI runs it, the default run skips it
def test_segresnet_train_export_segment(tmp_path):
    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort
    from HNTumorSegLib.pipeline import run_segmentation
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from hntumorseg_training.converters import convert_hntsmrg, write_dataset_splits, write_datalist
    from hntumorseg_training.export import export_segresnet
    from hntumorseg_training.segresnet import train_segresnet

    torch.set_num_threads(2)
    cohort = tmp_path / "cohort"
    write_hntsmrg_cohort(cohort, 3, seed=2, shape=(16, 48, 48), spacing=(2.0, 2.0, 3.0))
    raw = convert_hntsmrg(cohort, tmp_path / "raw", 510, task="midrt")
    write_dataset_splits(raw, n_folds=3, seed=0)
    datalist = write_datalist(raw)
    run = train_segresnet(datalist, fold=0, out=tmp_path / "run", epochs=2, roi=(16, 32, 32), spacing=None,
                          iterations_per_epoch=2, val_every=1, network_overrides={"init_filters": 8})
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"]["optimizer"] == "AdamW" and info["recipe"]["weight_decay"] == 1e-5
    assert [r["epoch"] for r in info["log_fold_0"]] == [0, 1] and "val_dice" in info["log_fold_0"][-1]
    model_dir = export_segresnet(run, tmp_path / "model", model_id="test-segresnet")
    model = load_model(model_dir)
    assert model.kind == "segresnet" and model.card.architecture["kwargs"]["init_filters"] == 8
    case = cohort / "1" / "midRT"
    out = tmp_path / "seg.nii.gz"
    run_segmentation(SegmentRequest(model=str(model_dir), input_paths={"T2": str(case / "1_midRT_T2.nii.gz")},
                                    prior_path=str(case / "1_preRT_mask_registered.nii.gz"),
                                    output_path=str(out),
                                    task="midrt", device="cpu"))
    labels = read_image(out, label=True)
    assert set(np.unique(labels.array)) <= {0, 1, 2}
