"""The service end of one joined channel, sans-I/O: what goes out to its client, and when.

Rules: nothing reaches the client before the join's reply; what the channel pushes while its
join runs is held and sent right after an ok reply (dropped after a refusal); each push from the
client waits for its reply (the service drains those before a graceful stop); a `phx_leave` is
answered ok; when the channel ends, its client is told with `phx_error` (crashed) or `phx_close`
(left, service stopping), or not at all (a duplicate join announced it already; the socket is
gone; the join was refused).

`ServerChannel` returns the messages to write, in order; it does not run the channel's code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from veraltheim.protocol.constants import PHX_CLOSE, PHX_ERROR, STATUS_ERROR, STATUS_OK
from veraltheim.protocol.message import Message


class EndReason(StrEnum):
    """Why a channel ended."""

    LEFT = "left"  # the client sent phx_leave
    DUPLICATE = "duplicate"  # the client joined the same topic again
    SHUTDOWN = "shutdown"  # the service is stopping
    CLOSED = "closed"  # the socket is gone
    CRASHED = "crashed"  # an exception in the channel
    JOIN_REFUSED = "join_refused"  # join raised JoinError or failed


# What the client is told when its channel ends; a reason not here is told nothing.
END_EVENTS = {
    EndReason.CRASHED: PHX_ERROR,
    EndReason.LEFT: PHX_CLOSE,
    EndReason.SHUTDOWN: PHX_CLOSE,
}


def end_message(topic: str, join_ref: str | None, reason: str) -> Message | None:
    """The message telling the client that its channel ended (None: nothing to tell)."""
    event = END_EVENTS.get(reason)  # type: ignore[call-overload]
    return None if event is None else Message(join_ref, join_ref, topic, event, {})


class ServerChannel:
    """One channel's outgoing side, from the join's start to its end."""

    __slots__ = ("_held", "_pending", "join_ref", "joined", "running", "topic")

    def __init__(self, topic: str, join_ref: str | None) -> None:
        self.topic = topic
        self.join_ref = join_ref
        self.joined = False
        self.running = True  # from the join's start until end()
        self._held: list[Message] = []  # pushed while the join runs
        self._pending: set[str | None] = set()  # refs of client pushes not yet answered

    @property
    def in_flight(self) -> int:
        """How many client pushes wait for their reply."""
        return len(self._pending)

    def join_ok(self, ref: str | None, response: Any) -> list[Message]:
        """The join succeeded: its reply, then what was held."""
        self.joined = True
        held, self._held = self._held, []
        return [Message.reply(self.join_ref, ref, self.topic, STATUS_OK, response), *held]

    def join_refused(self, ref: str | None, response: Any) -> list[Message]:
        self._held = []
        return [Message.reply(self.join_ref, ref, self.topic, STATUS_ERROR, response)]

    def push(self, event: str, payload: Any) -> list[Message]:
        """A message to this channel's client (no ref)."""
        return self.outgoing(Message(self.join_ref, None, self.topic, event, payload))

    def received(self, ref: str | None) -> None:
        """A push from the client came in; its reply is owed from now on."""
        if ref is not None:
            self._pending.add(ref)

    def reply(self, ref: str | None, status: str, response: Any) -> list[Message]:
        """Answer the client's push `ref` (at once, or later: a deferred reply)."""
        self._pending.discard(ref)
        return self.outgoing(Message.reply(self.join_ref, ref, self.topic, status, response))

    def leave(self, ref: str | None) -> list[Message]:
        """The client left: the ok to its phx_leave (then end with LEFT)."""
        return self.outgoing(Message.reply(self.join_ref, ref, self.topic, STATUS_OK, {}))

    def outgoing(self, msg: Message) -> list[Message]:
        if self.joined:
            return [msg]
        if self.running:
            self._held.append(msg)  # sent right after the join's ok reply
        return []

    @property
    def drained(self) -> bool:
        """No client push waits for its reply."""
        return not self._pending

    def end(self) -> None:
        """The channel's code finished: nothing goes out any more."""
        self.joined = False
        self.running = False
        self._held = []
