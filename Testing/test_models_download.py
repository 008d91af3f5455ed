"""`hntumorseg models fetch`: resume, checksum, safe unpacking, served from 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import require_module

from HNTumorSegLib.cli import main
from HNTumorSegLib.errors import ModelError
from HNTumorSegLib.models.catalogue import CatalogueEntry, installed_path
from HNTumorSegLib.models.download import download, fetch, safe_unzip
from HNTumorSegLib.vocab import Task

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []
    drop_first: set[str] = set()  # paths whose first response is cut halfway
    no_range: set[str] = set()  # paths served without Range support

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and self.path not in self.no_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.drop_first:
            self.drop_first.discard(self.path)
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    _Handler.files, _Handler.log, _Handler.drop_first, _Handler.no_range = {}, [], set(), set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_resume_after_dropped_connection(server, tmp_path):
    base, handler = server
    handler.files["/w.bin"] = PAYLOAD
    handler.drop_first.add("/w.bin")
    events = []
    out = download(f"{base}/w.bin", tmp_path / "w.bin", _sha(PAYLOAD), progress=lambda *e: events.append(e))
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "w.bin.part").exists()
    ranges = [r for p, r in handler.log if p == "/w.bin"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed, not restarted
    assert any("resuming" in e[2] for e in events)
    assert any(e[0] == "download" and "s left" in e[2] and "%" in e[2] for e in events)
    assert events[-1][0] == "verify"


def test_resume_of_an_interrupted_run_and_server_without_ranges(server, tmp_path):
    base, handler = server
    handler.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    download(f"{base}/a.bin", tmp_path / "a.bin", _sha(PAYLOAD))
    assert handler.log[-1] == ("/a.bin", "bytes=1000-") and (tmp_path / "a.bin").read_bytes() == PAYLOAD
    handler.files["/b.bin"] = PAYLOAD
    handler.no_range.add("/b.bin")
    (tmp_path / "b.bin.part").write_bytes(b"garbage that must not be kept")
    download(f"{base}/b.bin", tmp_path / "b.bin", _sha(PAYLOAD))
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_and_refuses(server, tmp_path):
    base, handler = server
    handler.files["/w.bin"] = PAYLOAD
    with pytest.raises(ModelError, match="checksum mismatch") as err:
        download(f"{base}/w.bin", tmp_path / "w.bin", "0" * 64)
    assert "deleted" in err.value.one_line()
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_a_model_error(server, tmp_path):
    base, _ = server
    with pytest.raises(ModelError, match="HTTP 404"):
        download(f"{base}/missing.bin", tmp_path / "x.bin", "0" * 64)
    with pytest.raises(ModelError, match="only http and https"):
        download("file:///etc/passwd", tmp_path / "x.bin", "0" * 64)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_unsafe_archives_are_refused(tmp_path):
    for bad in ("../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"):
        (tmp_path / "a.zip").write_bytes(_zip({"fine.txt": b"1", bad: b"2"}))
        with pytest.raises(ModelError, match="outside the model folder"):
            safe_unzip(tmp_path / "a.zip", tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.txt").exists()
    link = zipfile.ZipInfo("link")
    link.external_attr = (0o120777 << 16)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="is a link"):
        safe_unzip(tmp_path / "l.zip", tmp_path / "out")


def _catalogue(tmp_path: Path, base: str, sha: str | None) -> Path:
    entries = [{"id": "zoo", "title": "zip model", "task": "prert", "inputs": ["T2"], "licence": "test",
                "citation": "test", "url": f"{base}/zoo.zip", "sha256": sha, "kind": "card", "subfolder": "zoo"}]
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": entries}))
    return path


def test_fetch_command_installs_verifies_and_loads(server, tmp_path, monkeypatch, capsys):
    torch = require_module("torch")
    from HNTumorSegLib.models import load_model
    from HNTumorSegLib.networks import build_network

    base, handler = server
    arch = {"name": "STUNet", "kwargs": {"depth": [1] * 6, "dims": [4, 4, 4, 4, 4, 4]}}
    buf = io.BytesIO()
    torch.save(build_network(arch, 1, 3).state_dict(), buf)
    weights = buf.getvalue()
    card = {"format": "hntumorseg-model/1", "id": "zoo", "title": "zoo", "task": "prert",
            "inputs": [{"name": "T2"}], "architecture": arch, "labels": {"background": 0, "GTVp": 1, "GTVn": 2},
            "folds": [0], "weights": {"0": "fold_0.pt"}, "sha256": {"fold_0.pt": _sha(weights)}}
    archive = _zip({"zoo/model.json": json.dumps(card).encode(), "zoo/fold_0.pt": weights})
    handler.files["/zoo.zip"] = archive
    handler.drop_first.add("/zoo.zip")
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(_catalogue(tmp_path, base, _sha(archive))))
    cache = tmp_path / "cache"
    monkeypatch.setenv("HNTUMORSEG_CACHE", str(cache))
    assert main(["models", "fetch", "zoo"]) == 0
    captured = capsys.readouterr()
    assert "installed in" in captured.out and "fetch zoo: download" in captured.err and "s left" in captured.err
    assert installed_path("zoo") == cache / "models" / "zoo" / "zoo"
    assert load_model("zoo").card.id == "zoo"
    assert main(["models", "verify", "zoo"]) == 0
    assert "files match" in capsys.readouterr().out
    (cache / "models" / "zoo" / "zoo" / "fold_0.pt").write_bytes(b"changed")
    assert main(["models", "verify", "zoo"]) == 2
    assert "changed since it was installed" in capsys.readouterr().err


def test_fetch_mismatch_installs_nothing(server, tmp_path, monkeypatch, capsys):
    base, handler = server
    handler.files["/zoo.zip"] = _zip({"zoo/model.json": b"{}"})
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(_catalogue(tmp_path, base, "1" * 64)))
    cache = tmp_path / "cache"
    assert main(["models", "fetch", "zoo", "--cache", str(cache), "--progress", "none"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (cache / "models" / "zoo").exists() and list((cache / "downloads").iterdir()) == []


def test_no_published_checksum_needs_user_sha(server, tmp_path, monkeypatch, capsys):
    base, handler = server
    archive = _zip({"zoo/readme.txt": b"hello"})
    handler.files["/zoo.zip"] = archive
    monkeypatch.setenv("HNTUMORSEG_CATALOGUE", str(_catalogue(tmp_path, base, None)))
    cache = tmp_path / "cache"
    assert main(["models", "fetch", "zoo", "--cache", str(cache)]) == 2
    assert "no published sha256" in capsys.readouterr().err and not cache.exists()
    entry = CatalogueEntry(id="zoo", title="t", task=Task.PRERT, input_names=["T2"], licence="l", citation="c",
                           url=f"{base}/zoo.zip", subfolder="zoo")
    folder = fetch(entry, cache=cache, sha256=_sha(archive))
    assert (folder / "zoo" / "readme.txt").read_text() == "hello"
