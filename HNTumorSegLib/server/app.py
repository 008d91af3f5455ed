"""The segmentation server's HTTP API (``hntumorseg serve``; the contract: docs/server-api.md).

Why FastAPI on uvicorn: a maintained ASGI stack (Starlette underneath) with streaming responses
for the event stream, multipart bodies we can read as a stream (uploads stop at the size limit),
TLS in uvicorn itself (``ssl_certfile`` / ``ssl_keyfile``), and a TestClient (httpx) for the unit
tests; MONAI Label, which Slicer clinics already run, stands on the same stack.

The API speaks the worker protocol: a job's events are the warm session's lines
(:mod:`HNTumorSegLib.session.messages`), tagged with the job id; jobs run on
:class:`~HNTumorSegLib.server.jobs.JobManager`'s sessions. Every error body is
``{"error": {"kind": K, "message": M}}``.

Example:
    >>> from fastapi.testclient import TestClient
    >>> from HNTumorSegLib.server.jobs import JobManager
    >>> from HNTumorSegLib.server.security import Tokens
    >>> jm = JobManager(device="cpu", start=False)
    >>> client = TestClient(create_app(jm, Tokens.insecure()))
    >>> r = client.get("/v1/health")
    >>> r.status_code, r.json()["status"], r.json()["jobs"]["max_jobs"]
    (200, 'ok', 1)
    >>> client.get("/v1/jobs/" + "0" * 32).json()["error"]["kind"]
    'not_found'
    >>> jm.close()
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.concurrency import run_in_threadpool

from .. import __version__
from ..errors import InputError
from ..vocab import JobState, ServerErrorKind
from . import job_request, uploads
from .jobs import Job, JobManager, QueueFull
from .security import Tokens

log = logging.getLogger("hntumorseg.server")

#: How often the event stream looks for new events (seconds): the session's own poll interval.
STREAM_POLL_S = 0.02


class ApiError(Exception):
    """An HTTP error with the API's error body."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _not_found() -> ApiError:
    return ApiError(404, ServerErrorKind.NOT_FOUND, "no such job (it may have been deleted or expired)")


def _device_name(device: str | None) -> str:
    from ..vocab import parse_device

    name = str(parse_device(device or "auto"))
    if name in ("auto", "cuda"):
        try:
            import torch   # the server process: never Slicer's GUI

            if torch.cuda.is_available():
                return "cuda:0" if name in ("auto", "cuda") else name
        except ImportError:
            pass
        return "cpu" if name == "auto" else name
    return name


def _models() -> list[dict]:
    from ..models.catalogue import is_installed, read_catalogue

    out: list[dict] = []
    try:
        entries = read_catalogue()
    except Exception:   # a broken catalogue must not take health down
        return out
    for e in entries:
        try:
            if is_installed(e):
                out.append({"id": e.id, "task": None if e.task is None else str(e.task)})
        except Exception:
            continue
    return out


def create_app(jm: JobManager, tokens: Tokens, max_upload_mb: float = 2048.0) -> FastAPI:
    """The FastAPI application serving ``jm``'s jobs to holders of ``tokens``."""
    app = FastAPI(title="HNTumorSeg server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    limit_bytes = int(max_upload_mb * 1024 * 1024)
    device = _device_name(jm.device)
    models = _models()

    def body(kind: str, message: str) -> dict:
        return {"error": {"kind": str(kind), "message": message}}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body(exc.kind, exc.message), status_code=exc.status, headers=headers)

    async def _http_error(request: Request, exc: Exception) -> JSONResponse:   # no such route / method
        status = int(getattr(exc, "status_code", 404))
        kind = ServerErrorKind.NOT_FOUND if status == 404 else InputError.kind
        return JSONResponse(body(kind, str(getattr(exc, "detail", "not found"))), status_code=status)

    for code in (404, 405):
        app.add_exception_handler(code, _http_error)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(body(InputError.kind, "the request's parameters are not valid"), status_code=400)

    def owner_of(request: Request) -> str:
        owner = tokens.owner(request.headers.get("authorization"))
        if owner is None:
            raise ApiError(401, ServerErrorKind.UNAUTHORIZED, "missing or wrong token: send Authorization: Bearer <token>")
        return owner

    def job_of(request: Request, job_id: str) -> Job:
        job = jm.get(job_id, owner_of(request))
        if job is None:
            raise _not_found()
        return job

    async def receive_into(request: Request, job: Job) -> uploads.Upload:
        try:
            upload = await uploads.receive(request.headers, request.stream(), job.folder / "in", limit_bytes)
        except uploads.TooLarge:
            raise ApiError(413, ServerErrorKind.TOO_LARGE,
                           f"the upload is over this server's limit of {max_upload_mb:g} MB") from None
        job.upload_bytes = upload.size
        return upload

    async def queue(job: Job, make: Any) -> dict:
        """Fill and queue a new job; its folder is removed on any refusal."""
        try:
            if not jm.has_room():
                raise QueueFull()
            await make()
            jm.submit(job)
        except QueueFull:
            jm.discard(job)
            raise ApiError(429, ServerErrorKind.QUEUE_FULL, "the server's job queue is full: try again later") from None
        except InputError as exc:
            jm.discard(job)
            log.info("job %s refused: %s", job.id, exc.kind)
            raise ApiError(400, exc.kind, exc.one_line()) from None
        except BaseException:
            jm.discard(job)
            raise
        return {"job_id": job.id, "state": str(JobState.QUEUED)}

    @app.get("/v1/health")
    async def health(request: Request) -> dict:
        owner_of(request)
        return {"status": "ok", "version": __version__, "device": device, "models": models,
                "jobs": jm.counts(), "max_upload_mb": max_upload_mb}

    @app.post("/v1/jobs", status_code=202)
    async def submit(request: Request) -> dict:
        job = jm.new_job(owner_of(request))

        async def make() -> None:
            upload = await receive_into(request, job)
            client = job_request.parse_field(upload.fields.get("request"), "request")

            def place() -> dict[str, Path]:
                return {part: uploads.place(raw, job.folder / "in" / part.replace("input.", ""), name, part)
                        for part, (raw, name) in upload.files.items()}

            placed = await run_in_threadpool(place)
            job.request, job.refine = job_request.build(client, placed, job.folder)

        return await queue(job, make)

    @app.post("/v1/jobs/{job_id}/refine", status_code=202)
    async def refine(job_id: str, request: Request) -> dict:
        parent = job_of(request, job_id)
        if not parent.request:
            raise _not_found()
        job = jm.new_job(parent.owner)
        job.parent = parent.parent or parent     # the job whose uploads it reads: kept while this one runs

        async def make() -> None:
            upload = await receive_into(request, job)
            spec = job_request.parse_field(upload.fields.get("refine"), "refine")
            base = None
            if "base_labels" in upload.files:
                raw, name = upload.files.pop("base_labels")
                base = await run_in_threadpool(uploads.place, raw, job.folder / "in" / "base_labels", name,
                                               "base_labels")
            if upload.files:
                raise InputError(f"a refinement takes no part {sorted(upload.files)[0]!r}", None,
                                 "send only the 'refine' field and, optionally, base_labels: the job's inputs are reused")
            labels = parent.outputs.get(job_request.LABELS_NAME)
            job.request, job.refine = await run_in_threadpool(job_request.build_refine, parent.request, labels, spec,
                                                              base, job.folder)

        return await queue(job, make)

    @app.get("/v1/jobs/{job_id}")
    async def status(job_id: str, request: Request) -> dict:
        job = job_of(request, job_id)
        return {"job_id": job.id, "state": str(job.state), "events": len(job.lines)}

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str, request: Request, after: int = 0) -> StreamingResponse:
        job = job_of(request, job_id)

        async def lines() -> AsyncIterator[bytes]:
            n = max(0, after)
            while True:
                ended = job.ended_yet          # read before the lines: none is missed
                while n < len(job.lines):
                    yield (job.lines[n] + "\n").encode("utf-8")
                    n += 1
                if ended or await request.is_disconnected():
                    return
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.delete("/v1/jobs/{job_id}")
    async def delete(job_id: str, request: Request) -> JSONResponse:
        job = job_of(request, job_id)
        if jm.cancel(job):
            return JSONResponse({"state": str(JobState.CANCELLING)}, status_code=202)
        jm.delete(job)
        return JSONResponse({"state": str(JobState.DELETED)}, status_code=200)

    @app.get("/v1/jobs/{job_id}/outputs")
    async def outputs(job_id: str, request: Request) -> dict:
        job = job_of(request, job_id)
        return {"files": {name: p.stat().st_size for name, p in job.outputs.items() if p.is_file()}}

    @app.get("/v1/jobs/{job_id}/outputs/{name}")
    async def output(job_id: str, name: str, request: Request) -> FileResponse:
        job = job_of(request, job_id)
        path = job.outputs.get(name)
        if path is None or not path.is_file():
            raise ApiError(404, ServerErrorKind.NOT_FOUND, f"job has no output named {name[:60]!r}")
        return FileResponse(path, media_type="application/octet-stream")

    return app
