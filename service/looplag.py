"""How late the event loop runs: a task asks to wake every PROBE_S and records how late it woke,
as /metrics series (a cumulative histogram and the worst since the previous scrape). Anything
that blocks the loop (disk, a big decode) shows here as lateness for every client."""

from __future__ import annotations

import asyncio
import math

from veraltheim.service.metrics import Metrics

PROBE_S = 0.01
_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 25, 30, 40, 50, 75, 100, 150, 250, 500, 1000)
BUCKETS_S = (*(ms / 1000 for ms in _MS), math.inf)


def bucket_label(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class LoopLag:
    def __init__(self, metrics: Metrics) -> None:
        self.samples = metrics.counter(
            "loop_lag_samples", "event loop wake-ups at most `le` seconds late (cumulative)"
        )
        self.worst = 0.0
        metrics.gauge(
            "loop_lag_max_seconds", "the latest wake-up since the previous scrape", self._take
        )

    def _take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst

    def record(self, lag: float) -> None:
        self.worst = max(self.worst, lag)
        for bound in BUCKETS_S:
            if lag <= bound:
                self.samples.inc(le=bucket_label(bound))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(PROBE_S)
            self.record(max(0.0, loop.time() - asked - PROBE_S))
