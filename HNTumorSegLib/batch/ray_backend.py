"""Run a cohort on a Ray cluster (optional extra: ``pip install "ray[default]>=2.9,<3"``).

``--cluster auto`` joins the cluster this machine belongs to (``ray start`` was run here, or
``RAY_ADDRESS`` is set); ``--cluster ray://host:port`` connects through Ray Client. Each case
is one Ray task that runs the *same* worker child process as a local run
(:class:`HNTumorSegLib.runner.WorkerRun`) on whichever node Ray picks, so progress parsing,
error kinds, OOM retry and clean-up are identical. A task asks for one GPU when the cluster
has GPUs (so Ray never puts two cases on one GPU), else for one CPU.

Choice: inputs and outputs are paths, not bytes - the data and output folders must be on a
file system every node sees (NFS, Lustre ...). That is how HPC cohorts are stored, and it
keeps multi-GB volumes off Ray's object store. The driver writes done-markers as results come
back, so ``batch`` resumes after a cluster run stopped half-way.

Ray is imported only inside these functions: ``import HNTumorSegLib.batch`` works without it.

Example (command line; it needs a Ray cluster - Testing/test_batch_ray.py runs it on a private local
Ray instance started by ``--cluster auto``, with the bundled demo model on a phantom cohort)::

    $ hntumorseg batch --layout hntsmrg --data cohort/ --model demo-midrt --task midrt --out out/ \\
          --cluster ray://head:10001 --device cpu

``batch`` calls ``run_ray(jobs, out_dir, address="ray://head:10001")``, which returns ``{case: Outcome}``.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from ..childproc import python_path
from ..errors import InputError
from ..fileio import remove_temp_folder, temp_folder
from ..protocol import ErrorEvent, ResultEvent, parse_event
from .local import Job, Outcome, log_line
from .resume import mark_done

if TYPE_CHECKING:
    from ..pipeline.request import SegmentRequest


def import_ray():
    """Import Ray or raise a clear InputError saying how to get it."""
    try:
        import ray  # noqa: PLC0415 - optional extra, lazy on purpose
    except ImportError:
        raise InputError("--cluster needs Ray, which is not installed", None,
                         'pip install "ray[default]>=2.9,<3" (on every node), or leave out --cluster '
                         "to run on local worker processes") from None
    return ray


def _segment_on_node(request: "SegmentRequest", python: str | None, timeout_s: float | None) -> str:
    """Body of the Ray task: run one worker child on this node; return the final event as JSON."""
    from HNTumorSegLib.runner import WorkerRun  # imported on the node

    with WorkerRun(python=python, timeout_s=timeout_s) as run:
        run.start(request)
        final = run.wait()
    return final.to_json() if final else ErrorEvent("crashed", "the worker ended without a result").to_json()


def connect(address: str):
    """``(ray, own_folder)``: ``ray.init`` for ``auto`` or ``ray://host:port``; a failure to connect is
    an InputError.

    Choice: ``auto`` joins the running cluster of this machine (``ray start`` / ``RAY_ADDRESS``)
    and, when there is none, starts a private local Ray instance (stopped at the end of the run),
    so ``--cluster auto`` also works on a single workstation. That instance keeps its sockets, its
    object spill and its logs - the tasks' output, case names included - in ``own_folder``, a
    private temp folder (``hnts-ray-*``, short: Ray's socket paths must fit 107 bytes) that
    :func:`run_ray` removes after ``ray.shutdown()``. Ray's default, ``$TMPDIR/ray/session_*``, stayed
    after every run. ``own_folder`` is None when joining a cluster: its folders are its owner's.
    """
    ray = import_ray()
    if not (address == "auto" or address.startswith("ray://")):
        raise InputError(f"unknown cluster address {address!r}", None, "use --cluster auto or --cluster ray://HOST:PORT")
    # The driver's copy of the package goes on the nodes' PYTHONPATH too: on a shared file
    # system that is all a node needs; a node with HNTumorSegLib installed ignores it.
    env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path()}
    kwargs = dict(ignore_reinit_error=True, log_to_driver=False, runtime_env={"env_vars": env})
    own_folder = None
    try:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError:
            if address != "auto":
                raise
            # Ray (2.60 here) protects a new local instance with a token it saves in the user's home
            # folder: say so, since a file appearing there unannounced is a surprise (README s. 4).
            token = "none (RAY_AUTH_MODE=disabled)" if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" \
                else os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
            log_line("cluster", f"no running Ray cluster found: starting a local one (Ray's access token: {token})")
            own_folder = temp_folder("hnts-ray-", dir=ray_temp_root())
            ray.init(include_dashboard=False, _temp_dir=str(own_folder), **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:     # OSError: ConnectionError, a socket path too long
        if own_folder is not None:
            ray.shutdown()
            remove_temp_folder(own_folder)
        raise InputError(f"cannot connect to the Ray cluster at {address} ({exc})", None,
                         "start one with `ray start --head` or check the address and port") from None
    return ray, own_folder


#: Ray's longest socket path below its temp folder ("/session_<date>_<time>_<us>_<pid>/sockets/plasma_store",
#: 64 bytes with a 7-digit pid), with a margin; the whole path must fit AF_UNIX's 107 bytes.
RAY_SOCKET_TAIL = 72


def ray_temp_root() -> str:
    """Where a private local Ray instance's temp folder goes: the temp folder (``$TMPDIR``) when Ray's
    socket paths fit below it, else ``/tmp``. Why: a deep ``$TMPDIR`` (a scheduler's per-job folder,
    pytest's) made Ray refuse to start ("AF_UNIX path length cannot exceed 107 bytes").

        >>> ray_temp_root() in (tempfile.gettempdir(), "/tmp")
        True
    """
    base = tempfile.gettempdir()
    fits = len(os.path.join(base, "hnts-ray-12345678").encode()) + RAY_SOCKET_TAIL <= 107
    return base if fits else "/tmp"


def task_resources(ray) -> dict[str, float]:
    """One GPU per case where the cluster has GPUs, else one CPU."""
    if float(ray.cluster_resources().get("GPU", 0)) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": 1}


def run_ray(jobs: list[Job], out_dir: str | os.PathLike, address: str = "auto", python: str | None = None,
            timeout_s: float | None = None) -> dict[str, Outcome]:
    """Segment ``jobs`` as Ray tasks; returns {case: Outcome}; done-markers written as results arrive."""
    ray, own_folder = connect(address)
    resources = task_resources(ray)
    remote = ray.remote(_segment_on_node).options(**resources, max_retries=0)
    log_line("cluster", f"{len(jobs)} cases on Ray ({ray.cluster_resources()}); each task asks {resources}")
    started = time.monotonic()
    refs: dict[Any, Job] = {remote.remote(job.request, python, timeout_s): job for job in jobs}
    outcomes: dict[str, Outcome] = {}
    try:
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            job = refs[ready[0]]
            try:
                final = parse_event(ray.get(ready[0]))
            except Exception as exc:  # a node died, the task was killed ...: report, keep going
                final = ErrorEvent("crashed", f"the cluster task failed ({type(exc).__name__}: {exc})"[:500])
            timings = dict(final.timings) if isinstance(final, ResultEvent) else {}
            outcomes[job.case_id] = Outcome(job.case_id, final, time.monotonic() - started, timings)
            if isinstance(final, ResultEvent):
                mark_done(out_dir, job.case_id, job.prediction_path, job.fingerprint, timings)
                log_line(job.case_id, "done")
            else:
                log_line(job.case_id, f"FAILED ({final.kind}): {final.message}")
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()  # disconnects; also stops a local instance this run started
        if own_folder is not None:
            remove_temp_folder(own_folder)   # that instance's sockets, spill and logs
    return outcomes
