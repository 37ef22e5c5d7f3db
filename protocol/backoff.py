"""Reconnect and rejoin delays: exponential backoff with jitter (sans-I/O: a delay, no timer)."""

from __future__ import annotations

import random
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
