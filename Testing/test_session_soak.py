"""A 50-request soak of one real session (demo model, small phantom; every 5th request a
one-box refinement): the session's resident memory (psutil RSS) stays within 5 % of its level
after request 5, and the model is loaded once."""

from __future__ import annotations

import pytest

import psutil

from HNTumorSegLib.prompts.boxes import boxes_from_mask, write_boxes
from HNTumorSegLib.image import read_image
from HNTumorSegLib.protocol import ResultEvent
from HNTumorSegLib.session import SessionClient
from test_session_server import request, write_case

N_REQUESTS = 50


@pytest.mark.slow  # ~20-30 s on 2 shared cores: CI runs it, the default run skips it
def test_fifty_requests_keep_resident_memory_flat(tmp_path):
    fields = write_case(tmp_path / "case")
    prior = read_image(fields.pop("prior_path"), label=True)
    boxes = boxes_from_mask(prior, margin_vox=4)
    fields["boxes_path"] = str(write_boxes(boxes, tmp_path / "case" / "boxes.json"))
    rss_mb, loads = [], []
    with SessionClient(env={"OMP_NUM_THREADS": "1"}, temp_parent=str(tmp_path)) as session:
        proc = psutil.Process(session.pid)
        base = session.run(request(fields, tmp_path / "base.nii.gz"), timeout_s=300)
        assert isinstance(base, ResultEvent), base
        for i in range(N_REQUESTS):
            out = tmp_path / "out" / f"{i % 3}.nii.gz"   # outputs overwritten: disk use stays flat too
            refine = ({"base_labels": base.files["labels"], "boxes": [boxes[-1].name]} if i % 5 == 4 else None)
            final = session.run(request(fields, out), refine=refine, timeout_s=300)
            assert isinstance(final, ResultEvent), (i, final)
            loads.append(final.info["session"]["model_loads"])
            rss_mb.append(proc.memory_info().rss / 2**20)
    level = rss_mb[4]
    print(f"RSS after request 5: {level:.1f} MB; max after: {max(rss_mb[5:]):.1f} MB; last {rss_mb[-1]:.1f} MB")
    assert max(rss_mb[5:]) <= 1.05 * level, rss_mb
    assert set(loads) == {1}
