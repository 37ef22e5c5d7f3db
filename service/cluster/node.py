"""This node's place in a cluster: the Redis bus, the pubsub and presence that use it."""

from __future__ import annotations

from typing import Any

from veraltheim.service.cluster.bus import RedisBus
from veraltheim.service.cluster.presence import ClusterPresence
from veraltheim.service.cluster.pubsub import RedisPubSub
from veraltheim.service.cluster.urls import node_name
from veraltheim.service.pubsub import FrameQueue


class ClusterNode:
    def __init__(self, cluster: Any, metrics: Any, outbox: FrameQueue) -> None:
        """cluster: ClusterConfig with a pubsub_url; outbox: where broadcasts are queued."""
        self.bus = RedisBus(cluster.pubsub_url, node_name(cluster.node_name), metrics)
        self.pubsub = RedisPubSub(self.bus, outbox)
        self.presence = ClusterPresence(
            self.pubsub, self.bus, cluster.heartbeat_s, cluster.down_after_s
        )

    async def start(self) -> None:
        await self.bus.start()
        self.presence.start()

    async def stop(self) -> None:
        await self.presence.stop()
        await self.bus.stop()

    def health(self) -> dict[str, Any]:
        return {**self.bus.health(), "nodes_seen": len(self.presence.last_heard)}
