"""Box-only refinement through the segmentation server (issue 27): the client sends ``box_only`` and
uploads a base only when the spec gives one; the server passes ``box_only`` on, needs neither an
upload nor the parent's result for it, and refuses a ``box_only`` that is not a boolean. FastAPI's
TestClient carries the real client's calls to the real app (no job runs: the manager starts no session)."""

from __future__ import annotations

import json

import pytest

from conftest import require_module

require_module("fastapi")
require_module("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from HNTumorSegLib.pipeline.refine import RefineSpec  # noqa: E402
from HNTumorSegLib.server.app import create_app  # noqa: E402
from HNTumorSegLib.server.client import RemoteClient, ServerError  # noqa: E402
from HNTumorSegLib.server.jobs import JobManager  # noqa: E402
from HNTumorSegLib.server.security import Tokens  # noqa: E402

GZ = b"\x1f\x8b" + bytes(62)          # a file told apart as .nii.gz (never read: no job runs)


@pytest.fixture
def served(tmp_path):
    """(RemoteClient talking to the app in-process, JobManager, the id of a parent job without a result)."""
    jm = JobManager(device="cpu", max_queue=8, temp_parent=str(tmp_path), start=False)
    http = TestClient(create_app(jm, Tokens.insecure()))
    parent = http.post("/v1/jobs", data={"request": '{"model": "demo-midrt"}'},
                       files={"input.T2": ("t2.nii.gz", GZ)}).json()["job_id"]
    client = RemoteClient("http://testserver", "token-not-checked")
    client.http.close()
    client.http = http
    yield client, jm, parent
    jm.close()


def test_box_only_without_base_needs_no_upload_and_no_parent_result(served, tmp_path):
    client, jm, parent = served
    job_id = client._refine(parent, {}, RefineSpec(None, ("GTVn-1",), box_only=True))
    assert jm.jobs[job_id].refine == {"boxes": ["GTVn-1"], "box_only": True}
    assert not (jm.jobs[job_id].folder / "in" / "base_labels.nii.gz").exists()


def test_box_only_with_base_uploads_it(served, tmp_path):
    client, jm, parent = served
    (tmp_path / "edited.nii.gz").write_bytes(GZ)
    job = jm.jobs[client._refine(parent, {}, RefineSpec(str(tmp_path / "edited.nii.gz"), ("GTVn-1",), True))]
    assert job.refine == {"boxes": ["GTVn-1"], "box_only": True,
                          "base_labels_path": str(job.folder / "in" / "base_labels.nii.gz")}
    assert (job.folder / "in" / "base_labels.nii.gz").read_bytes() == GZ


def test_without_box_only_the_parent_result_is_still_needed(served):
    client, jm, parent = served
    with pytest.raises(ServerError, match="no result labels"):
        client._refine(parent, {}, RefineSpec(None, ("GTVn-1",)))    # no base sent, none on the server


def test_box_only_must_be_a_boolean(served):
    client, jm, parent = served
    r = client.http.post(f"/v1/jobs/{parent}/refine",
                         data={"refine": json.dumps({"refine_boxes": ["GTVn-1"], "box_only": "yes"})})
    assert r.status_code == 400 and "'box_only' must be true or false" in r.json()["error"]["message"]


def test_box_only_end_to_end_through_a_real_server(tmp_path):
    """A real ``hntumorseg serve``: a whole job, then a box-only refinement without a base; the
    downloaded file is the box's crop, equal to the whole refinement's box voxel for voxel."""
    require_module("uvicorn")
    import numpy as np
    from server_testlib import ServerProcess
    from test_session_server import write_case

    from HNTumorSegLib.image import read_image
    from HNTumorSegLib.pipeline.request import SegmentRequest
    from HNTumorSegLib.prompts.boxes import LesionBox, box_to_index_slices, boxes_from_mask, write_boxes
    from HNTumorSegLib.protocol import ResultEvent

    case = write_case(tmp_path / "case")

    def request(out, **changes):
        return SegmentRequest.from_dict(dict(case, output_path=str(out), **changes))

    with ServerProcess(tmp_path / "server") as server, server.client() as client:
        first = client.run(request(tmp_path / "base.nii.gz"))
        assert isinstance(first, ResultEvent), first
        boxes = boxes_from_mask(read_image(case["prior_path"], label=True), margin_vox=4)
        edited = next(b for b in boxes if b.label == 2)
        d = np.array([3.0, -2.0, 0.0])
        new_box = LesionBox(2, edited.name, tuple(np.add(edited.min_ras, d)), tuple(np.add(edited.max_ras, d)))
        write_boxes([new_box if b is edited else b for b in boxes], tmp_path / "boxes.json")
        fields = dict(boxes_path=str(tmp_path / "boxes.json"), prior_path=None)
        crop_final = client.run(request(tmp_path / "crop.nii.gz", **fields), refine=RefineSpec(None, (edited.name,), True))
        assert isinstance(crop_final, ResultEvent), crop_final
        whole_final = client.run(request(tmp_path / "whole.nii.gz", **fields),
                                 refine=RefineSpec(str(tmp_path / "base.nii.gz"), (edited.name,)))
        assert isinstance(whole_final, ResultEvent), whole_final
    whole = read_image(tmp_path / "whole.nii.gz", label=True)
    crop = read_image(tmp_path / "crop.nii.gz", label=True)
    sl = box_to_index_slices(new_box, whole)
    assert crop.array.shape == whole.array[sl].shape
    np.testing.assert_array_equal(crop.array, whole.array[sl])
    np.testing.assert_allclose(crop.origin, whole.index_to_physical(np.array([s.start for s in sl[::-1]], float)),
                               atol=1e-3)
