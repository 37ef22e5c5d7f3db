"""What a Dask worker runs for the service: one job or one tile, through the same code as a local
pool worker (service/compute/worker.py's run_kernel), with the kernels of the worker's own
manifest, which must be byte for byte the service's (its sha256 travels with every task).

Progress goes back as Dask events (`Worker.log_event`, fire-and-forget through the scheduler);
a cancel comes as `Client.run(cancel_job, key)`, which trips the running kernel's CancelToken.
A failure is returned as ("error", reason, message), never raised: the reply keeps its reason.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.worker import KernelJob, error_message, run_kernel

# A worker may be pointed at another manifest file (it must still have the service's hash).
MANIFEST_ENV = "VERALTHEIM_MANIFEST"

_lock = threading.Lock()
_running: dict[str, KernelJob] = {}  # "job key/piece" -> the job running on this worker
_runtimes: dict[tuple[str, int], Any] = {}  # one Runtime per (manifest, memory limit)


def manifest_path() -> Path:
    from veraltheim.wasm import DEFAULT_MANIFEST_PATH

    return Path(os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST_PATH)


def manifest_sha256(path: Path | None = None) -> str:
    """The hash both ends compare; "" when there is no manifest (native kernels only)."""
    try:
        return hashlib.sha256((path or manifest_path()).read_bytes()).hexdigest()
    except OSError:
        return ""


def _runtime(memory_limit_bytes: int) -> Any:
    key = (str(manifest_path()), memory_limit_bytes)
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            from veraltheim.wasm import Runtime

            # The Runtime checks each module's sha256 against this manifest as it loads it.
            runtime = _runtimes[key] = Runtime(
                manifest_path=manifest_path(),
                memory_limit_bytes=memory_limit_bytes,
                user_kernels=False,  # users' kernels live on the service node, not on Dask
            )
        return runtime


def run_piece(
    job_key: str,
    piece: int,
    kernel: str,
    params: dict[str, Any],
    data: bytes,
    deadline_s: float,
    manifest_sha: str,
    memory_limit_bytes: int,
    events_topic: str,
) -> tuple:
    """("done", output, run_s, pid) or ("error", reason, message)."""
    mine = manifest_sha256()
    if mine != manifest_sha:
        return (
            "error",
            Reason.INTEGRITY,
            f"the Dask worker's kernel manifest ({manifest_path()}, sha256 {mine[:12] or 'none'})"
            f" is not the service's (sha256 {manifest_sha[:12] or 'none'})",
        )
    from distributed import get_worker

    worker = get_worker()
    job = KernelJob(piece, kernel, params, data, deadline_s)
    name = f"{job_key}/{piece}"
    with _lock:
        _running[name] = job

    def report(done: int, total: int) -> None:
        worker.log_event(events_topic, [job_key, piece, done, total])

    try:
        output, run_s = run_kernel(job, lambda: _runtime(memory_limit_bytes), report)
        return ("done", output, run_s, os.getpid())
    except BaseException as exc:  # every failure becomes an error reply, never a lost task
        return ("error", *error_message(exc))
    finally:
        with _lock:
            _running.pop(name, None)


def cancel_job(job_key: str) -> int:
    """Trip the cancel of every piece of job_key running on this worker; how many."""
    with _lock:
        jobs = [j for name, j in _running.items() if name.rpartition("/")[0] == job_key]
    for job in jobs:
        job.cancelled.set()
        if job.token is not None:
            job.token.cancel()
    return len(jobs)
