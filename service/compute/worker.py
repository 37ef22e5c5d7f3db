"""The body of one worker process: runs kernels one at a time, answers on a pipe.

Messages in (tuples): ("run", task_id, kernel, params, data, deadline_s), ("cancel", task_id),
("stop",). Messages out: ("ready", pid), ("progress", task_id, done, total),
("done", task_id, output, run_s), ("error", task_id, reason, message).

The main thread only reads the pipe, so a cancel reaches the running job at once: it trips the
wasm Runtime's CancelToken (or the flag a native kernel checks) while a runner thread computes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.errors import ComputeError, reason_for
from veraltheim.service.compute.native import NATIVE_KERNELS

# Progress messages are rate-limited: the UI needs a few a second, not one per row band.
PROGRESS_INTERVAL_S = 0.05


class KernelJob:
    def __init__(self, task_id: int, kernel: str, params: dict, data: bytes, deadline_s: float):
        self.task_id = task_id
        self.kernel = kernel
        self.params = params
        self.data = data
        self.deadline_s = deadline_s
        self.deadline_at = time.monotonic() + deadline_s
        self.cancelled = threading.Event()
        self.token: Any = None


class _Worker:
    def __init__(
        self,
        conn: Connection,
        manifest_path: str | None,
        memory_limit_bytes: int,
        user_kernels_dir: str | None = None,
    ):
        self.conn = conn
        self.user_kernels_dir = user_kernels_dir
        self.send_lock = threading.Lock()
        self.jobs: queue.Queue[KernelJob | None] = queue.Queue()
        # Received and not finished (a cancel may come before the runner takes the job).
        self.pending: dict[int, KernelJob] = {}
        self.manifest_path = manifest_path
        self.memory_limit_bytes = memory_limit_bytes
        self.runtime: Any = None

    def send(self, msg: tuple) -> None:
        with self.send_lock:
            self.conn.send(msg)

    def serve(self) -> None:
        runner = threading.Thread(target=self.run_jobs, name="kernel-runner", daemon=True)
        runner.start()
        try:
            while (msg := self.conn.recv())[0] != "stop":
                self.handle(msg)
        except (EOFError, OSError):
            pass  # the pool went away: exit with it
        self.jobs.put(None)

    def handle(self, msg: tuple) -> None:
        if msg[0] == "run":
            job = self.pending[msg[1]] = KernelJob(*msg[1:])
            self.jobs.put(job)
        elif msg[0] == "cancel":
            job = self.pending.get(msg[1])
            if job is not None:
                job.cancelled.set()
                if job.token is not None:
                    job.token.cancel()

    def run_jobs(self) -> None:
        self.warm_up()
        self.send(("ready", os.getpid()))
        while (job := self.jobs.get()) is not None:
            try:
                output, run_s = self.run_one(job)
                self.send(("done", job.task_id, output, run_s))
            except BaseException as exc:  # every failure becomes an error message, never a crash
                self.send(("error", job.task_id, *error_message(exc)))
            finally:
                self.pending.pop(job.task_id, None)

    def run_one(self, job: KernelJob) -> tuple[bytes, float]:
        def report(done: int, total: int) -> None:
            self.send(("progress", job.task_id, done, total))

        return run_kernel(job, self.runtime_for, report)

    def warm_up(self) -> None:
        """Before saying ready, on the thread that runs the jobs: load every module (from the
        disk cache, or compile it once) and instantiate it, so the first job runs warm and its
        time says what the kernel costs. A failure here resurfaces on the first wasm job."""
        with contextlib.suppress(Exception):
            self.runtime_for().warm()  # this thread's Stores + Instances, reused by its jobs

    def runtime_for(self) -> Any:
        if self.runtime is None:
            from veraltheim.wasm import Runtime

            self.runtime = Runtime(
                manifest_path=Path(self.manifest_path) if self.manifest_path else None,
                memory_limit_bytes=self.memory_limit_bytes,
                user_kernels=self.user_kernels_dir or False,
            )
        else:
            self.runtime.reload_user_kernels()  # a stat; re-reads users' kernels installed since
        return self.runtime


def run_kernel(
    job: KernelJob, runtime_for: Callable[[], Any], report: Callable[[int, int], None]
) -> tuple[bytes, float]:
    """Run one job on this thread: (output, run seconds). Raises ComputeError or the runtime's
    errors. `report(done, total)` gets progress at most every PROGRESS_INTERVAL_S (and at the
    end); a Dask worker (service/cluster/dask_task.py) runs jobs through here too."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL_S or done >= total:
            last[0] = now
            report(int(done), int(total))

    start = time.perf_counter()
    native = NATIVE_KERNELS.get(job.kernel)
    if native is not None:

        def check() -> None:
            if job.cancelled.is_set():
                raise ComputeError(Reason.CANCELLED, "job cancelled")
            if time.monotonic() > job.deadline_at:
                raise ComputeError(
                    Reason.DEADLINE, f"job exceeded its {job.deadline_s:.3g} s deadline"
                )

        output = native.run(job.data, job.params, check, progress)
        return output, time.perf_counter() - start
    from veraltheim.wasm import CancelToken

    job.token = CancelToken()
    if job.cancelled.is_set():
        job.token.cancel()
    result = runtime_for().run(
        job.kernel,
        job.data,
        job.params,
        deadline_s=job.deadline_s,
        cancel=job.token,
        progress=progress,
    )
    return bytes(result.output), time.perf_counter() - start


def error_message(exc: BaseException) -> tuple[str, str]:
    """(reason, message) of the error reply for a failed run."""
    reason = reason_for(exc)
    message = str(exc) or type(exc).__name__
    if reason == Reason.INTERNAL:
        message = f"{type(exc).__name__}: {message}"
    return reason, message


def worker_main(
    conn: Connection,
    manifest_path: str | None,
    memory_limit_bytes: int,
    user_kernels_dir: str | None = None,
) -> None:
    """Entry point of a worker process (spawned by the pool)."""
    # Ctrl-C or a SIGTERM to the whole process group is for the service, which stops us itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _Worker(conn, manifest_path, memory_limit_bytes, user_kernels_dir).serve()
