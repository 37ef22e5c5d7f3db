"""The worker-process pool: a bounded job queue, tiles across idle workers, crash recovery.

Each worker is our own process with a pipe (not concurrent.futures), so a worker that crashes
or is killed is seen at once (EOF on its pipe), replaced, and only its job fails. A job waits in
a bounded queue (full -> ComputeError("busy") at once), runs whole on one worker or split into
row tiles across the idle ones, and has a deadline enforced twice: by the Runtime inside the
worker, and here, by killing a worker that overruns it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute import tiles as tiling
from veraltheim.service.compute.errors import ComputeError
from veraltheim.service.compute.jobs import (
    Job,
    Progress,
    Task,
    Throughput,
    deadline_error,
    finish,
    new_job,
    settle_failed,
)
from veraltheim.service.compute.process import WorkerProcess

log = logging.getLogger(__name__)

# A worker that has not stopped this long after its job was cancelled or ran out of time is
# killed and replaced.
KILL_GRACE_S = 1.0
READY_TIMEOUT_S = 60.0
MAX_RESTART_DELAY_S = 30.0
# How long to wait for a killed worker to be reaped (its exit code goes into the error).
REAP_TIMEOUT_S = 0.5


class ComputePool:
    """`submit()` jobs, `await job.future`; `cancel(job)`; `load()` for the `kernels` reply."""

    def __init__(
        self,
        workers: int,
        queue_limit: int,
        job_deadline_s: float,
        memory_limit_bytes: int,
        manifest_path: str | None = None,
        max_tiles: int | None = None,
        tile_of: Callable[[str], dict[str, Any] | None] = lambda kernel: None,
        user_kernels_dir: str | None = None,
    ) -> None:
        self.size = workers
        self.queue_limit = queue_limit
        self.job_deadline_s = job_deadline_s
        self.memory_limit_bytes = memory_limit_bytes
        self.manifest_path = manifest_path
        self.max_tiles = max_tiles or workers
        self.tile_of = tile_of
        self.user_kernels_dir = user_kernels_dir
        self.workers: list[WorkerProcess[Task]] = []
        self.queue: deque[Job] = deque()
        self.ids = itertools.count(1)
        self.tasks_by_id: dict[int, Task] = {}
        self.throughput = Throughput()
        self.crashes = 0
        self.failed_starts = 0
        self.stopping = False
        # Until the first workers are all ready (or gone), jobs wait: the first jobs then get
        # every worker for their tiles, not just the first one up.
        self.starting_up = False
        self._reapers: set[asyncio.Task[None]] = set()  # crashed workers being reaped

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the workers; jobs may be submitted at once (they wait in the worker's pipe)."""
        self.ensure_started()

    def _spawn(self, index: int) -> WorkerProcess[Task]:
        return WorkerProcess(
            index,
            self.manifest_path,
            self.memory_limit_bytes,
            self._on_message,
            self._on_exit,
            self.user_kernels_dir,
        )

    def ensure_started(self) -> None:
        """Spawn the workers unless done already (the service does it on the first join, so a
        service nobody computes on costs no processes)."""
        if not self.workers and not self.stopping:
            self.workers = [self._spawn(i) for i in range(self.size)]
            self.starting_up = True
            # A worker that never says ready must not hold the queue for good.
            asyncio.get_running_loop().call_later(READY_TIMEOUT_S, self._started)

    def _started(self) -> None:
        if self.starting_up:
            self.starting_up = False
            self._pump()

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)), timeout_s)

    async def stop(self) -> None:
        self.stopping = True
        error = ComputeError(Reason.SHUTTING_DOWN, "the service is shutting down")
        while self.queue:
            self._fail(self.queue.popleft(), error)
        for w in self.workers:
            if w.task is not None:
                self._fail(w.task.job, error)
            w.send(("stop",))
        procs = [w.proc for w in self.workers]

        def join_all() -> None:
            deadline = time.monotonic() + 2 * KILL_GRACE_S
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(5)

        await asyncio.to_thread(join_all)
        if self._reapers:
            await asyncio.gather(*self._reapers)
        for w in self.workers:
            w.close()
        self.workers = []

    # --- jobs ---------------------------------------------------------------------------------

    def submit(
        self,
        kernel: str,
        data: bytes,
        params: dict[str, Any],
        *,
        progress: Progress | None = None,
        deadline_s: float | None = None,
    ) -> Job:
        """Queue a validated job; raises ComputeError("busy") at once when the queue is full."""
        if self.stopping:
            raise ComputeError(Reason.SHUTTING_DOWN, "the service is shutting down")
        self.ensure_started()
        # Workers still starting take the jobs waiting for them, as ready idle ones would.
        starting = sum(
            1 for w in self.workers if w.alive and w.task is None and not w.ready.is_set()
        )
        if len(self.queue) - starting >= self.queue_limit and not self._idle():
            raise ComputeError(
                Reason.BUSY,
                f"the compute queue is full ({len(self.queue)} jobs waiting)",
                queue_depth=len(self.queue),
            )
        limit = min(deadline_s or self.job_deadline_s, self.job_deadline_s)
        job = new_job(next(self.ids), kernel, params, data, limit, progress, self._expire)
        self.queue.append(job)
        self._pump()
        return job

    def cancel(self, job: Job) -> bool:
        """Stop a queued or running job; False if it had already finished."""
        if job.finished:
            return False
        self._fail(job, ComputeError(Reason.CANCELLED, "job cancelled"))
        return True

    def load(self) -> dict[str, Any]:
        now = time.monotonic()
        busy = sum(1 for w in self.workers if w.task is not None)
        return {
            "workers": self.size,
            "started": bool(self.workers),
            "busy": busy,
            "queue_depth": len(self.queue),
            "queue_limit": self.queue_limit,
            "max_tiles": self.max_tiles,
            "min_tile_pixels": tiling.MIN_TILE_PIXELS,
            "crashes": self.crashes,
            "worker_pids": [w.pid for w in self.workers],
            "busy_pids": [w.pid for w in self.workers if w.task is not None],
            # How long each running job has run: a client's guess of the wait for a worker.
            "running_ms": [
                round((now - w.task.job.started_at) * 1000, 1)
                for w in self.workers
                if w.task is not None
            ],
            "throughput": self.throughput.summary(),
        }

    # --- scheduling ---------------------------------------------------------------------------

    def _idle(self) -> list[WorkerProcess[Task]]:
        # Only ready workers: a job sent to one still starting would count its start-up
        # (seconds) as run time, and the clients' cost models would learn that.
        return [w for w in self.workers if w.task is None and w.alive and w.ready.is_set()]

    def _pump(self) -> None:
        if self.starting_up:
            if any(w.alive and not w.ready.is_set() for w in self.workers):
                return
            self.starting_up = False
        while self.queue:
            idle = self._idle()
            if not idle:
                return
            job = self.queue.popleft()
            job.started_at = time.monotonic()
            pieces = tiling.plan(
                self.tile_of(job.kernel), job.params, job.data, min(len(idle), self.max_tiles)
            )
            if pieces is None:
                job.tasks = [Task(next(self.ids), job, job.params, job.data)]
            else:
                job.tiles = pieces
                job.tasks = [Task(next(self.ids), job, t.params, t.data) for t in pieces]
            remaining = max(0.001, job.deadline_at - time.monotonic())
            for task, worker in zip(job.tasks, idle, strict=False):
                task.worker = worker
                worker.task = task
                self.tasks_by_id[task.id] = task
                worker.send(("run", task.id, job.kernel, task.params, task.data, remaining))

    def _expire(self, job: Job) -> None:
        self._fail(job, deadline_error(job))

    def _fail(self, job: Job, error: ComputeError) -> None:
        if not settle_failed(job, error):
            return
        if job in self.queue:
            self.queue.remove(job)
        loop = asyncio.get_running_loop()
        for task in job.tasks:
            worker = task.worker
            if worker is not None and worker.task is task:
                worker.send(("cancel", task.id))
                loop.call_later(KILL_GRACE_S, self._kill_if_stuck, worker, task)

    def _kill_if_stuck(self, worker: WorkerProcess[Task], task: Task) -> None:
        if worker.task is task and worker.alive:
            log.warning("compute worker %d did not stop its job; killing it", worker.pid)
            worker.kill()

    def _succeed(self, job: Job) -> None:
        workers = [t.worker.pid for t in job.tasks if t.worker is not None]
        try:
            result = finish(job, workers, self.throughput)
        except ValueError as exc:
            self._fail(job, ComputeError(Reason.KERNEL_ERROR, str(exc)))
            return
        job.future.set_result(result)

    # --- messages from workers (on the loop, via call_soon_threadsafe) ------------------------

    def _on_message(self, worker: WorkerProcess[Task], msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            worker.pid = msg[1]
            worker.ready.set()
            self._pump()
            return
        task = self.tasks_by_id.get(msg[1])
        if task is None:
            return
        job = task.job
        if kind == "progress":
            task.done, task.total = msg[2], msg[3]
            # With tiles, wait until every tile has said its total, so `total` never grows.
            if job.progress is not None and not job.finished and all(t.total for t in job.tasks):
                job.progress(sum(t.done for t in job.tasks), sum(t.total for t in job.tasks))
            return
        # "done" or "error": the worker is free again.
        del self.tasks_by_id[task.id]
        if worker.task is task:
            worker.task = None
            worker.jobs_run += 1
        if kind == "done":
            task.output = msg[2]
            if not job.finished and all(t.output is not None for t in job.tasks):
                self._succeed(job)
        else:
            self._fail(job, ComputeError(msg[2], msg[3]))
        self._pump()

    def _on_exit(self, worker: WorkerProcess[Task]) -> None:
        self._worker_gone(worker)

    def _worker_gone(self, worker: WorkerProcess[Task]) -> None:
        if not worker.alive:
            return
        worker.alive = False
        worker.kill()
        worker.close()
        task = worker.task
        worker.task = None
        if task is not None:
            self.tasks_by_id.pop(task.id, None)
            task.worker = None
            if not task.job.finished:
                self.crashes += 1
                reaper = asyncio.get_running_loop().create_task(self._fail_crashed(worker, task))
                self._reapers.add(reaper)
                reaper.add_done_callback(self._reapers.discard)
        if self.stopping or worker not in self.workers:
            return
        # A worker that dies before it is ready will likely die again: back off, don't spin.
        if worker.ready.is_set():
            self.failed_starts = 0
        else:
            self.failed_starts += 1
        delay = min(MAX_RESTART_DELAY_S, 0.25 * 2**self.failed_starts) if self.failed_starts else 0
        log.warning("compute worker %d exited; replacing it in %.2g s", worker.pid, delay)
        asyncio.get_running_loop().call_later(delay, self._replace, worker)

    async def _fail_crashed(self, worker: WorkerProcess[Task], task: Task) -> None:
        """Reap the dead or dying worker for its exit code, then fail its job. Reaping waits on
        the process (waitpid), so it runs on a thread: the loop keeps serving meanwhile."""
        await asyncio.to_thread(worker.proc.join, REAP_TIMEOUT_S)
        code = worker.proc.exitcode
        self._fail(
            task.job,
            ComputeError(
                Reason.WORKER_CRASHED,
                f"worker process {worker.pid} died (exit code {code}) while running it",
            ),
        )

    def _replace(self, worker: WorkerProcess[Task]) -> None:
        if self.stopping or worker not in self.workers:
            return
        self.workers[self.workers.index(worker)] = self._spawn(worker.index)
        self._pump()


def default_workers() -> int:
    return os.cpu_count() or 1
