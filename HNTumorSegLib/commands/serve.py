"""`hntumorseg serve`: the segmentation server (issue 29; API: docs/server-api.md).

    hntumorseg serve --host 0.0.0.0 --port 8765 --token-file /etc/hntumorseg/tokens \\
        --tls-cert cert.pem --tls-key key.pem --device cuda

Runs :func:`HNTumorSegLib.server.app.create_app` on uvicorn. Refuses to start (one line, exit 2)
without ``--token-file`` unless ``--host 127.0.0.1 --insecure-localhost``, with a token file
readable by others, or with only one of ``--tls-cert`` / ``--tls-key``. SIGTERM or Ctrl-C cancels
the running jobs and removes every job's files before it exits. The log (stderr) names job ids,
sizes and timings only: no patient names, no paths.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import DeviceError, InputError
from ..vocab import Device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--token-file", default=None,
                        help="file of accepted bearer tokens, one per line, mode 0600 (required unless "
                             "--insecure-localhost)")
    parser.add_argument("--tls-cert", default=None, help="TLS certificate (PEM); serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", default=None, help="TLS private key (PEM) of --tls-cert")
    parser.add_argument("--device", default="auto",
                        help=f"device every job runs on: one of {', '.join(Device.values())} (or cuda:N); default auto")
    parser.add_argument("--max-jobs", type=int, default=1,
                        help="jobs running at once, one warm session each (default 1: one GPU runs one job well)")
    parser.add_argument("--max-queue", type=int, default=8, help="jobs waiting beyond those running; more get HTTP 429 (default 8)")
    parser.add_argument("--max-upload-mb", type=float, default=2048.0,
                        help="largest upload (one job's files together), MB; larger gets HTTP 413 (default 2048)")
    parser.add_argument("--job-timeout-s", type=float, default=3600.0,
                        help="a job running longer ends with a timeout error (default 3600)")
    parser.add_argument("--ttl-s", type=float, default=3600.0,
                        help="an ended job's files are deleted this many seconds after it ended (default 3600)")
    parser.add_argument("--insecure-localhost", action="store_true",
                        help="serve without a token (only with --host 127.0.0.1: this computer's users only)")


def _check(args: argparse.Namespace) -> None:
    for name in ("max_jobs", "max_upload_mb", "job_timeout_s", "ttl_s"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be above 0, not {getattr(args, name):g}", None,
                             "give a positive number")
    if args.max_queue < 0:
        raise InputError(f"--max-queue must be 0 or more, not {args.max_queue}", None, "give 0 or more")
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port} is not a port number", None, "give 1 to 65535")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together", None, "give both (PEM files), or neither")
    for opt in ("tls_cert", "tls_key"):
        path = getattr(args, opt)
        if path and not Path(path).is_file():
            raise InputError("not found", path, f"give --{opt.replace('_', '-')} an existing PEM file")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server.app import create_app
    from ..server.jobs import JobManager
    from ..server.security import check_start
    from ..vocab import parse_device

    _check(args)
    device = str(parse_device(args.device))
    tokens = check_start(args.host, args.token_file, args.insecure_localhost)
    if device.startswith("cuda"):
        import torch   # the server process only (never Slicer's)

        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}, but no CUDA GPU is visible to this process", None,
                              "check CUDA_VISIBLE_DEVICES and the driver (nvidia-smi), or give --device cpu")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    jm = JobManager(device=device, max_jobs=args.max_jobs, max_queue=args.max_queue,
                    job_timeout_s=args.job_timeout_s, ttl_s=args.ttl_s)
    try:
        jm.warm_up()
        app = create_app(jm, tokens, max_upload_mb=args.max_upload_mb)
        uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                    log_level="info", timeout_graceful_shutdown=3)
    finally:
        jm.close()
    return 0
