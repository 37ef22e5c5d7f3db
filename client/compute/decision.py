"""The record of one dispatch: where it ran, why, what was estimated and what it took."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from veraltheim.client.compute.routes import Route


@dataclass
class Decision:
    kernel: str
    requested: Route  # what the caller asked for
    where: Route  # where it ran: LOCAL or REMOTE
    reason: str
    local_estimate_ms: float | None = None
    remote_estimate_ms: float | None = None
    queue_estimate_ms: float | None = None  # the service's queue wait within the remote estimate
    decision_us: float = 0.0
    actual_ms: float | None = None  # wall time of the whole run() call
    run_ms: float | None = None  # the kernel itself: the local run, or the service's run_ms
    fallback: str | None = None  # why a remote attempt was given up for a local run
    remote: dict[str, Any] = field(default_factory=dict)  # reply header: workers, timings, load

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a CLI or a log: `ran local (offline) in 12.3 ms`."""
        est = []
        if self.local_estimate_ms is not None:
            est.append(f"local ~{self.local_estimate_ms:.1f} ms")
        if self.remote_estimate_ms is not None:
            est.append(f"remote ~{self.remote_estimate_ms:.1f} ms")
        took = f" in {self.actual_ms:.1f} ms" if self.actual_ms is not None else ""
        tail = f"; estimates: {', '.join(est)}" if est else ""
        fb = f"; remote failed: {self.fallback}" if self.fallback else ""
        return f"ran {self.where} ({self.reason}){took}{fb}{tail}"
