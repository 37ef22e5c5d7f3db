"""Reconnect and rejoin delays: exponential backoff with jitter, and a one-shot retry timer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before try number `tries` (1-based): initial_s * factor**(tries-1), capped at max_s,
    then lowered by a random part of up to `jitter` of itself so that many clients dropped at
    once (a service restart) do not come back in lockstep."""

    initial_s: float
    factor: float
    max_s: float
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"bad backoff: {self}")

    def bounds(self, tries: int) -> tuple[float, float]:
        """The (lowest, highest) delay `delay(tries)` can return."""
        try:
            base = min(self.max_s, self.initial_s * self.factor ** max(0, tries - 1))
        except OverflowError:
            base = self.max_s
        return base * (1 - self.jitter), base

    def delay(self, tries: int, rng: random.Random | None = None) -> float:
        low, high = self.bounds(tries)
        return (rng or random).uniform(low, high)


# phoenix.js reconnects after 10 ms .. 5 s and rejoins after 1, 2, 5, 10 s; ours are the same
# ranges as a smooth curve, with jitter.
RECONNECT_BACKOFF = Backoff(initial_s=0.05, factor=2.0, max_s=5.0)
REJOIN_BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=10.0)


class RetryTimer:
    """phoenix.js's Timer: `schedule()` calls `callback` after the backoff delay for the next try;
    `reset()` cancels and starts counting tries from zero again."""

    def __init__(
        self, callback: Callable[[], None], backoff: Backoff, rng: random.Random | None = None
    ) -> None:
        self._callback = callback
        self._backoff = backoff
        self._rng = rng
        self._handle: asyncio.TimerHandle | None = None
        self.tries = 0

    @property
    def pending(self) -> bool:
        return self._handle is not None

    def schedule(self) -> float:
        self.cancel()
        delay = self._backoff.delay(self.tries + 1, self._rng)
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)
        return delay

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reset(self) -> None:
        self.cancel()
        self.tries = 0

    def _fire(self) -> None:
        self._handle = None
        self.tries += 1
        self._callback()
