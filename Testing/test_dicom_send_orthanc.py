"""`export --send`: C-STORE (pynetdicom) to a real Orthanc started by the test, read back byte-identical.

Orthanc (Debian package ``orthanc``) runs on 127.0.0.1 on free ports with its own storage and
index folders and a JSON configuration (no remote access, no authentication, any called AE
title). After the send, the objects are fetched through Orthanc's REST API
(``/instances``, ``/instances/{id}/file``) and compared byte for byte with the files written:
the data set (everything after the file meta header) must be identical; the meta header is
the receiver's own by the standard (C-STORE carries no meta header; Orthanc writes its own
implementation UID and our AE title there), so only its transfer syntax and UIDs are compared.
Failures: a port where nothing listens ("did not answer") and a node that rejects our called
AE title (a pynetdicom SCP that checks it) -> one line, exit 2.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from conftest import require_module

pydicom = require_module("pydicom")
require_module("pynetdicom")

from dicom_testlib import require_tool  # noqa: E402

from HNTumorSegLib.cli import main  # noqa: E402
from HNTumorSegLib.dicom.read import read_volume  # noqa: E402
from HNTumorSegLib.image import write_image  # noqa: E402
from HNTumorSegLib.phantoms import make_prert_case  # noqa: E402
from HNTumorSegLib.phantoms.dicom_series import write_dicom_series  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _split_meta(data: bytes) -> tuple[bytes, bytes]:
    """(file meta header, data set) of a Part 10 file: the meta group's length is in (0002,0000)."""
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00" and data[136:138] == b"UL"
    end = 144 + int.from_bytes(data[140:144], "little")
    return data[:end], data[end:]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


@pytest.fixture
def orthanc(tmp_path):
    tool = require_tool("Orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {"Name": "hntumorseg-test", "DicomAet": "ORTHANCTEST", "DicomPort": dicom_port, "HttpPort": http_port,
              "StorageDirectory": str(tmp_path / "orthanc-storage"), "IndexDirectory": str(tmp_path / "orthanc-index"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": False,
              "HttpServerEnabled": True, "DicomServerEnabled": True, "Plugins": []}
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "w")
    proc = subprocess.Popen([tool, str(path)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 180  # seconds when idle; generous for a loaded machine
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(tmp_path / 'orthanc.log').read_text()[-2000:]}")
            try:
                json.loads(_get(base + "/system"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start within 180 s") from None
                time.sleep(0.2)
        yield {"aet": "ORTHANCTEST", "port": dicom_port, "base": base}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def case(tmp_path):
    c = make_prert_case(seed=8, shape=(8, 32, 32), spacing=(1.5, 1.5, 3.0), n_nodes=1)
    write_dicom_series(c["T2"], tmp_path / "src", "MR")
    grid = read_volume(tmp_path / "src")
    labels = write_image(grid.with_array(c["mask"].array.astype(np.uint8)), tmp_path / "labels.nii.gz")
    return tmp_path / "src", labels


def test_send_to_orthanc_arrives_byte_identical(orthanc, case, tmp_path, capsys):
    src, labels = case
    rt, seg = tmp_path / "out" / "rt.dcm", tmp_path / "out" / "seg.dcm"
    code = main(["export", "--labels", str(labels), "--source", str(src), "--rtstruct", str(rt), "--seg", str(seg),
                 "--send", f"{orthanc['aet']}@127.0.0.1:{orthanc['port']}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "sent 2 objects" in out.out
    ids = json.loads(_get(orthanc["base"] + "/instances"))
    assert len(ids) == 2
    received = {}
    for i in ids:
        data = _get(f"{orthanc['base']}/instances/{i}/file")
        received[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = data
    for path in (rt, seg):
        sent = path.read_bytes()
        ours = pydicom.dcmread(path)
        got = received[ours.SOPInstanceUID]
        assert _split_meta(got)[1] == _split_meta(sent)[1], path.name  # the data set, byte for byte
        meta = pydicom.dcmread(io.BytesIO(got)).file_meta
        for key in ("TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
            assert meta[key].value == ours.file_meta[key].value


def test_nobody_listening_is_one_line(case, tmp_path, capsys):
    src, labels = case
    code = main(["export", "--labels", str(labels), "--source", str(src), "--seg", str(tmp_path / "seg.dcm"),
                 "--send", f"PACS@127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err.strip().splitlines()
    # refused, said at once (issue 25: it read "did not answer" after the 10 s timeout)
    assert code == 2 and len(err) == 1 and "connection was refused" in err[0], err


def test_rejected_association_is_one_line(case, tmp_path, capsys):
    from pynetdicom import AE, AllStoragePresentationContexts

    src, labels = case
    scp = AE(ae_title="REALPACS")
    scp.require_called_aet = True
    scp.supported_contexts = AllStoragePresentationContexts
    port = _free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        code = main(["export", "--labels", str(labels), "--source", str(src), "--seg", str(tmp_path / "seg.dcm"),
                     "--send", f"WRONGAET@127.0.0.1:{port}"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "refused the association" in err[0], err


def test_bad_destination_text(case, tmp_path, capsys):
    src, labels = case
    assert main(["export", "--labels", str(labels), "--source", str(src), "--seg", str(tmp_path / "seg.dcm"),
                 "--send", "nohost"]) == 2
    assert "is not AET@HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "seg.dcm").exists()
