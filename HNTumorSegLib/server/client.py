"""Client of the segmentation server (issue 29): a remote job that behaves like a local one.

Why: clinics run Slicer on workstations without a capable GPU; the GPU sits in one server that
runs ``hntumorseg serve`` (docs/server-api.md). :class:`RemoteClient` talks to it over HTTP(S)
with a bearer token (httpx); :class:`RemoteJob` is a :class:`~HNTumorSegLib.protocol.RunHandle`
like :class:`~HNTumorSegLib.session.client.SessionJob` (``start``, ``poll`` never blocking,
``cancel``, ``wait``, ``close``), so ``hntumorseg segment --server`` and the Slicer panel run a
remote job exactly as a local one:

* ``start`` uploads the request's inputs (NIfTI files as they are, a DICOM series folder zipped
  in a temp file), the request's fields that are not paths, and the boxes inline;
* a background thread streams the job's events (``application/x-ndjson``, the session's tagged
  lines) into a queue, reconnecting with ``?after=N`` for :attr:`RemoteClient.reconnect_s`;
* on the ``result`` event it downloads the label map (the one output the server returns; asking
  for probabilities, uncertainty, boxes or the registered images is one line up front) through
  :class:`~HNTumorSegLib.pipeline.outputs.OutputSet` (staged beside, verified, renamed all or
  nothing) and hands on the result with the local paths;
* a lost connection publishes nothing and ends the job with one line:
  ``lost the connection to the server URL during job ID: ...; nothing was written; the job may
  still be running there`` (kind ``crashed``: exit 1 on the command line);
* ``cancel`` sends ``DELETE /v1/jobs/{id}`` and waits for the server's ``cancelled`` event;
* a refinement (``refine=RefineSpec``) runs against the parent job's cached inputs on the server
  (``POST /v1/jobs/{id}/refine``): only the boxes and, when the spec gives one, the edited label map
  travel; ``box_only`` is passed on (the result is then the crop over the edited boxes).

Example (the token file must be private, as the server's):
    >>> import os
    >>> _ = open("token", "w").write("s3cret-token-of-the-clinic\\n"); os.chmod("token", 0o600)
    >>> read_token_file("token")
    's3cret-token-of-the-clinic'
    >>> os.chmod("token", 0o644)
    >>> read_token_file("token")
    Traceback (most recent call last):
    ...
    HNTumorSegLib.errors.InputError: token: the token file is readable by others (mode 644) - run: chmod 600 token
    >>> request_fields({"model": "demo-midrt", "input_paths": {"T2": "/data/t2.nii.gz"}, "output_path": "o.nii.gz",
    ...                 "device": "cuda", "tta": False, "prior_path": "/data/p.nii.gz", "series": {}})
    {'model': 'demo-midrt', 'tta': False}
"""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import threading
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..errors import Cancelled, EnvironmentFault, InputError, WorkerCrashed
from ..fileio import loads_json, read_json, remove_temp_folder, temp_folder
from ..protocol import ERROR_KINDS, ErrorEvent, Event, ProtocolError, ResultEvent, RunHandle, drain_events
from ..session.messages import split_tagged

#: request.json fields that never travel: paths (the files are uploaded instead) and the device
#: (the server's own ``--device`` decides).
LOCAL_ONLY_FIELDS = ("input_paths", "output_path", "device")


def read_token_file(path: str | os.PathLike) -> str:
    """The bearer token in ``path``: the server's rules (:meth:`.security.Tokens.from_file`: private to
    its owner, ``#`` comments ignored, at least 16 characters); the first token when it holds several."""
    from .security import Tokens

    tokens = Tokens.from_file(Path(path).expanduser()).tokens
    assert tokens, "Tokens.from_file refuses a file without a token"
    return tokens[0].decode("utf-8")


def request_fields(data: dict) -> dict:
    """The request.json fields sent as the ``request`` form field: no path, no device, nothing unset
    (module docstring); a field the server does not take (:data:`.job_request.CLIENT_FIELDS`) but
    that is set here is one line, not a silent difference from a local run."""
    from .job_request import CLIENT_FIELDS

    out = {k: v for k, v in data.items()
           if k not in LOCAL_ONLY_FIELDS and not k.endswith("_path") and v is not None and v != {}}
    unknown = sorted(k for k, v in out.items() if k not in CLIENT_FIELDS and v is not False)
    if unknown:
        raise InputError(f"{', '.join(unknown)} cannot be sent to the segmentation server", None,
                         "leave it out, or run on this computer")
    return {k: v for k, v in out.items() if k in CLIENT_FIELDS}


def check_outputs(data: dict) -> None:
    """Only the label map comes back from the server (docs/server-api.md): asking for more is one line."""
    wanted = [f"--{f[:-len('_path')].replace('_', '-')}" for f in ("probabilities_path", "uncertainty_path",
                                                                      "boxes_output_path", "registered_folder_path")
              if data.get(f)]
    names = {"--boxes-output": "--save-boxes", "--registered-folder": "--save-registered"}
    if wanted:
        raise InputError(f"{', '.join(names.get(w, w) for w in wanted)} cannot be written by a run on the server "
                         "(it returns the label map)", None, "leave it out, or run on this computer")


def zip_series(folder: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Zip a DICOM series folder (every file below it, stored: DICOM pixels rarely shrink much)."""
    folder, dest = Path(folder), Path(dest)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return dest


class ServerError(Exception):
    """An HTTP answer that is not what was asked for: ``kind`` and one-line ``message``."""

    def __init__(self, kind: str, message: str, status: int = 0):
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


class RemoteJob(RunHandle):
    """One job on the server, shaped like :class:`~HNTumorSegLib.session.client.SessionJob` (module docstring)."""

    poll_interval_s = 0.05

    def __init__(self, client: "RemoteClient", timeout_s: float | None = None):
        self.client = client
        self.timeout_s = timeout_s
        self.id = ""                    # the server's job id, once submitted
        self.temp_dir = temp_folder("hntumorseg-remote-")
        self.events: list[Event] = []
        self.final: ResultEvent | ErrorEvent | None = None
        self.state = "created"
        self.local_files: dict[str, str] = {}   # result name -> local path
        self.timings: dict[str, float] = {}
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._publish_lock = threading.Lock()
        self._t_start = 0.0

    # ---- start ------------------------------------------------------------------------------
    def start(self, request: Any, refine: Any = None, parent: str | None = None) -> "RemoteJob":
        """Upload and submit ``request`` (a SegmentRequest); with ``refine`` (a RefineSpec or its dict),
        refine the parent job (``parent``, else the client's last finished job) on the server."""
        from ..pipeline.refine import RefineSpec
        from ..runner import request_to_dict

        if self.state != "created":
            raise RuntimeError(f"this job was already started (state {self.state})")
        data = request_to_dict(request)
        self.local_files = {"labels": data["output_path"]}
        self.state = "running"
        self._t_start = time.monotonic()
        try:
            check_outputs(data)
            t0 = time.monotonic()
            if refine is not None:
                spec = RefineSpec.from_dict(refine.to_dict() if hasattr(refine, "to_dict") else dict(refine))
                self.id = self.client._refine(parent or self.client.last_job_id, data, spec)
            else:
                self.id = self.client._submit(data, self.temp_dir)
            self.timings["upload"] = time.monotonic() - t0
        except ServerError as exc:
            self._end(ErrorEvent(exc.kind, exc.message))
            return self
        except (InputError, EnvironmentFault) as exc:
            self._end(ErrorEvent(exc.kind, str(exc)))
            return self
        threading.Thread(target=self._stream, daemon=True, name=f"hntumorseg-remote-{self.id[:8]}").start()
        return self

    # ---- the event thread -------------------------------------------------------------------
    def _stream(self) -> None:
        after, lost_since, why = 0, None, ""
        while not self._stop.is_set():
            try:
                for line in self.client._event_lines(self.id, after):
                    lost_since = None
                    try:
                        _id, ev = split_tagged(line)
                    except ProtocolError:
                        continue
                    after += 1
                    if isinstance(ev, dict):
                        continue
                    if isinstance(ev, ResultEvent):
                        self._q.put(self._deliver(ev))
                        return
                    self._q.put(ev)
                    if isinstance(ev, ErrorEvent):
                        return
                why = "the event stream ended early"
            except ServerError as exc:
                if exc.status in (401, 404):
                    self._q.put(ErrorEvent(exc.kind, exc.message))
                    return
                why = exc.message
            except Exception as exc:  # httpx transport errors: connection refused, reset, timeout
                why = exc.__class__.__name__
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > self.client.reconnect_s:
                self._q.put(self._lost(why))
                return
            self._stop.wait(0.2)

    def _lost(self, why: str) -> ErrorEvent:
        return ErrorEvent(WorkerCrashed.kind, f"lost the connection to the server {self.client.url} during job "
                                              f"{self.id} ({why}); nothing was written; the job may still be running there")

    def _deliver(self, ev: ResultEvent) -> ResultEvent | ErrorEvent:
        """Download every output of the result, publish them all or nothing; the result with local paths."""
        from ..pipeline.outputs import OutputSet

        t0 = time.monotonic()
        files = dict(ev.files)
        try:
            with self._publish_lock:
                if self._stop.is_set():
                    return ErrorEvent(Cancelled.kind, "request cancelled")
                out = OutputSet()
                try:
                    for name, remote in files.items():   # an output not asked for here stays on the server
                        if name in self.local_files:
                            out.add_written(name, self.local_files[name],
                                            functools.partial(self.client._download, self.id, str(remote)))
                    local_files = out.commit()
                except BaseException:
                    out.rollback()
                    raise
        except ServerError as exc:
            return self._lost(exc.message) if exc.status == 0 else ErrorEvent(exc.kind, exc.message)
        except (InputError, EnvironmentFault) as exc:
            return ErrorEvent(exc.kind, str(exc))
        except Exception as exc:  # the connection went during a download
            return self._lost(exc.__class__.__name__)
        self.timings["download"] = time.monotonic() - t0
        self.client.last_job_id = self.id
        if self.client.delete_after:
            self.client._delete(self.id)
        timings = dict(ev.timings, **{f"remote_{k}": round(v, 3) for k, v in self.timings.items()})
        info = dict(ev.info, server=self.client.url, job_id=self.id)
        return ResultEvent(files=local_files, timings=timings, info=info)

    # ---- RunHandle --------------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """New events since the last call; never blocks."""
        out: list[Event] = []
        if self.state != "running":
            return out
        new, last = drain_events(self._q)
        out.extend(new)
        if last is not None:
            out.append(last)
            self.events.extend(out)
            self._end(last, record=False)
            return out
        self.events.extend(out)
        if self.timeout_s is not None and time.monotonic() - self._t_start > self.timeout_s:
            self.cancel()
        return out

    def cancel(self) -> None:
        """``DELETE`` the job; the server's ``cancelled`` comes within 2 s, else one is made here."""
        if self.state == "created":
            self._end(ErrorEvent(Cancelled.kind, "request cancelled"))
            return
        if self.state != "running":
            return
        with self._publish_lock:     # a download in progress is not published after this
            self._stop.set()
        try:
            self.client._delete(self.id)
        except Exception:  # the server is gone: the job cannot be reached either way
            pass
        t_end = time.monotonic() + self.client.cancel_wait_s
        while time.monotonic() < t_end:
            try:
                item = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            self.events.append(item)
            if isinstance(item, (ResultEvent, ErrorEvent)):
                self._end(item, record=False)
                return
        self._end(ErrorEvent(Cancelled.kind, "request cancelled"))

    def _end(self, final: ResultEvent | ErrorEvent, record: bool = True) -> None:
        self._stop.set()
        if record:
            self.events.append(final)
        self.final = final
        self.state = ("succeeded" if isinstance(final, ResultEvent) else
                      "cancelled" if final.kind == Cancelled.kind else "failed")
        remove_temp_folder(self.temp_dir)

    def _cleanup_temp(self) -> None:
        remove_temp_folder(self.temp_dir)


class RemoteClient:
    """The server at ``url`` with ``token``; ``verify``: True, False or a CA bundle path (``--ca-cert``).

    Shaped like :class:`~HNTumorSegLib.session.client.SessionClient` for its callers (``new_job``,
    ``submit``, ``run``, ``close``, a context manager). ``delete_after``: delete each job's files on
    the server once its outputs are here (the command line; Slicer keeps them for refinement).
    """

    def __init__(self, url: str, token: str, verify: bool | str = True, timeout_s: float = 30.0,
                 reconnect_s: float = 3.0, cancel_wait_s: float = 2.5, delete_after: bool = False):
        import httpx

        self.url = str(url).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"the server address {url!r} is not an http:// or https:// URL", None,
                             "write e.g. --server https://gpu-server:8765")
        self.reconnect_s = reconnect_s
        self.cancel_wait_s = cancel_wait_s
        self.delete_after = delete_after
        self.last_job_id: str | None = None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, verify=verify,
                                 timeout=httpx.Timeout(timeout_s, read=max(timeout_s, 300.0)))

    @classmethod
    def from_token_file(cls, url: str, token_file: str | os.PathLike, ca_cert: str | None = None,
                        **kwargs: Any) -> "RemoteClient":
        """The client of ``--server URL --token-file F [--ca-cert C]``."""
        if ca_cert is not None and not Path(ca_cert).is_file():
            raise InputError("the CA certificate does not exist", ca_cert, "give the PEM file that signed the "
                             "server's certificate")
        return cls(url, read_token_file(token_file), verify=ca_cert or True, **kwargs)

    # ---- HTTP -------------------------------------------------------------------------------
    def _check(self, response: Any) -> Any:
        if response.status_code < 400:
            return response
        try:
            err = loads_json(response.content or b"{}", "server answer").get("error") or {}
        except (InputError, AttributeError):
            err = {}
        message = str(err.get("message") or response.reason_phrase)
        kind = {401: "bad_input", 404: "bad_input", 413: "bad_input", 400: "bad_input", 429: "environment"}.get(
            response.status_code, "internal")
        what = {401: "the server refused the token (401) - check --token-file", 404: "the server does not know "
                f"this job (404): {message}", 413: f"the upload is over the server's limit (413): {message}",
                429: f"the server's queue is full (429) - try again later: {message}"}.get(response.status_code,
                                                                                         f"{self.url}: {message}")
        if response.status_code == 400:
            what = message
        if response.status_code == 400 and err.get("kind") in ERROR_KINDS:
            kind = err["kind"]
        raise ServerError(kind, what, response.status_code)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._check(self.http.request(method, path, **kwargs))
        except ServerError:
            raise
        except Exception as exc:  # httpx.TransportError and its kin: one line, exit 1
            raise ServerError(EnvironmentFault.kind, f"cannot reach the server {self.url} ({exc.__class__.__name__}) "
                              "- check the address and that `hntumorseg serve` runs there") from None

    def health(self) -> dict:
        """``GET /v1/health``: status, version, device, models, load."""
        return loads_json(self._call("GET", "/v1/health").content, "server health")

    def _event_lines(self, job_id: str, after: int):
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", params={"after": after},
                              timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            yield from (line for line in response.iter_lines() if line.strip())

    def _download(self, job_id: str, name: str, dest: Path) -> None:
        with self.http.stream("GET", f"/v1/jobs/{job_id}/outputs/{name}") as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with open(dest, "wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    f.write(chunk)

    def _delete(self, job_id: str) -> None:
        self._call("DELETE", f"/v1/jobs/{job_id}")

    def _submit(self, data: dict, temp_dir: Path) -> str:
        import json

        fields = request_fields(data)
        if data.get("boxes_path"):
            fields["boxes"] = read_json(data["boxes_path"], "boxes file")
        parts = {f"input.{name}": path for name, path in data["input_paths"].items()}
        parts.update({k: data[f] for k, f in (("prior", "prior_path"), ("prior_image", "prior_image_path"))
                      if data.get(f)})
        with ExitStack() as stack:
            files = []
            for part, path in parts.items():
                p = Path(path)
                if p.is_dir():   # a DICOM series folder: zipped in the job's temp folder
                    p = zip_series(p, Path(tempfile.mkdtemp(dir=temp_dir)) / f"{part}.zip")
                files.append((part, (p.name, stack.enter_context(open(p, "rb")), "application/octet-stream")))
            answer = self._call("POST", "/v1/jobs", data={"request": json.dumps(fields, allow_nan=False)}, files=files)
        return str(loads_json(answer.content, "server answer")["job_id"])

    def _refine(self, parent: str | None, data: dict, spec: Any) -> str:
        import json

        if not parent:
            raise InputError("a refinement on the server needs an earlier job there", None, "run Apply first")
        boxes = read_json(data["boxes_path"], "boxes file") if data.get("boxes_path") else []
        refine = {"boxes": boxes, "refine_boxes": list(spec.boxes)}
        if spec.box_only:            # only then: an older server refuses the key it does not know
            refine["box_only"] = True
        with ExitStack() as stack:
            files = []
            if spec.base_labels_path:
                files.append(("base_labels", (Path(spec.base_labels_path).name,
                                              stack.enter_context(open(spec.base_labels_path, "rb")),
                                              "application/octet-stream")))
            answer = self._call("POST", f"/v1/jobs/{parent}/refine", data={"refine": json.dumps(refine, allow_nan=False)},
                                files=files or None)
        return str(loads_json(answer.content, "server answer")["job_id"])

    # ---- jobs -------------------------------------------------------------------------------
    def new_job(self, timeout_s: float | None = None, **_ignored: Any) -> RemoteJob:
        """A job in state ``created`` (then ``start``); extra keywords ignored, as SessionClient's."""
        return RemoteJob(self, timeout_s=timeout_s)

    def submit(self, request: Any, refine: Any = None, timeout_s: float | None = None) -> RemoteJob:
        return self.new_job(timeout_s=timeout_s).start(request, refine=refine)

    def run(self, request: Any, refine: Any = None, timeout_s: float | None = None) -> ResultEvent | ErrorEvent:
        """Submit and wait for the final event (outputs already downloaded on a result)."""
        job = self.submit(request, refine=refine, timeout_s=timeout_s)
        final = job.wait()
        assert final is not None
        return final

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RemoteClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

