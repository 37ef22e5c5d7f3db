"""Ctrl+C and SIGTERM, from the app's start to its end, as its one clean way out.

main() installs these handlers before anything else: while Qt's own loop draws the first frame
there is no asyncio loop yet, and Python's default Ctrl+C would raise in whichever Qt callback
ran next and be lost. A signal that comes then is kept; run_window then `listen`s with its stop
callback, which runs at once for a kept signal. asyncio's own handlers take the signals over
where the loop can (`loop.add_signal_handler`); where it cannot (Windows), these stay and hand
each signal to the loop.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self.received: list[int] = []
        self._on_stop: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Note the stop signals from now on (main thread only, as Python requires)."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def listen(self, loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]) -> None:
        """Call `on_stop` on `loop` for a stop signal; at once (call this on the loop's thread)
        if one came already."""
        self._on_stop = lambda: loop.call_soon_threadsafe(on_stop)
        if self.received:
            on_stop()

    def restore(self) -> None:
        """The handlers from before `install`."""
        for signum, handler in self._previous.items():
            if handler is not None:  # None: not set from Python; nothing to put back
                signal.signal(signum, handler)
        self._previous.clear()
        self._on_stop = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._on_stop is not None:
            self._on_stop()
