"""One push to a channel and its reply: bookkeeping by ref, a timeout per push."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from veraltheim.protocol.reasons import Reason

DEFAULT_TIMEOUT_S = 10.0  # phoenix.js's default push and join timeout


@dataclass(frozen=True, slots=True)
class Reply:
    """A `phx_reply`: status "ok" or "error" (or whatever the channel said); response is a dict,
    or bytes for a binary reply."""

    status: str
    response: Any

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class PushTimeout(TimeoutError):
    """No reply within the push's timeout (counted from the push, buffered time included)."""


class JoinError(Exception):
    """The service refused the join; `.response` is its error response."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"join refused: {response!r}")
        self.response = response


class Push:
    """A message for a channel that waits for its reply. Awaiting it gives the Reply or raises
    PushTimeout. `ref` is given when the push is written to the wire (each write of a resent push
    gets a new one, as in phoenix.js)."""

    def __init__(self, event: str, payload: Any, timeout_s: float) -> None:
        self.event = event
        self.payload = payload
        self.timeout_s = timeout_s
        self.ref: str | None = None
        self.future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        # a push nobody awaits must not warn "exception was never retrieved" when it times out
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def __await__(self) -> Generator[Any, None, Reply]:
        return self.future.__await__()

    @property
    def done(self) -> bool:
        return self.future.done()

    def start_timeout(self, on_timeout: Any = None) -> None:
        """Start the clock; on expiry the caller gets PushTimeout, then `on_timeout(self)` runs."""
        self.cancel_timeout()

        def expire() -> None:
            self._timer = None
            if not self.future.done():
                self.future.set_exception(
                    PushTimeout(f"no reply to {self.event!r} within {self.timeout_s:g} s")
                )
            if on_timeout is not None:
                on_timeout(self)

        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, expire)

    def cancel_timeout(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def resolve(self, reply: Reply) -> None:
        self.cancel_timeout()
        if not self.future.done():
            self.future.set_result(reply)

    def fail(self, exc: BaseException) -> None:
        self.cancel_timeout()
        if not self.future.done():
            self.future.set_exception(exc)


class PendingReplies:
    """The pushes written to the wire and waiting for a reply, by ref."""

    def __init__(self) -> None:
        self._by_ref: dict[str, Push] = {}

    def __len__(self) -> int:
        return len(self._by_ref)

    def __iter__(self) -> Iterator[Push]:
        return iter(list(self._by_ref.values()))

    def add(self, push: Push) -> None:
        assert push.ref is not None
        self._by_ref[push.ref] = push

    def discard(self, push: Push) -> None:
        if push.ref is not None and self._by_ref.get(push.ref) is push:
            del self._by_ref[push.ref]

    def resolve(self, ref: str | None, reply: Reply) -> Push | None:
        """Hand `reply` to the push with `ref`; None when no push waits for it (late, unknown)."""
        push = self._by_ref.pop(ref, None) if ref is not None else None
        if push is not None:
            push.resolve(reply)
        return push

    def fail_all(self, exc: BaseException) -> None:
        for push in self._by_ref.values():
            push.fail(exc)
        self._by_ref.clear()


def reply_of(payload: Any) -> Reply:
    """A Reply from a phx_reply payload, tolerating a malformed one (status "error")."""
    if isinstance(payload, dict) and isinstance(payload.get("status"), str):
        return Reply(payload["status"], payload.get("response"))
    return Reply("error", {"reason": Reason.MALFORMED_REPLY, "payload": payload})
