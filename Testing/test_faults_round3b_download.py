"""Issue 22 item 9: downloads have a size cap, and a full disk is the disk's fault, in one line.

Before: a download into a full disk was retried 5 times, ended with exit 2 and "check the
connection", named no path, and left a ``.part`` that kept the disk full; downloads had no size
cap. Now: a download that passes the catalogue's ``size_bytes`` (or ``Content-Length``) plus a
margin stops and deletes its ``.part`` (exit 2); ENOSPC is exit 1 at once (one GET), naming the
``.part`` and the free space, with the ``.part`` removed; a hub download that cannot fit is
refused before any file is requested. Real HTTP servers on 127.0.0.1, a real small tmpfs, the real
command as a child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from faults_testlib import hntumorseg, one_error_line, small_tmpfs
from hub_server import FakeHub

MIB = 1 << 20


class _Server(BaseHTTPRequestHandler):
    """``/model.bin``: ``body`` bytes, with or without ``Content-Length``; counts the GETs."""

    body = b""
    content_length = True
    gets: list[str] = []
    protocol_version = "HTTP/1.0"    # a body without Content-Length ends when the connection closes

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).gets.append(self.path)
        self.send_response(200)
        if self.content_length:
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            for start in range(0, len(self.body), 1 << 16):
                self.wfile.write(self.body[start:start + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):   # the client stopped reading: what a cap does
            pass


@pytest.fixture
def server():
    _Server.body, _Server.content_length, _Server.gets = b"", True, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Server
    httpd.shutdown()
    httpd.server_close()


def _catalogue(tmp: Path, entry: dict) -> dict:
    base = {"id": "big", "title": "t", "task": "prert", "inputs": ["T2"], "licence": "test", "citation": "test",
            "kind": "card", "licence_terms": "open"}
    path = tmp / "models.json"
    path.write_text(json.dumps({"models": [{**base, **entry}]}))
    return {"HNTUMORSEG_CATALOGUE": str(path), "HF_HOME": str(tmp / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1"}


def _parts(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.endswith(".incomplete")]


def test_a_download_past_the_catalogue_size_stops_and_deletes_its_part(server, tmp_path):
    url, handler = server
    handler.body = os.urandom(3 * MIB)          # the catalogue says 1 MiB; no Content-Length to go by
    handler.content_length = False
    env = _catalogue(tmp_path, {"url": f"{url}/model.bin", "sha256": hashlib.sha256(handler.body).hexdigest(),
                                "size_bytes": MIB})
    cache = tmp_path / "cache"
    res = hntumorseg("models", "fetch", "big", "--cache", cache, "--progress", "none", env=env, timeout=120)
    line = one_error_line(res.stderr)
    assert res.returncode == 2 and "more than announced" in line and "stopped and deleted" in line, line
    assert handler.gets == ["/model.bin"]       # not retried
    assert not _parts(cache) and not (cache / "models" / "big").exists()


def test_without_any_announced_size_the_configured_cap_applies(server, tmp_path):
    url, handler = server
    handler.body = os.urandom(2 * MIB)
    handler.content_length = False
    env = {**_catalogue(tmp_path, {"url": f"{url}/model.bin", "sha256": hashlib.sha256(handler.body).hexdigest()}),
           "HNTUMORSEG_MAX_DOWNLOAD_BYTES": str(MIB)}
    res = hntumorseg("models", "fetch", "big", "--cache", tmp_path / "cache", "--progress", "none", env=env,
                     timeout=120)
    assert res.returncode == 2 and "the limit" in one_error_line(res.stderr)
    assert not _parts(tmp_path / "cache")


def test_a_full_disk_is_exit_1_at_once_naming_the_part_and_the_free_space(server, tmp_path):
    url, handler = server
    handler.body = os.urandom(3 * MIB)
    env = _catalogue(tmp_path, {"url": f"{url}/model.bin", "sha256": hashlib.sha256(handler.body).hexdigest()})
    with small_tmpfs(tmp_path / "disk", size="2m") as disk:
        free_before = shutil.disk_usage(disk).free
        res = hntumorseg("models", "fetch", "big", "--cache", disk / "cache", "--progress", "none", env=env,
                         timeout=120)
        line = one_error_line(res.stderr)
        assert res.returncode == 1, res.stderr
        assert "model.bin.part" in line and "free" in line and "No space left" in line, line
        assert "connection" not in line and "retr" not in line
        assert handler.gets == ["/model.bin"]   # the disk is not the connection: no retry
        assert not _parts(disk)                  # the .part would keep the disk full
        assert shutil.disk_usage(disk).free >= free_before - 64 * 1024


def test_a_hub_download_that_cannot_fit_or_passes_the_catalogue_size_requests_nothing(tmp_path):
    files = {"Dataset1/Tr__Pl__3d_fullres/plans.json": b"{}",
             "Dataset1/Tr__Pl__3d_fullres/fold_0/checkpoint_final.pth": os.urandom(3 * MIB)}
    with FakeHub("me/model", files, lfs={"Dataset1/Tr__Pl__3d_fullres/fold_0/checkpoint_final.pth"}) as hub:
        entry = {"kind": "nnunet",
                 "hub": {"repo_id": "me/model", "revision": hub.commit, "folder": "Tr__Pl__3d_fullres"}}
        env = {**_catalogue(tmp_path, entry), "HF_ENDPOINT": hub.url}
        with small_tmpfs(tmp_path / "disk", size="2m") as disk:
            res = hntumorseg("models", "fetch", "big", "--cache", disk / "cache", "--progress", "none", env=env,
                             timeout=120)
            line = one_error_line(res.stderr)
            assert res.returncode == 1 and "needs 3.0 MB" in line and "free" in line and "cache" in line, line
            assert not [p for p in (disk / "cache").rglob("*") if p.is_file()]
        env = {**_catalogue(tmp_path, {**entry, "size_bytes": MIB}), "HF_ENDPOINT": hub.url}
        res = hntumorseg("models", "fetch", "big", "--cache", tmp_path / "cache", "--progress", "none", env=env,
                         timeout=120)
        line = one_error_line(res.stderr)
        assert res.returncode == 2 and "more than the catalogue's 1.0 MB" in line, line
        assert not [r for r in hub.requests if "/resolve/" in r[1]]   # no file was requested


class _UnderListingHub(FakeHub):
    """A hub whose file list understates one file's size (what a proxy or a changed repository can do)."""

    def info(self) -> dict:
        data = super().info()
        for item in data["siblings"]:
            item["size"] = min(item["size"], 1000)
            if "lfs" in item:
                item["lfs"]["size"] = item["size"]
        return data


def test_a_hub_download_into_a_full_disk_is_exit_1_and_removes_its_partial_files(tmp_path):
    ckpt = "Dataset1/Tr__Pl__3d_fullres/fold_0/checkpoint_final.pth"
    files = {"Dataset1/Tr__Pl__3d_fullres/plans.json": b"{}", ckpt: os.urandom(3 * MIB)}
    with _UnderListingHub("me/model", files, lfs={ckpt}) as hub:
        entry = {"kind": "nnunet",
                 "hub": {"repo_id": "me/model", "revision": hub.commit, "folder": "Tr__Pl__3d_fullres"}}
        env = {**_catalogue(tmp_path, entry), "HF_ENDPOINT": hub.url}
        with small_tmpfs(tmp_path / "disk", size="2m") as disk:
            free_before = shutil.disk_usage(disk).free
            res = hntumorseg("models", "fetch", "big", "--cache", disk / "cache", "--progress", "none", env=env,
                             timeout=120)
            line = one_error_line(res.stderr)
            assert res.returncode == 1 and "No space left" in line and "free" in line and "cache" in line, line
            assert "connection" not in line and "retr" not in line
            assert len([r for r in hub.requests if r[0] == "GET" and r[1].endswith(ckpt)]) == 1   # no retry
            assert not [p for p in (disk / "cache").rglob("*") if p.is_file()]
            assert shutil.disk_usage(disk).free >= free_before - 64 * 1024
