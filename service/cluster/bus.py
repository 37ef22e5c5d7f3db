"""One Redis pub/sub channel shared by every node: fire-and-forget fan-out, like Phoenix.PubSub's
Redis adapter.

`send()` never waits: messages go into a bounded outbox that one task publishes in order
(pipelined when several are waiting). While Redis is away messages are dropped and counted, as
Phoenix's adapter drops them; what must survive an outage (presence, documents) is repaired by
the parts that own it when `on_up` fires again. A reader task delivers the other nodes' messages
to the handler registered for their kind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from veraltheim.service.cluster import envelope
from veraltheim.service.cluster.envelope import BadEnvelope, Envelope

log = logging.getLogger(__name__)

CHANNEL = "veraltheim:cluster"
OUTBOX_LIMIT = 10_000  # messages waiting to be published; beyond it the oldest are dropped
BATCH = 256  # messages per pipeline round trip
RETRY_S = (0.1, 0.25, 0.5, 1.0)  # reconnect back-off
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 5.0

Handler = Callable[[Envelope], None]


def redis_client(url: str) -> Any:
    """A redis.asyncio client for url, failing fast: the caller owns retries."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.RedisError, OSError, TimeoutError)


class RedisBus:
    def __init__(self, url: str, node: str, metrics: Any = None) -> None:
        self.url = url
        # name/incarnation: a restarted node with a configured name is still a new incarnation
        self.node = f"{node}/{secrets.token_hex(4)}"
        self.handlers: dict[int, Handler] = {}
        self.on_up: list[Callable[[], None]] = []
        self.on_down: list[Callable[[], None]] = []
        self.up = False
        self.down_since: float | None = time.time()
        self.last_error = "not connected yet"
        self._outbox: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: Any = None
        self._stopping = False
        self.counters = {"published": 0, "dropped": 0, "received": 0, "malformed": 0}
        if metrics is not None:
            metrics.gauge(
                "cluster_redis_up", "1 while this node reaches Redis", lambda: int(self.up)
            )
            for name in self.counters:
                metrics.gauge(
                    f"cluster_messages_{name}",
                    f"cluster bus messages {name}",
                    lambda n=name: self.counters[n],
                )

    def on(self, kind: int, handler: Handler) -> None:
        self.handlers[kind] = handler

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reader and the publisher; returns once subscribed, or after the first failed
        attempt (the node serves its own clients while the bus keeps trying)."""
        self._publisher = redis_client(self.url)
        first = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._read(first), name="cluster-bus-read"),
            asyncio.create_task(self._publish(), name="cluster-bus-publish"),
        ]
        await first

    async def stop(self, flush_s: float = 1.0) -> None:
        """Publish what is waiting (up to flush_s), then close."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_s):
                while self._outbox and self.up:
                    await asyncio.sleep(0.01)
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redis": "up" if self.up else "down", "node": self.node}
        if not self.up:
            out["redis_down_s"] = round(time.time() - (self.down_since or time.time()), 3)
            out["redis_error"] = self.last_error
        return out

    # -- sending --------------------------------------------------------------------------------

    def send(self, kind: int, topic: str, body: bytes) -> None:
        """Queue a message for every other node; never waits, drops while Redis is away."""
        if not self.up:
            self.counters["dropped"] += 1
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self.counters["dropped"] += 1
        self._outbox.append(envelope.pack(kind, self.node, topic, body))
        self._wake.set()

    async def _publish(self) -> None:
        errors = redis_errors()
        while True:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
            try:
                if len(batch) == 1:
                    await self._publisher.publish(CHANNEL, batch[0])
                else:
                    async with self._publisher.pipeline(transaction=False) as pipe:
                        for data in batch:
                            pipe.publish(CHANNEL, data)
                        await pipe.execute()
                self.counters["published"] += len(batch)
            except errors as exc:
                # fire-and-forget: dropped; the reader sees the outage and reconnects
                self.counters["dropped"] += len(batch)
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(RETRY_S[0])

    # -- receiving ------------------------------------------------------------------------------

    async def _read(self, first: asyncio.Future[None]) -> None:
        errors = redis_errors()
        attempt = 0
        while True:
            client = redis_client(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                await self._publisher.ping()
                attempt = 0
                self._came_up()
                if not first.done():
                    first.set_result(None)
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is not None and msg.get("type") == "message":
                        self._dispatch(msg["data"])
            except errors as exc:
                self._went_down(exc)
                if not first.done():
                    log.error(
                        "cluster: cannot reach Redis %s (%s); serving this node's clients only, "
                        "retrying",
                        self._where(),
                        self.last_error,
                    )
                    first.set_result(None)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    def _dispatch(self, data: bytes) -> None:
        try:
            env = envelope.unpack(data)
        except BadEnvelope as exc:
            self.counters["malformed"] += 1
            log.warning("dropped a message on %s: %s", CHANNEL, exc)
            return
        if env.node == self.node:
            return  # Redis echoes our own messages; we delivered them locally already
        self.counters["received"] += 1
        handler = self.handlers.get(env.kind)
        if handler is None:
            return
        try:
            handler(env)
        except Exception:
            self.counters["malformed"] += 1
            log.exception("handling a cluster message (kind %r) from %s failed", env.kind, env.node)

    def _came_up(self) -> None:
        if self.up:
            return
        was_down = time.time() - (self.down_since or time.time())
        self.up, self.down_since = True, None
        log.info(
            "cluster: connected to Redis %s as node %s (after %.1f s)",
            self._where(),
            self.node,
            was_down,
        )
        for callback in self.on_up:
            callback()

    def _went_down(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self.up:
            return
        self.up, self.down_since = False, time.time()
        self._outbox.clear()
        log.error(
            "cluster: lost Redis %s (%s); serving this node's clients only until it is back",
            self._where(),
            self.last_error,
        )
        for callback in self.on_down:
            callback()

    def _where(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or 6379}"
