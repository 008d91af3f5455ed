"""The segmentation server's API rules on FastAPI's TestClient (issue 29; docs/server-api.md).

No job runs here (the job manager starts no session: queued jobs stay queued), so these tests
check what the server decides before a session is involved: tokens (401), upload limits (413,
streamed or declared), the queue (429), job isolation (404), bad requests (400), TTL clean-up,
and the start-up rules of ``hntumorseg serve`` (exit 2, one line). The end-to-end tests with a
real uvicorn and real jobs are in test_server_e2e.py.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from conftest import require_module

require_module("fastapi")
require_module("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from HNTumorSegLib import cli  # noqa: E402
from HNTumorSegLib.errors import EXIT_BAD_INPUT  # noqa: E402
from HNTumorSegLib.server.app import create_app  # noqa: E402
from HNTumorSegLib.server.jobs import JobManager  # noqa: E402
from HNTumorSegLib.server.security import Tokens  # noqa: E402

TOKEN_A = "token-a-0123456789abcdef"
TOKEN_B = "token-b-0123456789abcdef"
GZ = b"\x1f\x8b" + bytes(62)          # a file told apart as .nii.gz (never read: no job runs)


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _token_file(folder: Path, *tokens: str, mode: int = 0o600) -> Path:
    path = folder / "tokens"
    path.write_text("# test tokens\n" + "\n".join(tokens) + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture
def server(tmp_path):
    """(TestClient, JobManager) of a server with two tokens, a 1 MB upload limit, one waiting job at most."""
    jm = JobManager(device="cpu", max_jobs=1, max_queue=1, ttl_s=3600, temp_parent=str(tmp_path), start=False)
    tokens = Tokens.from_file(_token_file(tmp_path, TOKEN_A, TOKEN_B))
    client = TestClient(create_app(jm, tokens, max_upload_mb=1.0))
    yield client, jm
    jm.close()


def _submit(client, token=TOKEN_A, request=None, files=None):
    files = files if files is not None else {"input.T2": ("t2.nii.gz", GZ)}
    return client.post("/v1/jobs", headers=_auth(token),
                       data={"request": json.dumps(request or {"model": "demo-midrt"})}, files=files)


def _job_folders(jm) -> list[Path]:
    return [p for p in jm.root.iterdir() if p.is_dir()]


def test_wrong_or_missing_token_is_401_on_every_endpoint(server):
    client, jm = server
    job_id = _submit(client).json()["job_id"]
    calls = [("GET", "/v1/health"), ("POST", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"),
             ("GET", f"/v1/jobs/{job_id}/events"), ("DELETE", f"/v1/jobs/{job_id}"),
             ("GET", f"/v1/jobs/{job_id}/outputs"), ("GET", f"/v1/jobs/{job_id}/outputs/labels.nii.gz"),
             ("POST", f"/v1/jobs/{job_id}/refine")]
    for headers in ({}, _auth("not-a-token-of-this-server"), {"Authorization": TOKEN_A}, _auth(TOKEN_A + "x")):
        for method, url in calls:
            r = client.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, headers, r.text)
            assert r.json()["error"]["kind"] == "unauthorized"
    assert client.get(f"/v1/jobs/{job_id}", headers=_auth(TOKEN_A)).json()["state"] == "queued"  # untouched


def test_health_lists_device_models_and_load(server):
    client, jm = server
    h = client.get("/v1/health", headers=_auth(TOKEN_B)).json()
    assert h["status"] == "ok" and h["device"] == "cpu" and h["max_upload_mb"] == 1.0
    assert {"id": "demo-midrt", "task": "midrt"} in h["models"]
    assert h["jobs"] == {"running": 0, "queued": 0, "max_jobs": 1, "max_queue": 1}


def test_oversized_upload_is_413_and_leaves_nothing(server):
    client, jm = server
    big = {"input.T2": ("t2.nii.gz", GZ + bytes(2 * 1024 * 1024))}
    r = _submit(client, files=big)                                        # declared Content-Length
    assert r.status_code == 413 and r.json()["error"]["kind"] == "too_large"
    body, ctype = _multipart(GZ + bytes(2 * 1024 * 1024))

    def chunks():                                                          # no Content-Length: streamed
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = client.post("/v1/jobs", headers={**_auth(TOKEN_A), "Content-Type": ctype}, content=chunks())
    assert r.status_code == 413, r.text
    assert _job_folders(jm) == [] and jm.counts()["queued"] == 0


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "hntumorsegtestboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{{"model": "demo-midrt"}}\r\n'
             .encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="input.T2"; filename="t2.nii.gz"\r\n'
             'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_full_queue_is_429(server):
    client, jm = server        # no session runs: one job waits (max_queue 1), the next is refused
    assert _submit(client).status_code == 202
    r = _submit(client)
    assert r.status_code == 429 and r.json()["error"]["kind"] == "queue_full"
    assert len(_job_folders(jm)) == 1 and client.get("/v1/health", headers=_auth(TOKEN_A)).json()["jobs"]["queued"] == 1


def test_another_token_holder_gets_404_as_for_an_unknown_id(server):
    client, jm = server
    r = _submit(client, TOKEN_A)
    job_id = r.json()["job_id"]
    assert r.status_code == 202 and len(job_id) == 32 and int(job_id, 16) >= 0
    unknown = client.get("/v1/jobs/" + "0" * 32, headers=_auth(TOKEN_B))
    for method, suffix in (("GET", ""), ("GET", "/events"), ("GET", "/outputs"), ("GET", "/outputs/labels.nii.gz"),
                           ("DELETE", ""), ("POST", "/refine")):
        r = client.request(method, f"/v1/jobs/{job_id}{suffix}", headers=_auth(TOKEN_B))
        assert r.status_code == 404 and r.json() == unknown.json(), (method, suffix)
    assert client.get(f"/v1/jobs/{job_id}", headers=_auth(TOKEN_A)).json()["state"] == "queued"


@pytest.mark.parametrize("request_fields, files, words", [
    ({"model": "demo-midrt", "prior_path": "/etc/passwd"}, None, "prior_path"),
    ({"model": "demo-midrt", "input_paths": {"T2": "/data/t2.nii.gz"}}, None, "input_paths"),
    ({"model": "demo-midrt"}, {}, "no input image"),
    ({"model": "demo-midrt", "boxes": [{"label": 7}]}, None, "label"),
    ({"model": "demo-midrt"}, {"input.XX": ("x.nii", GZ)}, "not a part"),
])
def test_bad_requests_are_400_one_line(server, request_fields, files, words):
    client, jm = server
    r = _submit(client, request=request_fields, files=files)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert r.json()["error"]["kind"] == "bad_input" and words in message and "\n" not in message
    assert _job_folders(jm) == []


def test_zip_with_traversal_or_link_is_refused(server):
    client, jm = server
    for name, attr in (("../../escape.dcm", 0o100644), ("link.dcm", 0o120777)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = attr << 16
            zf.writestr(info, b"x" * 10)
        r = _submit(client, files={"input.T2": ("t2.zip", buf.getvalue())})
        assert r.status_code == 400 and "refused" in r.json()["error"]["message"], r.text
    assert _job_folders(jm) == [] and not (jm.root.parent / "escape.dcm").exists()


def test_cancelled_queued_job_ends_and_its_files_go_after_delete_and_ttl(tmp_path):
    jm = JobManager(device="cpu", max_queue=4, ttl_s=0.3, temp_parent=str(tmp_path), start=False)
    try:
        client = TestClient(create_app(jm, Tokens.insecure()))
        ids = [client.post("/v1/jobs", data={"request": '{"model": "demo-midrt"}'},
                           files={"input.T2": ("t2.nii.gz", GZ)}).json()["job_id"] for _ in range(2)]
        for job_id in ids:
            assert client.delete(f"/v1/jobs/{job_id}").json() == {"state": "cancelling"}
        events = client.get(f"/v1/jobs/{ids[0]}/events").text.splitlines()
        assert [json.loads(e)["kind"] for e in events] == ["cancelled"] and json.loads(events[0])["id"] == ids[0]
        assert client.delete(f"/v1/jobs/{ids[0]}").json() == {"state": "deleted"}       # after the end: deleted
        assert not (jm.root / ids[0]).exists() and client.get(f"/v1/jobs/{ids[0]}").status_code == 404
        deadline = time.monotonic() + 30.0                                          # the other: by the TTL
        while (jm.root / ids[1]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (jm.root / ids[1]).exists() and client.get(f"/v1/jobs/{ids[1]}").status_code == 404
    finally:
        jm.close()
    assert not jm.root.exists()


def test_serve_refuses_to_start_without_a_safe_token(tmp_path, capsys):
    loose = _token_file(tmp_path, TOKEN_A, mode=0o644)
    cases = [(["--host", "0.0.0.0"], "no --token-file"),
             (["--host", "0.0.0.0", "--insecure-localhost"], "only on 127.0.0.1"),
             (["--host", "127.0.0.1"], "no --token-file"),
             (["--token-file", str(loose)], "readable by others"),
             (["--token-file", str(tmp_path / "missing")], "cannot read the token file"),
             (["--insecure-localhost", "--tls-cert", str(loose)], "go together")]
    for extra, words in cases:
        code = cli.main(["serve", "--port", "1", *extra])
        err = capsys.readouterr().err
        assert code == EXIT_BAD_INPUT and words in err and len(err.strip().splitlines()) == 1, (extra, err)
    code = cli.main(["serve", "--port", "1", "--token-file", str(loose)])
    assert str(loose) in capsys.readouterr().err and code == EXIT_BAD_INPUT        # names the file


def test_refine_reuses_the_inputs_which_outlive_a_deleted_parent_until_the_refinement_ends(tmp_path):
    jm = JobManager(device="cpu", max_queue=4, temp_parent=str(tmp_path), start=False)
    try:
        client = TestClient(create_app(jm, Tokens.insecure()))
        parent = client.post("/v1/jobs", data={"request": '{"model": "demo-midrt"}'},
                             files={"input.T2": ("t2.nii.gz", GZ)}).json()["job_id"]
        spec = json.dumps({"refine_boxes": ["GTVn-1"]})
        r = client.post(f"/v1/jobs/{parent}/refine", data={"refine": spec})     # no result, no base labels
        assert r.status_code == 400 and "no result labels" in r.json()["error"]["message"]
        r = client.post(f"/v1/jobs/{parent}/refine", files={"refine": (None, spec), "input.T2": ("t2.nii.gz", GZ)})
        assert r.status_code == 400 and "takes no part" in r.json()["error"]["message"]   # no re-upload
        r = client.post(f"/v1/jobs/{parent}/refine", files={"refine": (None, spec), "base_labels": ("b.nii.gz", GZ)})
        assert r.status_code == 202, r.text
        child = jm.jobs[r.json()["job_id"]]
        assert child.request["input_paths"] == jm.jobs[parent].request["input_paths"]    # read in place
        assert child.refine == {"base_labels_path": str(child.folder / "in" / "base_labels.nii.gz"), "boxes": ["GTVn-1"]}
        r = client.post(f"/v1/jobs/{child.id}/refine", files={"refine": (None, spec), "base_labels": ("b.nii.gz", GZ)})
        grandchild = jm.jobs[r.json()["job_id"]]
        assert grandchild.parent is jm.jobs[parent]                  # the inputs' owner, not the refinement
        client.delete(f"/v1/jobs/{parent}")                          # cancelled (it was queued) ...
        assert client.delete(f"/v1/jobs/{parent}").json() == {"state": "deleted"}   # ... then deleted
        assert client.get(f"/v1/jobs/{parent}").status_code == 404
        assert (jm.root / parent / "in").is_dir()                    # its inputs wait for the refinements
        client.delete(f"/v1/jobs/{child.id}")
        assert (jm.root / parent / "in").is_dir()
        client.delete(f"/v1/jobs/{grandchild.id}")
        assert not (jm.root / parent).exists()
    finally:
        jm.close()


@pytest.mark.parametrize("script, kind", [
    ("import sys\nfor line in sys.stdin: pass", "timeout"),     # a session that never answers: the job time limit
    ("import sys\nsys.exit(3)", "crashed"),                     # a session that dies: one error event, server lives
])
def test_a_job_past_its_time_or_whose_session_died_ends_with_one_error_event(tmp_path, script, kind):
    import sys

    jm = JobManager(device="cpu", max_queue=2, job_timeout_s=0.5, temp_parent=str(tmp_path),
                    session_argv=[sys.executable, "-c", script])
    try:
        client = TestClient(create_app(jm, Tokens.insecure()))
        job_id = client.post("/v1/jobs", data={"request": '{"model": "demo-midrt"}'},
                             files={"input.T2": ("t2.nii.gz", GZ)}).json()["job_id"]
        events = [json.loads(line) for line in client.get(f"/v1/jobs/{job_id}/events").text.splitlines()]
        assert [(e["event"], e["kind"], e["id"]) for e in events] == [("error", kind, job_id)], events
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "error"
        assert client.get("/v1/health").json()["jobs"]["running"] == 0
    finally:
        jm.close()


def test_cancel_of_a_running_job_ends_it_at_once_and_its_files_go_when_its_session_let_go(tmp_path):
    import sys

    jm = JobManager(device="cpu", max_queue=2, temp_parent=str(tmp_path),   # a session that never answers
                    session_argv=[sys.executable, "-c", "import sys\nfor line in sys.stdin: pass"])
    try:
        client = TestClient(create_app(jm, Tokens.insecure()))
        job_id = client.post("/v1/jobs", data={"request": '{"model": "demo-midrt"}'},
                             files={"input.T2": ("t2.nii.gz", GZ)}).json()["job_id"]
        deadline = time.monotonic() + 60.0
        while client.get(f"/v1/jobs/{job_id}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.delete(f"/v1/jobs/{job_id}").json() == {"state": "cancelling"}
        events = [json.loads(line) for line in client.get(f"/v1/jobs/{job_id}/events").text.splitlines()]
        assert [(e["event"], e["kind"]) for e in events] == [("error", "cancelled")]
        assert client.delete(f"/v1/jobs/{job_id}").json() == {"state": "deleted"}
        folder = jm.root / job_id
        while folder.exists():               # removed once the session stopped the run (its cancel wait)
            assert time.monotonic() < deadline, "the cancelled job's files stayed"
            time.sleep(0.01)
        assert client.get("/v1/health").json()["jobs"]["running"] == 0
    finally:
        jm.close()
