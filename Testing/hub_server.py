"""A small Hugging Face hub on 127.0.0.1 for tests: the endpoints ``huggingface_hub`` calls, real HTTP.

Serves one model repository at one commit:

* ``GET /api/models/{repo}/revision/{rev}`` - model info with ``siblings`` (``rfilename``, ``size``,
  ``blobId`` = git blob sha1, ``lfs`` = {``sha256``, ``size``, ``pointerSize``} for LFS files);
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` - ``ETag`` (the git blob id, or for LFS files the
  sha256), ``X-Repo-Commit``, ``X-Linked-Etag`` and ``X-Linked-Size`` for LFS files, ``Accept-Ranges``,
  ``Content-Range`` / 206 on ``Range: bytes=N-``.

Faults for the tests: ``drop_once`` (path -> byte count: the first GET of that file sends the full
``Content-Length`` but closes the connection after that many bytes), ``tamper`` (path: the file is
served with one byte changed while the metadata keeps the published checksums). ``requests`` logs
``(method, path, Range header)``.

Example:
    >>> with FakeHub("JintaoRen/GradientSegHNTS", files, lfs={"a/fold_0/checkpoint_final.pth"}) as hub:
    ...     os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The server (a context manager); ``files`` maps repository paths to bytes."""

    def __init__(self, repo_id: str, files: dict[str, bytes], lfs: set[str], commit: str = "c0ffee" * 6 + "c0ff"):
        self.repo_id, self.files, self.lfs, self.commit = repo_id, dict(files), set(lfs), commit
        self.drop_once: dict[str, int] = {}
        self.tamper: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def info(self) -> dict:
        siblings = []
        for name, data in sorted(self.files.items()):
            item = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if name in self.lfs:
                item["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(item)
        return {"_id": "0" * 24, "id": self.repo_id, "modelId": self.repo_id, "sha": self.commit, "private": False,
                "disabled": False, "gated": False, "tags": [], "downloads": 0, "likes": 0, "siblings": siblings,
                "lastModified": "2024-10-01T00:00:00.000Z", "createdAt": "2024-10-01T00:00:00.000Z"}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, data: dict, status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _file(self) -> None:
                path = unquote(urlparse(self.path).path)
                prefix = f"/{hub.repo_id}/resolve/"
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if not path.startswith(prefix):
                    return self._json({"error": "not found"}, 404)
                rev, _, name = path[len(prefix):].partition("/")
                if rev not in (hub.commit, "main") or name not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[name]
                if name in hub.tamper:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                etag = hashlib.sha256(hub.files[name]).hexdigest() if name in hub.lfs else git_blob_id(hub.files[name])
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and self.command == "GET":
                    start = int(rng[len("bytes="):].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Accept-Ranges", "bytes")
                if name in hub.lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if self.command == "HEAD":
                    return
                body = data[start:]
                cut = hub.drop_once.pop(name, None)
                if cut is not None:   # a dropped connection mid-file
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def do_HEAD(self):
                self._file()

            def do_GET(self):
                path = urlparse(self.path).path
                api = f"/api/models/{hub.repo_id}"
                if path.startswith(api):
                    hub.requests.append(("GET", path, None))
                    rev = unquote(path[len(api):]).removeprefix("/revision/") or hub.commit
                    if rev not in (hub.commit, "main", ""):
                        return self._json({"error": "Invalid rev id"}, 404)
                    return self._json(hub.info())
                self._file()

        return Handler
