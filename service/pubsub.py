"""In-process topic fan-out.

The interface is kept narrow (subscribe, unsubscribe, broadcast, publish) so a Redis adapter can
implement it for several nodes, as Phoenix.PubSub's does. A broadcast is encoded once into a
complete WebSocket frame (server frames are unmasked, so the bytes are the same for every
socket) and queued for the subscribers' sockets (service/outbox.py): the cost per extra socket
is one write, shared with whatever else waits for that socket.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

from veraltheim.protocol import Message, encode
from veraltheim.service.outbox import FrameSink
from veraltheim.service.wire import wire_frame


class Subscriber(Hashable, Protocol):
    # where the frames of this subscriber's socket go
    sink: FrameSink

    def deliver_info(self, message: Any) -> None:
        """Queue a server-side message for the subscriber's handle_info."""


class FrameQueue(Protocol):
    """Where broadcasts wait for their sockets' writes (service/outbox.py's Outbox)."""

    def broadcast(self, sinks: Sequence[FrameSink], wire: bytes) -> None: ...


def encode_broadcast(topic: str, event: str, payload: Any) -> bytes:
    """The WebSocket frame of a broadcast, byte for byte as every subscriber gets it."""
    return wire_frame(encode(Message(None, None, topic, event, payload), sender="server"))


class PubSub:
    def __init__(self, outbox: FrameQueue) -> None:
        # each subscriber with its sink, so a broadcast copies the sinks without visiting them
        self._topics: dict[str, dict[Subscriber, FrameSink]] = {}
        self._outbox = outbox
        self.last_recipients = 0  # of the last broadcast, for /metrics

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._topics.setdefault(topic, {})[subscriber] = subscriber.sink

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subs = self._topics.get(topic)
        if subs is not None:
            subs.pop(subscriber, None)
            if not subs:
                del self._topics[topic]

    def subscribers(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def broadcast(
        self, topic: str, event: str, payload: Any, *, exclude: Subscriber | None = None
    ) -> int:
        """Send event to every subscriber of topic but `exclude`; returns how many got it.

        Raises ProtocolError (before sending anything) if the payload cannot be encoded.
        """
        if topic not in self._topics:
            return 0
        return self.fanout(topic, encode_broadcast(topic, event, payload), exclude=exclude)

    def fanout(self, topic: str, wire: bytes, *, exclude: Subscriber | None = None) -> int:
        """Queue an encoded broadcast frame for this node's subscribers of topic but `exclude`
        (those subscribed now: one that joins later in this turn does not get it)."""
        subs = self._topics.get(topic)
        if not subs:
            return 0
        sinks = list(subs.values())
        if exclude in subs:
            sinks.remove(subs[exclude])
        self._outbox.broadcast(sinks, wire)
        self.last_recipients = len(sinks)
        return len(sinks)

    # On one node every broadcast is local; a cluster pubsub overrides `broadcast` (to reach the
    # other nodes too) and keeps this one for what each node tells its own subscribers.
    broadcast_local = broadcast

    def publish(self, topic: str, message: Any, *, exclude: Subscriber | None = None) -> int:
        """Hand a server-side message to each subscriber's handle_info."""
        subs = self._topics.get(topic)
        if not subs:
            return 0
        for sub in list(subs):
            if sub is not exclude:
                sub.deliver_info(message)
        return len(subs) - (exclude in subs)
