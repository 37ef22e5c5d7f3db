"""Per-job state shared between the calling thread, the epoch callback and a canceller."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import Cancelled, DeadlineExceeded, KernelError

ProgressCallback = Callable[[int, int], None]


class CancelToken:
    """`token.cancel()` from any thread stops the job it was passed to (it raises Cancelled).

    A token cancelled before the job starts stops it before it runs; one token may be
    shared by several jobs to cancel them all.
    """

    __slots__ = ("_cancelled",)

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        # A plain attribute: the epoch callback reads it every tick, cheaply and GIL-safely.
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self._cancelled})"


class Job:
    """What one running call needs to know to stop itself; `stop` is why it was stopped."""

    __slots__ = ("cancel", "deadline", "deadline_s", "kernel", "progress", "stop")

    def __init__(
        self,
        kernel: str,
        deadline_s: float,
        cancel: CancelToken | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.kernel = kernel
        self.deadline_s = deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.cancel = cancel
        self.progress = progress
        self.stop: BaseException | None = None

    def check(self) -> BaseException | None:
        """Called on every epoch tick: the reason to stop now, if any."""
        if self.stop is not None:
            return self.stop
        if self.cancel is not None and self.cancel._cancelled:
            self.stop = Cancelled(f"{self.kernel}: cancelled")
        elif time.monotonic() >= self.deadline:
            self.stop = DeadlineExceeded(
                f"{self.kernel}: deadline of {self.deadline_s:g} s exceeded"
            )
        return self.stop

    def report_progress(self, done: int, total: int) -> None:
        if self.progress is None or self.stop is not None:
            return
        try:
            self.progress(done, total)
        except Exception as e:
            # The caller's callback failed: stop the kernel and hand the error back.
            err = KernelError(f"{self.kernel}: progress callback failed: {e!r}")
            err.__cause__ = e
            self.stop = err
