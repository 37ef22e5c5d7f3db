"""A compute job as the pool tracks it: the job, its pieces (tasks) on workers, its result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veraltheim.service.compute import tiles as tiling

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
    worker: WorkerProcess | None = None


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
