"""One push to a channel as the app awaits it; the rules (refs, replies, timeouts) are the
channel state machine's (protocol/channel_client.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from veraltheim.protocol.channel_client import Reply

__all__ = ["DEFAULT_TIMEOUT_S", "JoinError", "Push", "PushTimeout", "Reply"]

DEFAULT_TIMEOUT_S = 10.0  # phoenix.js's default push and join timeout


class PushTimeout(TimeoutError):
    """No reply within the push's timeout (counted from the push, buffered time included)."""


class JoinError(Exception):
    """The service refused the join; `.response` is its error response."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"join refused: {response!r}")
        self.response = response


class Push:
    """A message for a channel that waits for its reply. Awaiting it gives the Reply or raises
    PushTimeout. `ref` is the ref it was last written with (a resent push gets a new one, as in
    phoenix.js); None while it waits in the buffer."""

    def __init__(self, event: str, payload: Any, timeout_s: float) -> None:
        self.event = event
        self.payload = payload
        self.timeout_s = timeout_s
        self.ref: str | None = None
        self.future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        # a push nobody awaits must not warn "exception was never retrieved" when it times out
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def __await__(self) -> Generator[Any, None, Reply]:
        return self.future.__await__()

    @property
    def done(self) -> bool:
        return self.future.done()

    def resolve(self, reply: Reply) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
