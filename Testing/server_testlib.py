"""A real segmentation server for the client tests: ``hntumorseg serve`` as a child process on 127.0.0.1.

Shared by ``Testing/test_server_client*.py`` and the bench (``bench/bench_server.py``): a private
token file, a free port, the server started through :mod:`HNTumorSegLib.childproc` (its own
process group, so :meth:`ServerProcess.kill` can end it mid-job the way a crash or a pulled plug
does) and waited for on ``GET /v1/health`` (a condition with a generous limit, no fixed sleep).

Example:
    with ServerProcess(tmp_path) as server:          # started, healthy
        client = server.client()                     # a RemoteClient with the token
        client.health()["status"]                    # 'ok'
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

import faults_testlib
from HNTumorSegLib.childproc import start

#: Threads per server: the test machine's cores are shared.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HNTUMORSEG_TORCH_THREADS": "1"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_file(folder: Path, name: str = "token") -> tuple[Path, str]:
    """A private (0600) token file and its token."""
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path = folder / name
    path.write_text(token + "\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return path, token


def wait_until(condition, timeout: float, what: str, step: float = 0.05):
    """faults_testlib's wait_until in this file's argument order: ``condition()``'s first true value
    within ``timeout`` seconds, else AssertionError naming ``what``."""
    return faults_testlib.wait_until(condition, what, limit_s=timeout, poll_s=step)


class ServerProcess:
    """``hntumorseg serve`` on 127.0.0.1 with a token file in ``folder`` (module docstring)."""

    def __init__(self, folder: Path, device: str = "cpu", extra: list[str] | None = None,
                 start_timeout_s: float = 180.0):
        self.folder = Path(folder)
        self.token_path, self.token = token_file(self.folder / "server-token")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "HNTumorSegLib", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--token-file", str(self.token_path), "--device", device, *(extra or [])]
        self.start_timeout_s = start_timeout_s
        self.child = None

    def start(self) -> "ServerProcess":
        # its temp root in the test's folder: a killed server's folder (swept by the next server) stays out of /tmp
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        self.child = start(self.argv, env={**THREADS, "TMPDIR": str(self.folder / "tmp")}, name="server")
        wait_until(self._healthy, self.start_timeout_s, f"the server at {self.url} to answer /v1/health")
        return self

    def _healthy(self) -> bool:
        import httpx

        assert self.child is not None
        if not self.child.alive:
            raise AssertionError(f"the server ended (exit {self.child.returncode}): "
                                 + " | ".join(list(self.child.stderr_tail)[-8:]))
        try:
            r = httpx.get(self.url + "/v1/health", headers={"Authorization": f"Bearer {self.token}"}, timeout=2.0)
        except httpx.TransportError:
            return False
        return r.status_code == 200

    def client(self, **kwargs):
        from HNTumorSegLib.server.client import RemoteClient

        return RemoteClient(self.url, self.token, **kwargs)

    def kill(self) -> None:
        """End the server's whole tree now (SIGKILL): a crash, a pulled plug."""
        if self.child is not None and self.child.alive:
            self.child.kill_tree(grace_s=0.0)
            self.child.wait(timeout=10.0)

    def stop(self) -> None:
        if self.child is not None and self.child.alive:
            self.child.kill_tree(grace_s=5.0)
            self.child.wait(timeout=10.0)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
