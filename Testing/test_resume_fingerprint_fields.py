"""A resumed batch reuses a prediction only when every setting that makes it is the same.

The fingerprint used to list the fields that count (model, task, folds, TTA, inputs), so the
settings added later (--align-pet, --pet-units, --suv-factor, --restrict-to-boxes, --prior-image,
--structures) were left out: a cohort rerun with another setting skipped the finished cases and
kept predictions made the other way. Now only where a run happens and where its extra outputs go
are left out, and the content of every file a request reads is in the key.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from HNTumorSegLib.batch.resume import NOT_IN_FINGERPRINT, fingerprint
from HNTumorSegLib.pipeline.request import SegmentRequest


def _request(tmp_path, **changes) -> SegmentRequest:
    base = dict(model="demo-petct", task="petct", input_paths={"CT": str(tmp_path / "ct.nii.gz"),
                                                              "PET": str(tmp_path / "pet.nii.gz")},
                output_path=str(tmp_path / "out" / "case.nii.gz"))
    base.update(changes)
    return SegmentRequest(**base)


@pytest.mark.parametrize("change", [
    {"align_pet": "force"}, {"align_pet": "off"}, {"pet_units": "BQML", "suv_factor": 0.001},
    {"restrict_to_boxes": True}, {"prior_structures": "GTVp=GTV_P"}, {"registration": "rigid"},
    {"folds": "0"}, {"tta": False}, {"series": {"CT": "1.2.3"}},
])
def test_a_setting_that_changes_the_prediction_changes_the_fingerprint(tmp_path, change):
    assert fingerprint(_request(tmp_path, **change)) != fingerprint(_request(tmp_path))


@pytest.mark.parametrize("change", [
    {"device": "cpu"}, {"output_path": "elsewhere/case.nii.gz"}, {"probabilities_path": "p.nii.gz"},
    {"uncertainty_path": "u.nii.gz"}, {"boxes_output_path": "b.json"}, {"registered_folder_path": "reg"},
])
def test_where_it_runs_and_extra_outputs_go_do_not(tmp_path, change):
    assert fingerprint(_request(tmp_path, **change)) == fingerprint(_request(tmp_path))


def test_the_left_out_fields_are_request_fields():
    names = {f.name for f in dataclasses.fields(SegmentRequest)}
    assert set(NOT_IN_FINGERPRINT) <= names


def test_a_pre_rt_image_replaced_in_place_is_redone(tmp_path):
    pre = tmp_path / "pre_T2.nii.gz"
    pre.write_bytes(b"first pre-RT image")
    request = _request(tmp_path, task="midrt", model="demo-midrt", input_paths={"T2": str(tmp_path / "mid.nii.gz")},
                       prior_path=str(tmp_path / "pre_mask.nii.gz"), prior_image_path=str(pre))
    before = fingerprint(request)
    pre.write_bytes(b"another pre-RT image")
    os.utime(pre, ns=(1, 1))
    assert fingerprint(request) != before
