"""A one-shot retry timer on the asyncio loop; the backoff curve itself is protocol/backoff.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from veraltheim.protocol.backoff import RECONNECT_BACKOFF, REJOIN_BACKOFF, Backoff

__all__ = ["RECONNECT_BACKOFF", "REJOIN_BACKOFF", "Backoff", "RetryTimer"]


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
