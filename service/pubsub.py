"""In-process topic fan-out.

The interface is kept narrow (subscribe, unsubscribe, broadcast, publish) so a Redis adapter can
implement it for several nodes, as Phoenix.PubSub's does. A broadcast is encoded once into a
complete WebSocket frame (server frames are unmasked, so the bytes are the same for every
socket) and handed to every subscriber: the cost per extra socket is one write.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any, Protocol

from veraltheim.protocol import Message, encode
from veraltheim.service.wire import wire_frame


class Subscriber(Hashable, Protocol):
    def deliver_wire(self, wire: bytes) -> None:
        """Write a complete WebSocket frame (header + payload) to this subscriber's socket."""

    def deliver_info(self, message: Any) -> None:
        """Queue a server-side message for the subscriber's handle_info."""


def encode_broadcast(topic: str, event: str, payload: Any) -> bytes:
    """The WebSocket frame of a broadcast, byte for byte as every subscriber gets it."""
    return wire_frame(encode(Message(None, None, topic, event, payload), sender="server"))


class PubSub:
    def __init__(self) -> None:
        self._topics: dict[str, set[Subscriber]] = {}
        # (recipients, seconds) of the last broadcast's fan-out, for /metrics and benchmarks
        self.last_fanout: tuple[int, float] = (0, 0.0)

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._topics.setdefault(topic, set()).add(subscriber)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subs = self._topics.get(topic)
        if subs is not None:
            subs.discard(subscriber)
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
        """Write an encoded broadcast frame to this node's subscribers of topic but `exclude`."""
        subs = self._topics.get(topic)
        if not subs:
            return 0
        started = time.perf_counter()
        sent = 0
        # A copy: a delivery may evict a slow socket, which unsubscribes it.
        for sub in list(subs):
            if sub is not exclude:
                sub.deliver_wire(wire)
                sent += 1
        self.last_fanout = (sent, time.perf_counter() - started)
        return sent

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
