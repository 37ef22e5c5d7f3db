"""Compute jobs on a Dask distributed cluster (`--compute dask://SCHEDULER:PORT`), with what the
local pool gives a ComputeChannel: the same submit/cancel/load, tiles planned the same way (four
per Dask worker thread), progress, deadlines and error reasons.

- A job is one Dask task, or one task per tile (service/compute/tiles.py), keyed
  `<node>-<job>/<piece>`; the outputs come back here and are assembled as the local pool does.
- Progress: each piece reports through Dask events; `progress(done, total)` sums the pieces
  once every piece has said its total (so `total` never grows), as the local pool does.
- Cancel and deadline: the job fails here at once (the reply goes out), the Dask futures are
  cancelled (pieces not started never run) and running pieces get their CancelToken tripped
  on the workers (`dask_task.cancel_job`); the kernel's own deadline stops them too.
- A worker that dies is Dask's business (it reruns the piece elsewhere); a piece that cannot
  finish (KilledWorker, scheduler gone) fails the job with `worker_crashed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.cluster.dask_task import cancel_job, manifest_sha256, run_piece
from veraltheim.service.cluster.urls import dask_address
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

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
TILES_PER_THREAD = 4


class DaskPool:
    def __init__(
        self,
        url: str,
        queue_limit: int,
        job_deadline_s: float,
        memory_limit_bytes: int,
        max_tiles: int | None = None,
        tile_of: Any = lambda kernel: None,
    ) -> None:
        self.url = url
        self.address = dask_address(url)
        self.queue_limit = queue_limit
        self.job_deadline_s = job_deadline_s
        self.memory_limit_bytes = memory_limit_bytes
        self.max_tiles_cap = max_tiles
        self.tile_of = tile_of
        self.client: Any = None
        self.prefix = f"vt-{secrets.token_hex(4)}"
        self.events_topic = f"{self.prefix}-progress"
        self.manifest_sha = manifest_sha256()
        self.ids = itertools.count(1)
        self.jobs: dict[str, Job] = {}  # key -> running job
        self.futures: dict[str, list[Any]] = {}
        self.throughput = Throughput()
        self.crashes = 0
        self.stopping = False
        self.last_error = ""
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from distributed import Client

        try:
            self.client = await Client(
                self.address, asynchronous=True, timeout=CONNECT_TIMEOUT_S, name=self.prefix
            )
        except (OSError, TimeoutError) as exc:
            # the node still starts: compute requests are refused until a restart reconnects
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("compute: cannot reach the Dask scheduler %s: %s", self.address, exc)
            return
        self.client.subscribe_topic(self.events_topic, self._on_event)
        log.info("compute: Dask scheduler %s, %d worker threads", self.address, self.size)

    def ensure_started(self) -> None:
        """The local pool starts its processes here; a Dask cluster is already running."""

    async def stop(self) -> None:
        self.stopping = True
        error = ComputeError(Reason.SHUTTING_DOWN, "the service is shutting down")
        for job in list(self.jobs.values()):
            self._fail(job, error)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    @property
    def size(self) -> int:
        """Worker threads in the cluster (the most pieces that run at once)."""
        if self.client is None:
            return 0
        info = self.client.scheduler_info()  # kept fresh by the client, no round trip
        if "total_threads" in info:
            return int(info["total_threads"])
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())

    @property
    def max_tiles(self) -> int:
        # More tiles than threads: a finished tile's output travels back while the others
        # still compute (with one tile per thread they all arrive at the end, at once).
        want = self.size * TILES_PER_THREAD
        return min(want, self.max_tiles_cap or want)

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
        if self.stopping:
            raise ComputeError(Reason.SHUTTING_DOWN, "the service is shutting down")
        if not self.connected or self.size == 0:
            raise ComputeError(
                Reason.BUSY,
                f"the Dask cluster at {self.address} is not reachable or has no workers",
            )
        if len(self.jobs) >= self.size + self.queue_limit:
            raise ComputeError(
                Reason.BUSY,
                f"the compute queue is full ({len(self.jobs)} jobs on the Dask cluster)",
                queue_depth=max(0, len(self.jobs) - self.size),
            )
        limit = min(deadline_s or self.job_deadline_s, self.job_deadline_s)
        job = new_job(next(self.ids), kernel, params, data, limit, progress, self._expire)
        job.started_at = job.submitted_at
        pieces = tiling.plan(self.tile_of(kernel), params, data, self.max_tiles)
        if pieces is None:
            job.tasks = [Task(next(self.ids), job, params, data)]
        else:
            job.tiles = pieces
            job.tasks = [Task(next(self.ids), job, t.params, t.data) for t in pieces]
        key = f"{self.prefix}-{job.id}"
        self.jobs[key] = job
        futures = [
            self.client.submit(
                run_piece,
                key,
                i,
                kernel,
                task.params,
                bytes(task.data),
                limit,
                self.manifest_sha,
                self.memory_limit_bytes,
                self.events_topic,
                key=f"{key}/{i}",
                pure=False,
            )
            for i, task in enumerate(job.tasks)
        ]
        self.futures[key] = futures
        self._spawn(self._collect(key, job, futures))
        return job

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, job: Job) -> bool:
        if job.finished:
            return False
        self._fail(job, ComputeError(Reason.CANCELLED, "job cancelled"))
        return True

    async def _collect(self, key: str, job: Job, futures: list[Any]) -> None:
        try:
            results = await asyncio.gather(*futures)
        except Exception as exc:
            if not job.finished:
                self.crashes += 1
                self._fail(
                    job, ComputeError(Reason.WORKER_CRASHED, f"the Dask cluster lost it: {exc}")
                )
            return
        finally:
            self.jobs.pop(key, None)
            self.futures.pop(key, None)
        if job.finished:
            return
        for result in results:
            if result[0] == "error":
                self._fail(job, ComputeError(result[1], result[2]))
                return
        for task, result in zip(job.tasks, results, strict=True):
            task.output = result[1]
        self._succeed(job, pids=[r[3] for r in results])

    def _on_event(self, event: tuple[float, Any]) -> None:
        try:
            key, piece, done, total = event[1]
            job = self.jobs.get(key)
            task = job.tasks[piece] if job is not None else None
        except (TypeError, ValueError, IndexError):
            return
        if task is None or job is None or job.finished:
            return
        task.done, task.total = int(done), int(total)
        if job.progress is not None and all(t.total for t in job.tasks):
            job.progress(sum(t.done for t in job.tasks), sum(t.total for t in job.tasks))

    def _expire(self, job: Job) -> None:
        self._fail(job, deadline_error(job))

    def _fail(self, job: Job, error: ComputeError) -> None:
        if not settle_failed(job, error):
            return
        key = f"{self.prefix}-{job.id}"
        futures = self.futures.get(key)
        if futures and self.client is not None:
            self._spawn(self._cancel_remote(key, futures))

    async def _cancel_remote(self, key: str, futures: list[Any]) -> None:
        # First trip the running pieces' CancelToken on every worker (and wait for it: a
        # fire-and-forget run was seen not to arrive), then drop the pieces not started.
        with contextlib.suppress(Exception):
            await self.client.run(cancel_job, key)
        with contextlib.suppress(Exception):
            await self.client.cancel(futures)

    def _succeed(self, job: Job, pids: list[int]) -> None:
        try:
            result = finish(job, pids, self.throughput)
        except ValueError as exc:
            self._fail(job, ComputeError(Reason.KERNEL_ERROR, str(exc)))
            return
        job.future.set_result(result)

    def load(self) -> dict[str, Any]:
        now = time.monotonic()
        size = self.size
        pieces = sum(len(j.tasks) for j in self.jobs.values())
        return {
            "backend": "dask",
            "scheduler": self.address,
            "workers": size,
            "started": self.connected,
            "busy": min(size, pieces),
            "queue_depth": max(0, pieces - size),
            "queue_limit": self.queue_limit,
            "max_tiles": self.max_tiles,
            "min_tile_pixels": tiling.MIN_TILE_PIXELS,
            "crashes": self.crashes,
            "worker_pids": [],
            "busy_pids": [],
            "running_ms": [round((now - j.started_at) * 1000, 1) for j in self.jobs.values()],
            "throughput": self.throughput.summary(),
        }

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dask": "up" if self.connected else "down",
            "scheduler": self.address,
            "worker_threads": self.size,
        }
        if not self.connected and self.last_error:
            out["dask_error"] = self.last_error
        return out
