"""The service end of one socket, sans-I/O: Phoenix's socket-level rules as a state machine.

Rules: a heartbeat (topic `phoenix`) is answered ok, anything else on `phoenix` is an unmatched
topic; a join of a topic no route matches is refused (unmatched topic), so is one whose payload
is not an object or whose topic cannot go in a binary frame, or one over the channel cap; a
second join of a joined topic ends the old channel and tells the client with `phx_close`
carrying the old join_ref; a message for a topic not joined, or for another join_ref than the
current one, is refused (unmatched topic), but a `phx_leave` of it is answered ok (the client
wanted it gone); events only the service may send are refused.

`ServerSocket` holds the socket's joined channels (any object with `topic` and `join_ref`) by
topic and returns outputs: `Send` (protocol/effects.py) and the ones below; it does not run the
channels' code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from veraltheim.protocol.channel_server import EndReason, end_message
from veraltheim.protocol.constants import (
    HEARTBEAT,
    MAX_BINARY_FIELD_BYTES,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    STATUS_ERROR,
    STATUS_OK,
)
from veraltheim.protocol.effects import Send
from veraltheim.protocol.message import Message
from veraltheim.protocol.reasons import Reason

SERVER_EVENTS = frozenset({PHX_REPLY, PHX_ERROR, PHX_CLOSE})
UNMATCHED_TOPIC = {"reason": Reason.UNMATCHED_TOPIC}
SHUTTING_DOWN = {"reason": Reason.SERVICE_SHUTTING_DOWN}
NOT_AN_OBJECT = {"reason": Reason.BAD_JOIN_PAYLOAD}
TOPIC_TOO_LONG = {"reason": Reason.TOPIC_TOO_LONG, "limit": MAX_BINARY_FIELD_BYTES}


class Joinable(Protocol):
    topic: str
    join_ref: str | None


C = TypeVar("C", bound=Joinable)


@dataclass(frozen=True, slots=True)
class Join:
    """Start the channel `route` gave for `msg.topic` with this join_ref, then `add()` it."""

    msg: Message
    join_ref: str | None
    route: Any


@dataclass(frozen=True, slots=True)
class Stop(Generic[C]):
    """End `channel` at once (the socket already forgot it and told its client)."""

    channel: C
    reason: EndReason


@dataclass(frozen=True, slots=True)
class Deliver(Generic[C]):
    """A message from the client for `channel`."""

    channel: C
    msg: Message


@dataclass(frozen=True, slots=True)
class Leave(Generic[C]):
    """The client leaves `channel`: answer `ref` and end it (EndReason.LEFT)."""

    channel: C
    ref: str | None


@dataclass(frozen=True, slots=True)
class ChannelLimit:
    """A join was refused by the channel cap (for the metrics)."""


def _reply(msg: Message, status: str, response: Any) -> Send:
    return Send(Message.reply(msg.join_ref, msg.ref, msg.topic, status, response))


class ServerSocket(Generic[C]):
    """`route(topic)` names what serves a topic (None: nothing); `max_channels` caps the joined
    channels of this socket."""

    __slots__ = ("_max_channels", "_route", "channels")

    def __init__(self, route: Callable[[str], Any], max_channels: int) -> None:
        self.channels: dict[str, C] = {}
        self._route = route
        self._max_channels = max_channels

    def receive(self, msg: Message, *, accepting_joins: bool = True) -> list[Any]:
        """A decoded message from the client. `accepting_joins` is False while the service stops
        (a channel joined then would escape the stop's drain)."""
        if msg.topic == PHOENIX_TOPIC:
            if msg.event == HEARTBEAT:
                return [_reply(msg, STATUS_OK, {})]
            return [_reply(msg, STATUS_ERROR, UNMATCHED_TOPIC)]
        if msg.event == PHX_JOIN:
            return self._join(msg, accepting_joins)
        if msg.event in SERVER_EVENTS:
            why = {"reason": f"{msg.event} is sent by the service only"}
            return [_reply(msg, STATUS_ERROR, why)]
        channel = self.channels.get(msg.topic)
        if channel is None or (msg.join_ref is not None and msg.join_ref != channel.join_ref):
            if msg.event == PHX_LEAVE:
                return [_reply(msg, STATUS_OK, {})]
            return [_reply(msg, STATUS_ERROR, UNMATCHED_TOPIC)]
        if msg.event == PHX_LEAVE:
            return [Leave(channel, msg.ref)]
        return [Deliver(channel, msg)]

    def add(self, channel: C) -> None:
        """The channel a `Join` asked for, now started."""
        self.channels[channel.topic] = channel

    def ended(self, channel: C, reason: str, *, closing: bool = False) -> list[Any]:
        """The channel's code finished for `reason`: forget it, tell the client if it must know
        (not when the socket is `closing`)."""
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        if closing:
            return []
        msg = end_message(channel.topic, channel.join_ref, reason)
        return [] if msg is None else [Send(msg)]

    def _join(self, msg: Message, accepting: bool) -> list[Any]:
        if not accepting:
            return [_reply(msg, STATUS_ERROR, SHUTTING_DOWN)]
        if not isinstance(msg.payload, dict):
            return [_reply(msg, STATUS_ERROR, NOT_AN_OBJECT)]
        if len(msg.topic.encode()) > MAX_BINARY_FIELD_BYTES:
            # refused now rather than crashing the channel at its first binary frame
            return [_reply(msg, STATUS_ERROR, TOPIC_TOO_LONG)]
        route = self._route(msg.topic)
        if route is None:
            return [_reply(msg, STATUS_ERROR, UNMATCHED_TOPIC)]
        out: list[Any] = []
        old = self.channels.pop(msg.topic, None)
        if old is not None:
            # Phoenix: a second join of a joined topic closes the old channel first
            out.append(Stop(old, EndReason.DUPLICATE))
            out.append(Send(Message(old.join_ref, old.join_ref, msg.topic, PHX_CLOSE, {})))
        elif len(self.channels) >= self._max_channels:
            limit = {"reason": Reason.TOO_MANY_CHANNELS, "limit": self._max_channels}
            return [ChannelLimit(), _reply(msg, STATUS_ERROR, limit)]
        join_ref = msg.join_ref if msg.join_ref is not None else msg.ref
        out.append(Join(msg, join_ref, route))
        return out
