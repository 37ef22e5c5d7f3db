"""The service: endpoint, channels, components, and a graceful stop.

Channels are registered one line per topic pattern in `build_router`; components with a
lifecycle (`async start(ctx)`, `async stop()`) one line each in COMPONENTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from veraltheim.protocol.constants import CLOSE_GOING_AWAY, CLOSE_IDLE_TIMEOUT, LOBBY_TOPIC
from veraltheim.protocol.ysync import DOC_TOPIC_PREFIX
from veraltheim.service.channel import SHUTDOWN, Channel
from veraltheim.service.compute.channel import ComputeChannel
from veraltheim.service.compute.component import ComputeComponent
from veraltheim.service.config import ServiceConfig
from veraltheim.service.context import ServiceContext
from veraltheim.service.docs.channel import DocChannel
from veraltheim.service.docs.registry import DocRegistry
from veraltheim.service.endpoint import CLOSE_TIMEOUT_S, Endpoint
from veraltheim.service.lifecycle import Lifecycle
from veraltheim.service.limits import UserBuckets
from veraltheim.service.lobby import LobbyChannel
from veraltheim.service.looplag import LoopLag
from veraltheim.service.metrics import Metrics
from veraltheim.service.outbox import Outbox
from veraltheim.service.presence import Presence
from veraltheim.service.pubsub import PubSub
from veraltheim.service.router import Router
from veraltheim.service.socket import Socket, SocketEnv, SocketLimits

log = logging.getLogger(__name__)

# How often the idle sweep runs, as a fraction of the idle timeout (one sweep, not a timer
# per socket).
IDLE_SWEEPS_PER_TIMEOUT = 10
MIN_SWEEP_S = 0.05
MAX_SWEEP_S = 5.0


def build_router() -> Router:
    router = Router()
    router.add(LOBBY_TOPIC, LobbyChannel)
    router.add(DOC_TOPIC_PREFIX + "*", DocChannel)
    router.add("compute:*", ComputeChannel)
    return router


# name -> factory(config); each component has `async start(ctx)` and `async stop()`.
COMPONENTS: dict[str, Callable[[ServiceConfig], Any]] = {
    "docs": DocRegistry.from_config,
    "compute": ComputeComponent.from_config,
}


def version() -> str:
    try:
        return importlib.metadata.version("veraltheim")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Stats:
    """The link's own series; hot paths bump these, /metrics reads them."""

    def __init__(self, metrics: Metrics) -> None:
        self.frames_in = metrics.counter("frames_in", "WebSocket frames received")
        self.frames_out = metrics.counter("frames_out", "WebSocket frames sent")
        self.joins = metrics.counter("channel_joins", "channel joins started")
        self.channel_crashes = metrics.counter("channel_crashes", "channels ended by an exception")
        self.rate_limited = metrics.counter("rate_limited", "messages refused by a rate limit")
        self.malformed = metrics.counter("malformed_frames", "frames that did not decode")
        self.channel_limit = metrics.counter(
            "channel_limit_refusals", "joins refused by max_channels_per_socket"
        )
        self.closed = metrics.counter("sockets_closed_by_service", "sockets the service closed")
        self.refused = metrics.counter("handshakes_refused", "handshakes refused, by HTTP status")
        self.connects = metrics.counter("sockets_opened", "sockets accepted")


class Service:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.stats = Stats(self.metrics)
        self.loop_lag = LoopLag(self.metrics)
        outbox = Outbox(self.stats.frames_out.inc)  # every frame waits there for its socket's write
        pubsub: PubSub = PubSub(outbox)
        presence = Presence(pubsub)
        self.cluster: Any = None  # a ClusterNode when broadcasts and presence span nodes
        if config.cluster.pubsub_url:
            from veraltheim.service.cluster.node import ClusterNode  # needs the cluster extra

            self.cluster = ClusterNode(config.cluster, self.metrics, outbox)
            pubsub, presence = self.cluster.pubsub, self.cluster.presence
        self.ctx = ServiceContext(
            config=config,
            data_dir=config.data_dir,
            pubsub=pubsub,
            presence=presence,
            metrics=self.metrics,
        )
        self.router = build_router()
        self.user_buckets = UserBuckets(config.user_rate, config.user_burst)
        self.user_byte_buckets = UserBuckets(config.user_bytes_per_s, config.user_bytes_per_s)
        self.sockets: set[Socket] = set()
        self.life = Lifecycle(self.stats.joins, self.stats.channel_crashes)
        self.socket_env = SocketEnv(
            limits=SocketLimits.from_config(config),
            stats=self.stats,
            buckets=self.user_buckets,
            byte_buckets=self.user_byte_buckets,
            route=self.router.match,
            book=self.life,
            ctx=self.ctx,
            outbox=outbox,
        )
        self.endpoint = Endpoint(self)
        self.started_at = time.monotonic()
        self._sweeper: asyncio.Task[None] | None = None
        self.metrics.gauge("sockets", "open sockets", lambda: len(self.sockets))
        self.metrics.gauge("channels", "joined channels", lambda: len(self.channels))
        self.metrics.gauge("users", "users with an open socket", lambda: len(self.user_buckets))
        self.metrics.gauge("uptime_seconds", "seconds since start", self.uptime)
        self.metrics.gauge(
            "last_broadcast_recipients",
            "sockets the last broadcast went to",
            lambda: pubsub.last_recipients,
        )
        # (named when the outbox flushed once per loop turn; kept for dashboards that read it)
        self.metrics.gauge(
            "last_flush_frames",
            "frames written by the last round of writes that wrote any",
            lambda: outbox.last_round[0],
        )
        self.metrics.gauge(
            "last_flush_seconds",
            "time from the start to the end of that round",
            lambda: outbox.last_round[1],
        )

    @property
    def components(self) -> dict[str, Any]:
        return self.ctx.components

    @property
    def channels(self) -> weakref.WeakSet[Channel]:
        """The joined channels."""
        return self.life.channels

    @property
    def stopping(self) -> bool:
        return self.life.stopping

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self.started_at = time.monotonic()
        if self.cluster is not None:
            await self.cluster.start()
        for name, factory in COMPONENTS.items():
            component = factory(self.config)
            await component.start(self.ctx)
            self.components[name] = component
            log.info("component %s started", name)
        host, port = await self.endpoint.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle())
        self.life.track_task(asyncio.get_running_loop().create_task(self.loop_lag.run()))
        return host, port

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new sockets, end every channel (phx_close) after its in-flight work or the
        grace period, close every socket with 1001, then stop the components."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        self.life.stopping = True
        self.endpoint.stop_accepting()
        if self._sweeper is not None:
            self._sweeper.cancel()
        channels = list(self.channels)
        for channel in channels:
            channel.stop(SHUTDOWN, drain=True)
        pending = [asyncio.ensure_future(c.wait()) for c in channels if not c.done]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for channel in channels:
                channel.stop(SHUTDOWN)  # cancels those still busy; a no-op for the others
            if late:
                log.warning("%d channels still busy after %g s; cancelled", len(late), grace)
                await asyncio.wait(late, timeout=1.0)
        for socket in list(self.sockets):
            socket.close(CLOSE_GOING_AWAY, "service shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 1.0):  # each close handshake's own limit
                await self.endpoint.wait_closed()
        for name, component in reversed(list(self.components.items())):
            try:
                await component.stop()
            except Exception:
                log.exception("component %s failed to stop", name)
        self.components.clear()
        if self.cluster is not None:
            await self.cluster.stop()
        self.life.cancel_tasks()

    # -- bookkeeping from sockets and channels -----------------------------------------------

    def socket_opened(self, socket: Socket) -> None:
        self.sockets.add(socket)
        self.stats.connects.inc()

    def socket_closed(self, socket: Socket) -> None:
        self.sockets.discard(socket)

    # -- health ------------------------------------------------------------------------------

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def health(self) -> dict[str, Any]:
        """/healthz. "degraded": a shared part (Redis) is away; the node still serves its own
        clients, so the answer stays 200 and a load balancer keeps it in rotation."""
        out: dict[str, Any] = {
            "status": "stopping" if self.stopping else "ok",
            "version": version(),
            "uptime": round(self.uptime(), 3),
            "sockets": len(self.sockets),
            "channels": len(self.channels),
        }
        parts = {}
        if self.cluster is not None:
            parts["pubsub"] = self.cluster.health()
        for name, component in self.components.items():
            part = component.cluster_health() if hasattr(component, "cluster_health") else None
            if part is not None:
                parts[name] = part
        if parts:
            out["cluster"] = parts
            if out["status"] == "ok" and any("down" in p.values() for p in parts.values()):
                out["status"] = "degraded"
        return out

    async def _sweep_idle(self) -> None:
        timeout = self.config.idle_timeout_s
        interval = min(MAX_SWEEP_S, max(MIN_SWEEP_S, timeout / IDLE_SWEEPS_PER_TIMEOUT))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            deadline = loop.time() - timeout
            for socket in list(self.sockets):
                if socket.last_seen < deadline and socket.open:
                    self.stats.closed.inc(reason="idle")
                    socket.close(CLOSE_IDLE_TIMEOUT, f"idle timeout: no frame for {timeout:g} s")
