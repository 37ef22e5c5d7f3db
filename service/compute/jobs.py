"""A compute job as the pool tracks it: the job, its pieces (tasks) on workers, its result."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute import tiles as tiling
from veraltheim.service.compute.errors import ComputeError

if TYPE_CHECKING:
    from veraltheim.service.compute.process import WorkerProcess

Progress = Callable[[int, int], None]


@dataclass
class JobResult:
    output: bytes
    workers: list[int]
    tiles: int
    queue_ms: float
    run_ms: float
    total_ms: float


@dataclass
class Task:
    """One piece of a job on one worker: the whole job, or one tile."""

    id: int
    job: Job
    params: dict[str, Any]
    data: bytes | memoryview
    done: int = 0
    total: int = 0
    output: bytes | None = None
    worker: WorkerProcess[Task] | None = None


@dataclass
class Job:
    id: int
    kernel: str
    params: dict[str, Any]
    data: bytes
    deadline_s: float
    submitted_at: float
    deadline_at: float
    progress: Progress | None
    future: asyncio.Future[JobResult]
    tiles: list[tiling.Tile] | None = None
    tasks: list[Task] = field(default_factory=list)
    started_at: float = 0.0
    timer: asyncio.TimerHandle | None = None

    @property
    def finished(self) -> bool:
        return self.future.done()


class JobRunner(Protocol):
    """What ComputeChannel and ComputeComponent use of a pool: the local worker processes
    (pool.ComputePool) or a Dask cluster (cluster.dask_pool.DaskPool)."""

    @property
    def size(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def ensure_started(self) -> None: ...

    def submit(
        self,
        kernel: str,
        data: bytes,
        params: dict[str, Any],
        *,
        progress: Progress | None = None,
        deadline_s: float | None = None,
    ) -> Job: ...

    def cancel(self, job: Job) -> bool: ...

    def load(self) -> dict[str, Any]: ...


RECENT_JOBS = 32  # jobs per kernel the throughput figures are taken over


class Throughput:
    """Recent run times per kernel, for the `kernels` reply's load (clients' cost models)."""

    def __init__(self) -> None:
        self.recent: dict[str, deque[tuple[int, float]]] = {}
        self.jobs_done: dict[str, int] = {}

    def record(self, kernel: str, nbytes: int, run_s: float) -> None:
        self.recent.setdefault(kernel, deque(maxlen=RECENT_JOBS)).append((nbytes, run_s))
        self.jobs_done[kernel] = self.jobs_done.get(kernel, 0) + 1

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for kernel, samples in self.recent.items():
            nbytes = sum(b for b, _ in samples)
            run_s = sum(s for _, s in samples)
            out[kernel] = {
                "jobs": self.jobs_done.get(kernel, 0),
                "recent_run_ms": round(statistics.median(s for _, s in samples) * 1000, 3),
                "mb_per_s": round(nbytes / run_s / 1e6, 3) if run_s > 0 else None,
            }
        return out


def finish(job: Job, workers: list[int], throughput: Throughput) -> JobResult:
    """Assemble a job whose pieces all have their output; raises ValueError (bad tile output)."""
    outputs = [t.output or b"" for t in job.tasks]
    output = tiling.assemble(job.tiles, outputs) if job.tiles else outputs[0]
    end = time.monotonic()
    run_s = end - job.started_at
    throughput.record(job.kernel, len(job.data) + len(output), run_s)
    if job.timer is not None:
        job.timer.cancel()
    return JobResult(
        output=output,
        workers=workers,
        tiles=len(job.tasks),
        queue_ms=(job.started_at - job.submitted_at) * 1000,
        run_ms=run_s * 1000,
        total_ms=(end - job.submitted_at) * 1000,
    )


def new_job(
    job_id: int,
    kernel: str,
    params: dict[str, Any],
    data: bytes,
    deadline_s: float,
    progress: Progress | None,
    expire: Callable[[Job], None],
) -> Job:
    """A job whose `expire(job)` runs when its deadline passes (unless it finished before)."""
    now = time.monotonic()
    loop = asyncio.get_running_loop()
    job = Job(
        job_id,
        kernel,
        params,
        data,
        deadline_s,
        now,
        now + deadline_s,
        progress,
        loop.create_future(),
    )
    job.timer = loop.call_at(loop.time() + deadline_s, expire, job)
    return job


def deadline_error(job: Job) -> ComputeError:
    return ComputeError(Reason.DEADLINE, f"job exceeded its {job.deadline_s:.3g} s deadline")


def settle_failed(job: Job, error: ComputeError) -> bool:
    """Fail the job's future (False if it had finished already) and stop its deadline timer."""
    if job.finished:
        return False
    job.future.set_exception(error)
    job.future.exception()  # mark retrieved: a caller that went away must not log noise
    if job.timer is not None:
        job.timer.cancel()
    return True
