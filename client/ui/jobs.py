"""Run one kernel job where the user asked, and say where it ran and why (no Qt here).

The compute Dispatcher (client.compute) sends a job local or remote by its cost model and runs
local jobs on a worker thread, so the event loop never waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from veraltheim.client.compute.routes import Route

Progress = Callable[[int, int], None]


@dataclass
class JobOutcome:
    output: bytes
    where: Route  # the side it ran on: LOCAL or REMOTE
    reason: str
    elapsed_ms: float  # the whole job, as the user waited for it
    estimates_ms: dict[Route, float] = field(default_factory=dict)  # per side
    remote: dict[str, Any] = field(default_factory=dict)  # the service's reply header (timings)
    fallback: str = ""  # why a remote attempt ended up running locally


class Jobs:
    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher

    async def run(
        self,
        kernel: str,
        data: bytes,
        params: dict[str, Any],
        *,
        where: Route,
        progress: Progress,
        cancel: Any,
        deadline_s: float | None = None,
    ) -> JobOutcome:
        start = time.perf_counter()
        output, decision = await self.dispatcher.run(
            kernel,
            data,
            params,
            where=where,
            progress=progress,
            cancel=cancel,
            deadline_s=deadline_s,
        )
        elapsed_ms = (time.perf_counter() - start) * 1000

        def attr(name: str, default: Any = None) -> Any:
            value = getattr(decision, name, None)
            return default if value is None else value

        estimates = {
            side: float(v)
            for side, v in (
                (Route.LOCAL, attr("local_estimate_ms")),
                (Route.REMOTE, attr("remote_estimate_ms")),
            )
            if v is not None
        }
        return JobOutcome(
            bytes(output),
            Route(attr("where", Route.LOCAL)),
            str(attr("reason", "")),
            float(attr("actual_ms", elapsed_ms)),
            estimates,
            dict(attr("remote", {})),
            str(attr("fallback", "")),
        )
