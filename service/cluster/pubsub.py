"""PubSub across nodes: a broadcast reaches this node's subscribers and, through the Redis bus,
every other node's, as with Phoenix.PubSub's Redis adapter. The frame is encoded once, on the
node where the broadcast starts; the others write it as it came."""

from __future__ import annotations

from typing import Any

from veraltheim.service.cluster import envelope
from veraltheim.service.cluster.bus import RedisBus
from veraltheim.service.cluster.envelope import Envelope
from veraltheim.service.pubsub import FrameQueue, PubSub, Subscriber, encode_broadcast


class RedisPubSub(PubSub):
    def __init__(self, bus: RedisBus, outbox: FrameQueue) -> None:
        super().__init__(outbox)
        self.bus = bus
        bus.on(envelope.BROADCAST, self._from_other_node)

    def broadcast(
        self, topic: str, event: str, payload: Any, *, exclude: Subscriber | None = None
    ) -> int:
        wire = encode_broadcast(topic, event, payload)  # raises before anything is sent
        self.bus.send(envelope.BROADCAST, topic, wire)
        return self.fanout(topic, wire, exclude=exclude)

    def _from_other_node(self, env: Envelope) -> None:
        self.fanout(env.topic, env.body)
