"""The segmentation server end to end: a real ``hntumorseg serve`` (uvicorn) in a child process
started through :mod:`HNTumorSegLib.childproc`, on 127.0.0.1, running the bundled demo model on a
phantom case (issue 29, docs/server-api.md).

What is checked: three concurrent clients get labels voxel-identical to a local ``segment`` run,
and a refinement changes nothing outside its box; cancel ends a running job within 2 s of the
DELETE; the server log holds no patient name, file name or path (the upload is a DICOM series
with a PatientName); SIGTERM mid-job removes every job file, and a server killed hard leaves its
folder to the next server, which removes it; TLS with a self-signed certificate made here.
Every wait is on a condition with a generous limit (no fixed sleeps).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import require_module, require_tool, still_running
from server_testlib import THREADS, free_port, token_file, wait_until

httpx = require_module("httpx")
require_module("uvicorn")

from HNTumorSegLib import image, phantoms  # noqa: E402
from HNTumorSegLib.childproc import DEVNULL, start  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import DicomPatient, write_dicom_series  # noqa: E402
from HNTumorSegLib.prompts import boxes as lesion_boxes  # noqa: E402

PATIENT = "Zyxwquist^Hermengilda"
START_LIMIT_S = 180.0       # a loaded 2-core machine starts Python + torch slowly
JOB_LIMIT_S = 600.0


class Server:
    """A ``hntumorseg serve`` child: its URL, log file and private temp folder (``TMPDIR``); the
    port, token file and health wait are server_testlib's (shared with the client tests)."""

    def __init__(self, folder: Path, *extra: str, scheme: str = "http", verify: object = False):
        self.folder = folder
        self.tmp = folder / "server-tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"server-{len(list(folder.glob('server-*.log')))}.log"
        tokens, token = token_file(folder)
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "HNTumorSegLib", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--token-file", str(tokens), "--device", "cpu", *extra]
        self.log = open(self.log_path, "wb")
        self.child = start(argv, env={**THREADS, "TMPDIR": str(self.tmp)}, stdout=self.log, stderr=self.log,
                           name="server")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, verify=verify,
                                 timeout=httpx.Timeout(60.0, connect=5.0))
        wait_until(self._healthy, START_LIMIT_S, "the server to answer /v1/health")

    def _healthy(self) -> bool:
        assert self.child.alive, f"server ended: {self.log_text()[-2000:]}"
        try:
            return self.http.get("/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def submit(self, files: dict[str, Path], request: dict | None = None) -> str:
        parts = {name: (p.name, p.read_bytes()) for name, p in files.items()}
        r = self.http.post("/v1/jobs", data={"request": json.dumps(request or {"model": "demo-midrt"})}, files=parts)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def events(self, job_id: str, on_event=None) -> list[dict]:
        out = []
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=JOB_LIMIT_S) as s:
            for line in s.iter_lines():
                if line:
                    out.append(json.loads(line))
                    if on_event:
                        on_event(out[-1])
        return out

    def stop(self) -> None:
        self.http.close()
        if self.child.alive:
            self.child.kill_tree(grace_s=5.0)
        self.log.close()


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("case")
    c = phantoms.make_midrt_case(seed=0)
    paths = {"t2": folder / "t2.nii.gz", "prior": folder / "prior.nii.gz"}
    image.write_image(c["midRT_T2"], paths["t2"])
    image.write_image(c["preRT_mask_registered"], paths["prior"])
    dicom = folder / "dicom"
    write_dicom_series(c["midRT_T2"], dicom, modality="MR", patient=DicomPatient(name=PATIENT))
    paths["t2_zip"] = folder / f"{PATIENT}.zip"          # a file name with the patient's name in it
    with zipfile.ZipFile(paths["t2_zip"], "w") as zf:
        for f in sorted(dicom.iterdir()):
            zf.write(f, f.name)
    return paths


def _local_segment(case: dict[str, Path], out: Path) -> np.ndarray:
    child = start([sys.executable, "-m", "HNTumorSegLib", "segment", "--model", "demo-midrt", "--input",
                   f"T2={case['t2']}", "--prior", str(case["prior"]), "--output", str(out), "--device", "cpu"],
                  env=THREADS, stdout=DEVNULL, stderr=DEVNULL, name="segment")
    assert child.wait(timeout=JOB_LIMIT_S) == 0
    return image.read_image(out).array


@pytest.mark.slow
def test_three_concurrent_clients_match_a_local_run_and_refine_keeps_the_outside(tmp_path, case):
    server = Server(tmp_path, "--max-jobs", "1", "--max-queue", "4")
    try:
        results: dict[int, tuple[str, list[dict]]] = {}

        def client(n: int) -> None:
            job_id = server.submit({"input.T2": case["t2"], "prior": case["prior"]})
            results[n] = (job_id, server.events(job_id))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        local = _local_segment(case, tmp_path / "local.nii.gz")
        for t in threads:
            t.join(timeout=JOB_LIMIT_S)
        assert len(results) == 3
        for n, (job_id, events) in results.items():
            final = events[-1]
            assert final["event"] == "result" and final["id"] == job_id, final
            assert final["files"] == {"labels": "labels.nii.gz"} and str(tmp_path) not in json.dumps(events)
            assert server.http.get(f"/v1/jobs/{job_id}/outputs").json()["files"]["labels.nii.gz"] > 0
            got = tmp_path / f"server-{n}.nii.gz"
            got.write_bytes(server.http.get(f"/v1/jobs/{job_id}/outputs/labels.nii.gz").content)
            assert np.array_equal(image.read_image(got).array, local), n
        assert local.max() > 0
        # a refinement against the first job's inputs: one lesion's box, nothing changes outside it
        job_id = results[0][0]
        base = image.read_image(tmp_path / "server-0.nii.gz")
        moved = lesion_boxes.boxes_from_mask(base, margin_vox=4)
        name = next(b.name for b in moved if b.label == 2)
        entries = [b.to_dict() for b in moved]
        for e in entries:                                # the user moves the node's box 3 mm
            if e["name"] == name:
                e["min_ras"][0] += 3.0
                e["max_ras"][0] += 3.0
        moved = lesion_boxes.parse_boxes(entries)
        r = server.http.post(f"/v1/jobs/{job_id}/refine",
                             files={"refine": (None, json.dumps({"boxes": entries, "refine_boxes": [name]}))})
        assert r.status_code == 202, r.text
        refined_id = r.json()["job_id"]
        assert server.events(refined_id)[-1]["event"] == "result"
        refined_path = tmp_path / "refined.nii.gz"
        refined_path.write_bytes(server.http.get(f"/v1/jobs/{refined_id}/outputs/labels.nii.gz").content)
        refined = image.read_image(refined_path).array
        box = next(b for b in moved if b.name == name)
        inside = np.asarray(lesion_boxes.boxes_to_mask([box], base), dtype=bool)
        assert np.array_equal(refined[~inside], base.array[~inside])
        for job in [refined_id] + [j for j, _ in results.values()]:
            assert server.http.delete(f"/v1/jobs/{job}").json() == {"state": "deleted"}
        assert [p for p in next(server.tmp.glob("hntumorseg-server-*")).iterdir() if p.is_dir()
                and len(p.name) == 32] == []
    finally:
        server.stop()


@pytest.mark.slow
def test_cancel_within_2s_and_no_patient_name_in_the_log(tmp_path, case):
    server = Server(tmp_path, "--max-jobs", "1")
    try:
        job_id = server.submit({"input.T2": case["t2_zip"], "prior": case["prior"]})
        t_delete: list[float] = []

        def on_event(ev: dict) -> None:
            if ev["event"] == "progress" and ev["stage"] == "inference" and not t_delete:
                t_delete.append(time.monotonic())
                assert server.http.delete(f"/v1/jobs/{job_id}").json() == {"state": "cancelling"}

        events = server.events(job_id, on_event)
        took = time.monotonic() - t_delete[0]
        assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled", events[-1]
        assert took < 2.0, f"cancel took {took:.2f} s"
        assert server.http.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
        assert server.http.delete(f"/v1/jobs/{job_id}").json() == {"state": "deleted"}
        log = server.log_text()
        assert job_id in log                                              # the log names the job ...
        for secret in ("Zyxwquist", "Hermengilda", str(tmp_path), str(server.tmp), ".zip", "prior.nii"):
            assert secret not in log, secret                             # ... never the patient or a path
            assert secret not in json.dumps(events), secret
    finally:
        server.stop()


@pytest.mark.slow
def test_sigterm_mid_job_removes_its_files_and_a_killed_servers_files_go_at_the_next_start(tmp_path, case):
    import psutil

    server = Server(tmp_path)
    job_id = server.submit({"input.T2": case["t2"], "prior": case["prior"]})
    deadline = time.monotonic() + JOB_LIMIT_S
    while server.http.get(f"/v1/jobs/{job_id}").json()["state"] != "running":
        assert time.monotonic() < deadline
        server.child.wait(timeout=0.05)
    root = next(server.tmp.glob("hntumorseg-server-*"))
    assert (root / job_id / "in").is_dir()
    tree = [server.child.pid] + [p.pid for p in psutil.Process(server.child.pid).children(recursive=True)]
    os.kill(server.child.pid, signal.SIGTERM)
    assert server.child.wait(timeout=60.0) is not None
    assert still_running(tree) == []
    assert list(server.tmp.iterdir()) == [], list(server.tmp.rglob("*"))[:5]
    server.stop()
    # killed hard: its folder stays until the next server starts
    server = Server(tmp_path)
    root = next(server.tmp.glob("hntumorseg-server-*"))
    os.kill(server.child.pid, signal.SIGKILL)
    server.child.wait(timeout=60.0)
    assert root.exists()
    server.stop()
    server = Server(tmp_path)
    try:
        assert not root.exists()
    finally:
        server.stop()


def test_tls_with_a_self_signed_certificate(tmp_path):
    openssl = require_tool("openssl", "Debian: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    child = start([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                   "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                  stdout=DEVNULL, stderr=DEVNULL, name="openssl")
    assert child.wait(timeout=60.0) == 0
    server = Server(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https",
                    verify=ssl.create_default_context(cafile=str(cert)))
    try:
        h = server.http.get("/v1/health").json()
        assert h["status"] == "ok" and h["device"] == "cpu"
        with pytest.raises(httpx.TransportError):     # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{server.port}/v1/health", timeout=5.0)
    finally:
        server.stop()
